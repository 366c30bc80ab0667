"""The Trainer's ``input_noise``: training inputs only, at the asked noise-to-signal ratio."""

import pytest
import torch
from trainfixtures import tiny_config

from liponet.bench import MODEL_TRAINING, MODELS, PRESETS, train_config, with_overrides
from liponet.train import ConfigError, Trainer, build_dataset, config_from_dict, noisy_inputs


def test_negative_or_nan_input_noise_is_a_one_line_error():
    for bad in (-0.1, float("nan")):
        with pytest.raises(ConfigError, match="input_noise: must be a finite number >= 0"):
            config_from_dict({"input_noise": bad})


def _seen_inputs(tmp_path, noise):
    cfg = config_from_dict(tiny_config(tmp_path, input_noise=noise))
    data = build_dataset(cfg.data, cfg.seed)
    trainer = Trainer(cfg, data.train, data.val, progress=False)
    seen = []
    trainer.model.register_forward_pre_hook(
        lambda m, args: seen.append((m.training, args[0].detach().clone()))
    )
    trainer.fit()
    clean_train = torch.stack([data.train[i][0] for i in range(len(data.train))])
    clean_val = torch.stack([data.val[i][0] for i in range(len(data.val))])
    train_x = torch.cat([x for training, x in seen if training])
    val_x = torch.cat([x for training, x in seen if not training])
    return clean_train, clean_val, train_x, val_x


def _nearest(x, clean):
    """Each row of ``x`` minus its nearest row of ``clean``, and that row."""
    d = torch.cdist(x.flatten(1), clean.flatten(1))
    near = clean[d.argmin(1)]
    return x - near, near


def test_training_inputs_carry_the_asked_noise_and_validation_inputs_none(tmp_path):
    clean_train, clean_val, train_x, val_x = _seen_inputs(tmp_path / "noisy", 0.05)
    diff, near = _nearest(train_x, clean_train)
    rms = near.flatten(1).pow(2).mean(1).sqrt()
    ratio = diff.flatten(1).pow(2).mean(1).sqrt() / rms  # per sample: noise RMS / signal RMS
    assert float(ratio.mean()) == pytest.approx(0.05, rel=0.15)
    assert float(ratio.min()) > 0.02  # every training input was perturbed
    val_diff, _ = _nearest(val_x, clean_val)
    assert float(val_diff.abs().max()) == 0.0  # validation sees the clean inputs
    # without noise the training inputs are the clean samples exactly
    clean_train, _, train_x, _ = _seen_inputs(tmp_path / "clean", 0.0)
    diff, _ = _nearest(train_x, clean_train)
    assert float(diff.abs().max()) == 0.0


def test_noisy_inputs_scale_with_each_sample():
    x = torch.cat([torch.ones(1, 2, 4096), 100 * torch.ones(1, 2, 4096)])
    noise = noisy_inputs(x, 0.1, torch.Generator().manual_seed(1)) - x
    std = noise.flatten(1).std(1)
    torch.testing.assert_close(std, torch.tensor([0.1, 10.0]), rtol=0.05, atol=0)


def test_bench_noise_variants_train_their_base_network_with_noise():
    assert MODELS["LipFNO-d2-noise"] is MODELS["LipFNO-d2"]
    assert MODELS["FNO-lr3e-4-noise"] is MODELS["FNO"]
    assert MODEL_TRAINING["LipFNO-d2-noise"]["input_noise"] > 0
    preset = PRESETS["medium"]
    assert preset.input_noise == 0.0

    class Data:  # what train_config reads
        x_train = torch.zeros(64, 10, 8)

        class task:
            name = "advection_1d"

    noisy = train_config(Data, with_overrides(preset, input_noise=3e-3), 0, "unused", "cpu")
    assert noisy.input_noise == 3e-3
    assert train_config(Data, preset, 0, "unused", "cpu").input_noise == 0.0

"""Symmetry augmentation: the dihedral group, Darcy's equivariance, the Trainer's ``augment``."""

import itertools

import pytest
import torch
from torch.utils.data import TensorDataset
from trainfixtures import tiny_config

from liponet.bench import (
    AUGMENT_SUFFIXES,
    DEFAULT_MODELS,
    MODEL_TRAINING,
    MODELS,
    PRESETS,
    network_of,
    recipe,
    train_config,
    training_preset,
)
from liponet.cli import main
from liponet.data.generators.darcy import solve_darcy
from liponet.data.generators.initial import darcy_coefficient
from liponet.models import LipFNO
from liponet.train import ConfigError, Trainer, config_from_dict
from liponet.train.augment import AUGMENTATIONS, apply_dihedral, augment_pair, check_augmentation


def _field(n=6, batch=2, channels=1, seed=0):
    return torch.randn(batch, channels, n, n, generator=torch.Generator().manual_seed(seed))


def test_the_eight_elements_are_distinct_norm_preserving_and_closed():
    u = _field()
    images = [apply_dihedral(u, e) for e in range(8)]
    for a, b in itertools.combinations(images, 2):
        assert not torch.equal(a, b)
    for v in images:  # a permutation of grid values
        torch.testing.assert_close(v.flatten(1).sort(1).values, u.flatten(1).sort(1).values)
    for e, f in itertools.product(range(8), repeat=2):
        composed = apply_dihedral(apply_dihedral(u, e), f)
        assert any(torch.equal(composed, v) for v in images), (e, f)
    assert torch.equal(apply_dihedral(u, 4), u.transpose(-1, -2))
    assert torch.equal(apply_dihedral(u, 3), u.flip(-1, -2))  # rotation by 180 degrees


def test_bad_elements_and_grids_are_refused():
    with pytest.raises(ValueError, match=r"must be in 0\.\.7, got 8"):
        apply_dihedral(_field(), 8)
    with pytest.raises(
        ValueError, match=r"square grids \(\.\.\., n, n\), got shape \(2, 1, 6, 5\)"
    ):
        apply_dihedral(torch.zeros(2, 1, 6, 5), 1)
    with pytest.raises(
        ValueError, match=r"augment='d4' needs square 2-D fields .* inputs are shaped \(1, 8\)"
    ):
        check_augmentation("d4", (1, 8), (1, 8))
    with pytest.raises(ValueError, match=r"targets are shaped \(1, 8, 4\)"):
        check_augmentation("transpose", (1, 8, 8), (1, 8, 4))
    with pytest.raises(ValueError, match="same grid"):
        check_augmentation("d4", (1, 8, 8), (1, 4, 4))
    with pytest.raises(ValueError, match="unknown value 'd8'"):
        check_augmentation("d8", (1, 8, 8), (1, 8, 8))
    check_augmentation("none", (1, 8), (1, 7))  # nothing to check


def test_darcy_solver_commutes_with_every_symmetry_of_the_square():
    # the premise of the augmentation: -div(a grad u) = beta with u = 0 on the walls, on the
    # generator's own cell-centred grid, maps g a to g u for all eight g
    n = 12
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    a = darcy_coefficient(3, range(3), x)
    u = solve_darcy(a, 1.0)
    for e in range(8):
        ga = apply_dihedral(a[:, None], e)[:, 0]
        gu = apply_dihedral(u[:, None], e)[:, 0]
        torch.testing.assert_close(
            solve_darcy(ga, 1.0), gu, rtol=0, atol=1e-9 * float(u.abs().max())
        )


def test_a_stride_two_read_keeps_only_the_transpose_exact():
    # stride 2 from cell 0 keeps the even cells; a flip sends them to odd ones
    full = _field(n=8)
    coarse = full[..., ::2, ::2]
    exact = [e for e in range(8) if torch.equal(apply_dihedral(full, e)[..., ::2, ::2],
                                                apply_dihedral(coarse, e))]  # fmt: skip
    assert exact == list(AUGMENTATIONS["transpose"])


def test_augment_pair_applies_one_element_to_inputs_and_targets():
    x = _field(batch=3, channels=2)
    y = x[:, :1] ** 2
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(64):
        gx, gy = augment_pair(x, y, "d4", gen)
        torch.testing.assert_close(gy, gx[:, :1] ** 2)
        seen.add(next(e for e in range(8) if torch.equal(gx, apply_dihedral(x, e))))
    assert seen == set(range(8))
    gx, gy = augment_pair(x, y, "none")
    assert gx is x and gy is y


def _square_data(n_train=8):
    x = _field(n=8, batch=n_train + 4, seed=1)
    y = 0.5 * x
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


def test_trainer_shows_transformed_training_pairs_and_clean_validation(tmp_path):
    train, val = _square_data()
    cfg = config_from_dict(tiny_config(tmp_path, augment="d4", epochs=3))
    model = LipFNO(1, 1, modes=(3, 3), width=4, depth=1)
    trainer = Trainer(cfg, train, val, model=model, progress=False)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].clone())))
    trainer.fit()
    clean = train.tensors[0]
    elements = set()
    for training, x in seen:
        if not training:
            continue
        for row in x:  # every training input is a symmetry image of a training sample
            hits = [
                e for e in range(8) if (apply_dihedral(clean, e) == row).flatten(1).all(1).any()
            ]
            assert hits, "a training input is no image of a training sample"
            elements.update(hits)
    assert len(elements) > 1  # 6 batches, 8 elements: more than the identity was drawn
    val_rows = torch.cat([x for training, x in seen if not training])
    assert all((val.tensors[0] == r).flatten(1).all(1).any() for r in val_rows)


def test_trainer_refuses_augmentation_on_data_that_is_not_square(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, augment="transpose"))  # toy-shift: 1-D
    from liponet.train import build_dataset

    data = build_dataset(cfg.data, cfg.seed)
    with pytest.raises(ConfigError, match=r"augment='transpose' needs square 2-D fields"):
        Trainer(cfg, data.train, data.val, progress=False)
    with pytest.raises(
        ConfigError, match="augment: unknown value 'rot'; valid: none, transpose, d4"
    ):
        config_from_dict(tiny_config(tmp_path, augment="rot"))


def test_cli_augment_on_1d_data_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--no-progress", "--model", "LipMLP", "--data", "toy-shift",
                 "--set", "data.kwargs={n_train: 8, n_val: 4, grid: 8}",
                 "--set", "model.kwargs={in_features: 8, out_features: 8, width: 4, depth: 1}",
                 "--epochs", "1", "--device", "cpu", "--out", str(out),
                 "--augment", "d4"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "augment='d4' needs square 2-D fields" in err
    assert not out.exists() or not any(out.iterdir())


def test_bench_augment_variants_train_their_base_network():
    assert MODELS["LipFNO-m8-lr-d4"] is MODELS["LipFNO-m8"]
    assert network_of("FNO-lr2e-2-tr") == "FNO"
    assert MODEL_TRAINING["FNO-lr2e-2-d4"] == {"lr": 2e-2, "augment": "d4"}
    assert not any(m.endswith(tuple(AUGMENT_SUFFIXES)) for m in DEFAULT_MODELS)
    preset = training_preset(PRESETS["medium"], "LipFNO-m8-lr-tr")
    assert recipe(preset) == "adam lr=0.01 wd=0.0001 cosine/epoch augment=transpose"

    class Data:  # what train_config reads
        x_train = torch.zeros(64, 1, 8, 8)

        class task:
            name = "darcy_2d"

    assert train_config(Data, preset, 0, "unused", "cpu").augment == "transpose"
    assert train_config(Data, PRESETS["medium"], 0, "unused", "cpu").augment == "none"

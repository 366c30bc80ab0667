"""``liponet.train.shortcut_fit``: the spectral shortcut fitted before training, its ball."""

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from liponet.layers import SpectralShortcut
from liponet.models import LipFNO
from liponet.train import Trainer, config_from_dict
from liponet.train.shortcut_fit import (
    fit_model_shortcut,
    fit_shortcut,
    prepare_shortcut,
    resolve_shortcut_bound,
)


def wave_windows(n=64, size=32, seed=0):
    """Windows (u(t-1), u(t)) -> u(t+1) of a wave, per mode u = A e^{iwt} + B e^{-iwt}.

    Two independent waves per mode make the window's frames independent across samples, and
    the step is ``u(t+1) = 2 cos(w) u(t) - u(t-1)``: ``S_k = [-1, 2 cos w_k]``.
    """
    g = torch.Generator().manual_seed(seed)
    k = torch.fft.rfftfreq(size, d=1.0 / size)
    w = 2 * math.pi * k / size * 3.0  # a phase step of 3 cells' worth per mode

    def wave(t):
        return torch.fft.irfft(a * torch.exp(1j * w * t) + b * torch.exp(-1j * w * t), n=size)

    a = torch.randn(n, size // 2 + 1, generator=g, dtype=torch.complex64)
    b = torch.randn(n, size // 2 + 1, generator=g, dtype=torch.complex64)
    return torch.stack([wave(0), wave(1)], 1), wave(2)[:, None]


def test_fit_recovers_a_step_outside_the_unit_ball_only_with_the_auto_bound():
    x, y = wave_windows()
    # modes 1..15 (0 and Nyquist see one wave only: their windows are collinear)
    true = math.sqrt(1 + 4 * max(math.cos(2 * math.pi * k / 32 * 3.0) ** 2 for k in range(1, 16)))
    kwargs, bound = resolve_shortcut_bound(
        {"increment": "spectral", "shortcut_bound": "auto"}, x, y
    )
    assert bound == pytest.approx(true, rel=1e-4) and kwargs["shortcut_bound"] == bound
    free = fit_shortcut(SpectralShortcut(2, 1, 32, s=bound), x, y).eval()
    assert torch.allclose(free(x), y, atol=1e-4 * y.abs().max())
    unit = fit_shortcut(SpectralShortcut(2, 1, 32, s=1.0), x, y).eval()
    assert unit.lipschitz_bound() <= 1.0
    assert (unit(x) - y).norm() > 0.1 * y.norm()  # the unit ball cuts the data's own step


def test_auto_bound_needs_the_spectral_shortcut_and_init_names_its_choices():
    x, y = wave_windows(8)
    with pytest.raises(ValueError, match="increment='spectral'"):
        resolve_shortcut_bound({"shortcut_bound": "auto"}, x, y)
    with pytest.raises(ValueError, match="shortcut_bound"):
        LipFNO(2, 1, (8,), width=4, depth=1, increment="spectral", shortcut_size=32,
               shortcut_bound="auto")  # fmt: skip
    with pytest.raises(ValueError, match="spectral shortcut"):
        fit_model_shortcut(LipFNO(2, 1, (8,), width=4, depth=1), x, y)
    with pytest.raises(Exception, match="shortcut_init: unknown value 'svd'"):
        config_from_dict({"shortcut_init": "svd"})


def _config(tmp_path, **extra):
    return config_from_dict(
        {
            "model": {"name": "LipFNO", "kwargs": {"in_channels": 2, "out_channels": 1,
                      "modes": [6], "width": 6, "depth": 1, "increment": "spectral",
                      "shortcut_size": 32, "k": 0.1, **extra.pop("kwargs", {})}},
            "epochs": 1, "batch_size": 16, "device": "cpu", "out_dir": str(tmp_path),
            **extra,
        }
    )  # fmt: skip


def test_trainer_fits_freezes_and_certifies_the_shortcut(tmp_path):
    x, y = wave_windows(64)
    data = TensorDataset(x, y)
    cfg = _config(tmp_path / "a", shortcut_init="lstsq", shortcut_frozen=True,
                  kwargs={"shortcut_bound": "auto"})  # fmt: skip
    trainer = Trainer(cfg, data, data, progress=False)
    assert trainer.config.model.kwargs["shortcut_bound"] > 2.0  # resolved, stored as a number
    shortcut = next(m for m in trainer.model.modules() if isinstance(m, SpectralShortcut))
    before = shortcut.weight.detach().clone()
    assert not shortcut.weight.requires_grad
    trainer.fit()
    assert torch.equal(shortcut.weight.detach(), before)  # frozen through the steps
    model = trainer.model.eval()
    with torch.no_grad():
        err = (model(x) - y).norm() / y.norm()
    assert err < 0.1  # the fitted step, f (k = 0.1) barely moves it
    assert model.lipschitz_bound() <= trainer.config.model.kwargs["shortcut_bound"] + 0.1 + 1e-6
    # without the fit the same run starts from the identity on u(t): far off
    plain = Trainer(_config(tmp_path / "b", kwargs={"shortcut_bound": 3.0}), data, data,
                    progress=False).model.eval()  # fmt: skip
    with torch.no_grad():
        assert (plain(x) - y).norm() / y.norm() > 5 * err


def test_prepare_reads_nothing_when_no_fit_is_asked(tmp_path):
    class Exploding(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise AssertionError("read")

    cfg = _config(tmp_path)
    assert prepare_shortcut(cfg, Exploding()) == (cfg, None)

"""``liponet.train.shortcut_fit``: the spectral shortcut fitted before training, its ball."""

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from liponet.layers import SpectralShortcut
from liponet.layers.shortcut import lstsq_multipliers
from liponet.models import LipFNO
from liponet.train import Trainer, config_from_dict
from liponet.train.shortcut_fit import (
    fit_model_shortcut,
    fit_shortcut,
    free_fit,
    prepare_shortcut,
    resolve_shortcut_bound,
    rollout_multipliers,
    window_chains,
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


def test_auto_bound_projects_the_free_fit_equal_to_fitting_inside_the_ball(tmp_path):
    """The trainer fits once: the free fit that sized the ball, projected, is the old refit."""
    x, y = wave_windows(64)
    data = TensorDataset(x, y)
    cfg = _config(tmp_path, shortcut_init="lstsq", kwargs={"shortcut_bound": "auto"})
    resolved, windows = prepare_shortcut(cfg, data)
    assert windows is not None and windows.free is not None
    bound = resolved.model.kwargs["shortcut_bound"]
    trainer = Trainer(cfg, data, data, progress=False)
    shortcut = next(m for m in trainer.model.modules() if isinstance(m, SpectralShortcut))
    old = fit_shortcut(SpectralShortcut(2, 1, 32, s=bound), x, y)  # the second fit it replaced
    assert torch.equal(shortcut.weight.detach(), old.weight.detach())
    # where the ball binds, projecting the free fit is still the fit inside the ball
    unit = SpectralShortcut(2, 1, 32, s=1.0).assign_(free_fit(x, y))
    assert torch.equal(unit.weight, fit_shortcut(SpectralShortcut(2, 1, 32, s=1.0), x, y).weight)


def recurrence_windows(n_traj=12, frames=10, size=16, seed=0, noise=0.0):
    """Trajectories of a known stable per-mode recurrence ``u(t+1) = S_k [u(t-1), u(t)]``.

    Returns the windows ``x`` (trajectory after trajectory, in time order), next frames ``y``
    and the true multipliers (complex128 ``(K, 1, 2)``; real at ``k = 0`` and Nyquist).
    """
    g = torch.Generator().manual_seed(seed)
    kn = size // 2 + 1
    roots = 0.95 * torch.exp(2j * torch.pi * torch.rand(kn, 2, generator=g, dtype=torch.float64))
    roots[0] = roots[-1] = torch.tensor([0.9, -0.5], dtype=torch.complex128)  # real modes
    # characteristic polynomial z^2 - a1 z - a0 with the two roots: S = [a0, a1]
    true = torch.stack([-roots[:, 0] * roots[:, 1], roots.sum(1)], -1)[:, None, :]
    u = torch.randn(n_traj, 2, kn, generator=g, dtype=torch.complex128)
    u[:, :, 0] = u[:, :, 0].real
    u[:, :, -1] = u[:, :, -1].real
    series = [u[:, 0], u[:, 1]]
    for _ in range(frames - 2):
        series.append(true[:, 0, 0] * series[-2] + true[:, 0, 1] * series[-1])
    fields = torch.fft.irfft(torch.stack(series, 1), n=size, norm="ortho")  # (traj, T, size)
    fields = fields + noise * torch.randn(fields.shape, generator=g, dtype=torch.float64)
    x = torch.stack([fields[:, t : t + 2] for t in range(frames - 2)], 1).flatten(0, 1)
    y = torch.stack([fields[:, t + 2 : t + 3] for t in range(frames - 2)], 1).flatten(0, 1)
    return x, y, true


def test_rollout_fit_recovers_a_known_recurrence_from_the_identity():
    x, y, true = recurrence_windows()
    assert window_chains(x, y) == [(8 * i, 8) for i in range(12)]
    start = torch.zeros_like(true)
    start[:, 0, 1] = 1.0  # u(t+1) = u(t): far from the truth
    fitted = rollout_multipliers(x, y, 16, init=start)
    torch.testing.assert_close(fitted, true, atol=1e-7, rtol=0)


def test_rollout_fit_with_horizon_one_is_the_least_squares_step():
    x, y, _ = recurrence_windows(noise=0.05)
    one = rollout_multipliers(x, y, 16, horizon=1)
    torch.testing.assert_close(one, lstsq_multipliers(x, y, 16), atol=1e-9, rtol=0)


def _rollout_error(shortcut, x, y, chains):
    """Squared error of the shortcut rolled out in physical space from each chain's start."""
    total = 0.0
    with torch.no_grad():
        for first, count in chains:
            window = x[first : first + 1].float()
            for j in range(count):
                pred = shortcut(window)
                total += float((pred - y[first + j]).pow(2).sum())
                window = torch.cat([window[:, 1:], pred], 1)
    return total


@pytest.mark.parametrize("radius", [None, 0.8])
def test_rollout_fit_lowers_the_rollout_error_of_noisy_data_inside_the_ball(radius):
    x, y, _ = recurrence_windows(noise=0.05, seed=1)
    chains = window_chains(x, y)
    lstsq = fit_shortcut(SpectralShortcut(2, 1, 16, s=radius), x, y, "lstsq").eval()
    roll = fit_shortcut(SpectralShortcut(2, 1, 16, s=radius), x, y, "rollout").eval()
    before, after = _rollout_error(lstsq, x, y, chains), _rollout_error(roll, x, y, chains)
    assert after < 0.9 * before  # the objective measured independently, through the forward
    if radius is not None:  # the ball binds (the true step's norm reaches ~1.9) and holds
        free = rollout_multipliers(x, y, 16)
        assert float(torch.linalg.matrix_norm(free, ord=2).max()) > 1.2
        assert roll.lipschitz_bound() <= radius
        applied = roll.eval_multipliers().to(torch.complex128)
        assert float(torch.linalg.matrix_norm(applied, ord=2).max()) <= radius


def test_rollout_fit_rejects_bad_settings_and_the_trainer_takes_it(tmp_path):
    x, y, _ = recurrence_windows()
    with pytest.raises(ValueError, match="horizon"):
        rollout_multipliers(x, y, 16, horizon=0)
    with pytest.raises(ValueError, match="radius"):
        rollout_multipliers(x, y, 16, radius=0.0)
    with pytest.raises(ValueError, match="shortcut_init='svd'"):
        free_fit(x, y, "svd")
    data = TensorDataset(x.float(), y.float())
    cfg = config_from_dict(
        {
            "model": {"name": "LipFNO", "kwargs": {"in_channels": 2, "out_channels": 1,
                      "modes": [4], "width": 4, "depth": 1, "increment": "spectral",
                      "shortcut_size": 16, "k": 0.01, "shortcut_bound": "auto"}},
            "epochs": 1, "batch_size": 16, "device": "cpu", "out_dir": str(tmp_path),
            "shortcut_init": "rollout", "shortcut_frozen": True,
        }
    )  # fmt: skip
    trainer = Trainer(cfg, data, data, progress=False)
    shortcut = next(m for m in trainer.model.modules() if isinstance(m, SpectralShortcut))
    free = rollout_multipliers(x.float(), y.float(), 16)
    bound = trainer.config.model.kwargs["shortcut_bound"]
    assert bound == pytest.approx(float(torch.linalg.matrix_norm(free, ord=2).max()), rel=1e-5)
    expected = SpectralShortcut(2, 1, 16, s=bound).assign_(free)
    assert torch.equal(shortcut.weight.detach(), expected.weight.detach())

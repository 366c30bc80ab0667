"""PDEBench's random initial conditions and coefficients, drawn per sample.

Every sample ``i`` of a file generated with seed ``s`` draws from its own stream
``numpy.random.default_rng([s, i])``, so a sample does not depend on how many others are
generated with it (or in which chunk), and any single sample can be regenerated alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SineSeries",
    "darcy_coefficient",
    "normal_noise",
    "sample_rng",
    "sine_series",
    "sine_series_batch",
]

#: Number of sine modes and number of random mode picks (PDEBench's ``k_tot`` and its two draws).
N_MODES = 4
N_PICKS = 2
#: Probabilities of taking ``|u|`` and of multiplying by a tanh window.
P_ABS = 0.1
P_WINDOW = 0.1
#: Window edges are drawn from these intervals; its edges have this tanh width.
WINDOW_LEFT = (0.1, 0.45)
WINDOW_RIGHT = (0.55, 0.9)
WINDOW_WIDTH = 0.01


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of sample ``index`` of a file generated with ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


@dataclass(frozen=True)
class SineSeries:
    """Parameters of a batch of 1-D random initial conditions (PDEBench's distribution).

    ``u(x) = sign * window(x) * f(sum_n amp_n sin(k_n x + phase_n))`` with ``f = abs`` where
    ``absolute`` is set. All arrays have a leading batch axis ``b``.
    """

    amp: Tensor  # (b, N_MODES)
    wavenumber: Tensor  # (b, N_MODES)
    phase: Tensor  # (b, N_MODES)
    absolute: Tensor  # (b,) bool
    sign: Tensor  # (b,) +-1
    windowed: Tensor  # (b,) bool
    left: Tensor  # (b,)
    right: Tensor  # (b,)

    def __call__(self, x: Tensor) -> Tensor:
        """Evaluate at points ``x`` of shape ``(b, nx)`` or ``(nx,)``; returns ``(b, nx)``."""
        x = x.to(self.amp.dtype)
        if x.ndim == 1:
            x = x.expand(self.amp.shape[0], -1)
        arg = torch.einsum("bn,bx->bnx", self.wavenumber, x) + self.phase[:, :, None]
        u = torch.einsum("bn,bnx->bx", self.amp, torch.sin(arg))  # (b, nx)
        u = torch.where(self.absolute[:, None], u.abs(), u)
        u = u * self.sign[:, None]
        window = 0.5 * (
            torch.tanh((x - self.left[:, None]) / WINDOW_WIDTH)
            - torch.tanh((x - self.right[:, None]) / WINDOW_WIDTH)
        )
        return torch.where(self.windowed[:, None], u * window, u)

    def to(self, device: torch.device | str) -> SineSeries:
        """The same parameters on another device."""
        return SineSeries(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def sine_series(seed: int, indices: range, length: float) -> SineSeries:
    """Draw the 1-D initial conditions of samples ``indices`` (float64, CPU).

    Parameters
    ----------
    seed
        The file's seed.
    indices
        Sample indices (each uses its own stream, see :func:`sample_rng`).
    length
        ``x_last - x_first`` of the cell-centre grid; PDEBench divides the wavenumbers by it
        (not by the period), so the series is only nearly periodic: reproduced as is.
    """
    rows = []
    for i in indices:
        rng = sample_rng(seed, i)
        picks = rng.integers(0, N_MODES, size=N_PICKS)
        counts = np.bincount(picks, minlength=N_MODES)
        amp = rng.uniform(0.0, 1.0, N_MODES)
        phase = rng.uniform(0.0, 2.0 * math.pi, N_MODES)
        absolute = rng.uniform() < P_ABS
        sign = rng.choice([-1.0, 1.0])
        windowed = rng.uniform() < P_WINDOW
        left = rng.uniform(*WINDOW_LEFT)
        right = rng.uniform(*WINDOW_RIGHT)
        wavenumber = 2.0 * math.pi * np.arange(1, N_MODES + 1) * counts / length
        rows.append((amp, wavenumber, phase, absolute, sign, windowed, left, right))
    cols = list(zip(*rows, strict=True))
    return SineSeries(
        amp=torch.as_tensor(np.stack(cols[0]), dtype=torch.float64),
        wavenumber=torch.as_tensor(np.stack(cols[1]), dtype=torch.float64),
        phase=torch.as_tensor(np.stack(cols[2]), dtype=torch.float64),
        absolute=torch.as_tensor(np.array(cols[3], dtype=bool)),
        sign=torch.as_tensor(np.array(cols[4]), dtype=torch.float64),
        windowed=torch.as_tensor(np.array(cols[5], dtype=bool)),
        left=torch.as_tensor(np.array(cols[6]), dtype=torch.float64),
        right=torch.as_tensor(np.array(cols[7]), dtype=torch.float64),
    )


def sine_series_batch(rng: np.random.Generator, n: int, length: float) -> SineSeries:
    """Draw ``n`` initial conditions of :func:`sine_series`'s distribution from one stream.

    The same parameter distribution (mode picks, amplitudes, phases, ``|u|``, sign, window) as
    :func:`sine_series`, drawn with array calls: ~100x faster, for sets where only the
    distribution matters (calibration sets). Not the per-sample streams of generated files.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    picks = rng.integers(0, N_MODES, size=(n, N_PICKS))
    counts = (picks[:, :, None] == np.arange(N_MODES)).sum(1)  # (n, N_MODES)
    u = rng.uniform(size=(n, 3))
    f64 = torch.float64
    return SineSeries(
        amp=torch.as_tensor(rng.uniform(0.0, 1.0, (n, N_MODES)), dtype=f64),
        wavenumber=torch.as_tensor(
            2.0 * math.pi * np.arange(1, N_MODES + 1) * counts / length, dtype=f64
        ),
        phase=torch.as_tensor(rng.uniform(0.0, 2.0 * math.pi, (n, N_MODES)), dtype=f64),
        absolute=torch.as_tensor(u[:, 0] < P_ABS),
        sign=torch.as_tensor(rng.choice([-1.0, 1.0], size=n), dtype=f64),
        windowed=torch.as_tensor(u[:, 1] < P_WINDOW),
        left=torch.as_tensor(rng.uniform(*WINDOW_LEFT, n), dtype=f64),
        right=torch.as_tensor(rng.uniform(*WINDOW_RIGHT, n), dtype=f64),
    )


#: Darcy coefficient: number of Gaussian bumps, their width range, and the two values of a(x).
DARCY_BUMPS = 5
DARCY_WIDTH = (0.05, 0.2)
DARCY_HIGH = 1.0
DARCY_LOW = 0.1


def darcy_coefficient(seed: int, indices: range, x: Tensor) -> Tensor:
    """Binary Darcy coefficients on the grid ``x`` (cell centres, both axes): ``(b, nx, nx)``.

    A sum of ``DARCY_BUMPS`` Gaussian bumps (centres uniform in the unit square, widths uniform in
    ``DARCY_WIDTH``, amplitudes uniform in [0, 1)) is thresholded at its mean over the grid:
    ``a = DARCY_HIGH`` above, ``DARCY_LOW`` elsewhere.
    """
    fields = []
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    for i in indices:
        rng = sample_rng(seed, i)
        centre = torch.as_tensor(rng.uniform(0.0, 1.0, (DARCY_BUMPS, 2)))
        width = torch.as_tensor(rng.uniform(*DARCY_WIDTH, DARCY_BUMPS))
        amp = torch.as_tensor(rng.uniform(0.0, 1.0, DARCY_BUMPS))
        dist2 = (xx[None] - centre[:, 0, None, None]) ** 2 + (
            yy[None] - centre[:, 1, None, None]
        ) ** 2
        bumps = torch.einsum("k,kxy->xy", amp, torch.exp(-dist2 / (2 * width[:, None, None] ** 2)))
        fields.append(torch.where(bumps > bumps.mean(), DARCY_HIGH, DARCY_LOW))
    return torch.stack(fields).to(torch.float64)


def normal_noise(seed: int, indices: range, shape: tuple[int, ...]) -> Tensor:
    """Standard normal noise of ``shape`` per sample: ``(b, *shape)`` float64."""
    return torch.as_tensor(
        np.stack([sample_rng(seed, i).standard_normal(shape) for i in indices]),
        dtype=torch.float64,
    )

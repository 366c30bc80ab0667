"""Exact reference operators with known constants, for validating operator certificates.

Coverage of a certificate can only be checked against a truth. These periodic operators are
computed exactly (Fourier multipliers in float64), so their constants are known theorems
(:func:`liponet.certify.true_lipschitz`): advection is a translation (``L_G = 1`` in every
norm), the heat semigroup is a contraction (``L_G = 1``). Viscous Burgers has no global
constant: :func:`burgers` is a small pseudo-spectral solver used as held-out data with an
*estimated* constant (it matches the exact Cole-Hopf solution to ~1e-10 at 64 points,
``tests/test_burgers_solvers.py``). Inputs follow PDEBench's initial-condition family
(:func:`sine_sum_inputs`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["advection", "burgers", "grid", "heat", "sine_sum_inputs"]


def grid(n_points: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Cell centres ``(i + 0.5) / n`` of the unit periodic interval, ``(n_points,)``."""
    return (torch.arange(n_points, dtype=dtype) + 0.5) / n_points


def sine_sum_inputs(
    n_samples: int,
    n_points: int,
    generator: torch.Generator,
    n_terms: int = 2,
    max_wavenumber: int = 4,
    amplitude: float = 1.0,
) -> Tensor:
    """PDEBench-style initial conditions ``sum_n A_n sin(2 pi k_n x + phi_n)`` on ``[0, 1)``.

    ``A_n ~ U[0, amplitude)``, ``k_n`` uniform in ``1..max_wavenumber``, ``phi_n ~ U[0, 2 pi)``;
    with probability 0.1 the absolute value is taken; a random sign. (PDEBench's tanh window is
    left out: it makes the fields discontinuous at the grid scale.)

    Returns
    -------
    Tensor
        ``(n_samples, 1, n_points)`` float64.

    Examples
    --------
    >>> import torch
    >>> sine_sum_inputs(3, 16, torch.Generator().manual_seed(0)).shape
    torch.Size([3, 1, 16])
    """
    if n_samples < 0 or n_points < 1 or n_terms < 1 or max_wavenumber < 1:
        raise ValueError(
            "need n_samples >= 0 and n_points, n_terms, max_wavenumber >= 1, got "
            f"{n_samples}, {n_points}, {n_terms}, {max_wavenumber}"
        )
    x = grid(n_points)
    amp = torch.rand(n_samples, n_terms, 1, generator=generator, dtype=torch.float64) * amplitude
    k = torch.randint(1, max_wavenumber + 1, (n_samples, n_terms, 1), generator=generator)
    phase = torch.rand(n_samples, n_terms, 1, generator=generator, dtype=torch.float64)
    u = (amp * torch.sin(2 * math.pi * (k * x + phase))).sum(1)  # (n, points)
    absolute = torch.rand(n_samples, 1, generator=generator) < 0.1
    u = torch.where(absolute, u.abs(), u)
    sign = torch.where(torch.rand(n_samples, 1, generator=generator) < 0.5, -1.0, 1.0)
    return (u * sign.to(u)).unsqueeze(1)


def _wavenumbers(spatial: tuple[int, ...], device: torch.device) -> list[Tensor]:
    """``2 pi k`` along each spatial dimension, broadcastable over ``spatial``."""
    out = []
    for dim, n in enumerate(spatial):
        k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device) * (2 * math.pi)
        shape = [1] * len(spatial)
        shape[dim] = n
        out.append(k.reshape(shape))
    return out


def _apply_multiplier(u: Tensor, multiplier: Tensor) -> Tensor:
    dims = tuple(range(2, u.ndim))
    coeffs = torch.fft.fftn(u.to(torch.float64), dim=dims)
    return torch.fft.ifftn(coeffs * multiplier, dim=dims).real


def advection(u: Tensor, shift: float | tuple[float, ...]) -> Tensor:
    """Exact periodic advection: ``u(x - shift)`` by Fourier shift (``shift = beta t``).

    ``u``: ``(batch, channels, *spatial)`` on the unit periodic box; ``shift`` a number (every
    dimension) or one per dimension. Returns float64.
    """
    spatial = tuple(u.shape[2:])
    shifts = (shift,) * len(spatial) if isinstance(shift, (int, float)) else tuple(shift)
    if len(shifts) != len(spatial):
        raise ValueError(f"need one shift per spatial dimension ({len(spatial)}), got {shifts}")
    phase = torch.zeros((), dtype=torch.float64, device=u.device)
    for k, s in zip(_wavenumbers(spatial, u.device), shifts, strict=True):
        phase = phase + k * s
    return _apply_multiplier(u, torch.exp(-1j * phase))


def heat(u: Tensor, nu: float, t: float) -> Tensor:
    """Exact periodic heat flow ``u_t = nu Δu`` for time ``t``.

    Fourier multiplier ``exp(-nu |2 pi k|^2 t)``; float64.
    """
    if nu < 0 or t < 0:
        raise ValueError(f"heat needs nu, t >= 0, got {nu}, {t}")
    k2 = torch.zeros((), dtype=torch.float64, device=u.device)
    for k in _wavenumbers(tuple(u.shape[2:]), u.device):
        k2 = k2 + k**2
    return _apply_multiplier(u, torch.exp(-nu * t * k2))


def burgers(u: Tensor, nu: float, t: float, n_substeps: int = 200) -> Tensor:
    """Viscous Burgers ``u_t + (u^2/2)_x = nu u_xx`` (1-D, periodic) by a pseudo-spectral solver.

    Integrating-factor RK4 with 2/3 dealiasing, ``n_substeps`` equal steps; a reference for
    held-out data (no theoretical Lipschitz constant: estimate it).

    Parameters
    ----------
    u
        ``(batch, 1, n_points)``.
    nu, t
        Viscosity and final time.
    n_substeps
        Time steps.
    """
    if u.ndim != 3 or u.shape[1] != 1:
        raise ValueError(f"burgers takes (batch, 1, n_points), got {tuple(u.shape)}")
    n = u.shape[-1]
    k = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64) * (2 * math.pi)
    keep = (torch.arange(k.numel()) < n // 3).to(torch.float64)  # 2/3 rule
    dt = t / n_substeps
    half = torch.exp(-nu * k**2 * dt / 2)
    full = half**2

    def nonlinear(v_hat: Tensor) -> Tensor:
        v = torch.fft.irfft(v_hat * keep, n=n)
        return -0.5j * k * torch.fft.rfft(v * v)

    v = torch.fft.rfft(u.to(torch.float64)[:, 0])
    for _ in range(n_substeps):
        k1 = nonlinear(v)
        k2 = nonlinear(half * (v + dt / 2 * k1))
        k3 = nonlinear(half * v + dt / 2 * k2)
        k4 = nonlinear(full * v + dt * half * k3)
        v = full * v + dt / 6 * (full * k1 + 2 * half * (k2 + k3) + k4)
    return torch.fft.irfft(v, n=n).unsqueeze(1)

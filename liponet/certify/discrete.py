"""Lipschitz constants of the maps between grid samples that data actually define.

A theorem about the continuous solution operator (``true_lipschitz``) is not a theorem about the
map from one grid sample to the next. Two examples that break it: a shift by a fraction of a cell
of a sampled, non-band-limited field is not an isometry of the grid values (its "map" need not
even be a function of the samples); a Fourier-multiplier shift or heat step *is* a linear map of
the samples, an L2 contraction, but its discrete kernel has an l1 norm above 1, so its sup-norm
constant exceeds 1. This module computes the constants of the discrete maps exactly where they
can be computed, and says "no certified constant" otherwise (estimate one from the data then,
``estimate_true_lipschitz``):

* :func:`multiplier_lipschitz`: ``u -> Re ifftn(m * fftn(u))``: in the function (L2) norm the
  largest modulus of the Hermitian part of ``m``; in the sup norm the l1 norm of the real kernel.
* :func:`grid_lipschitz`: the reference operators (:mod:`liponet.certify.reference`): advection by
  Fourier shift (a shift by whole cells is a permutation, constant 1 on any grid data) and heat.
* :func:`generator_lipschitz`: data files written by :func:`liponet.data.generate`, from the
  ``discretization`` attribute they carry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..functional import SVD_RELATIVE_MARGIN
from .norms import check_norm
from .operator import LipschitzConstant
from .premises import ANY_GRID, Premises

__all__ = [
    "FOURIER_MULTIPLIER",
    "float32_storage_noise",
    "generator_lipschitz",
    "grid_lipschitz",
    "multiplier_lipschitz",
]

#: Discretization name of a Fourier-multiplier map of the samples (the reference operators).
FOURIER_MULTIPLIER = "fourier-multiplier"

#: Tolerance (in cells) below which a shift counts as a whole number of cells.
WHOLE_CELL_TOLERANCE = 1e-9


def _reflect(m: Tensor) -> Tensor:
    """``m[-k]`` on the FFT frequency grid, every dimension."""
    dims = tuple(range(m.ndim))
    return torch.roll(torch.flip(m, dims), shifts=(1,) * m.ndim, dims=dims)


def multiplier_lipschitz(
    multiplier: Tensor, norm: str = "function", source: str = "", input_norm: str | None = None
) -> LipschitzConstant:
    """Exact constant of ``u -> Re ifftn(m * fftn(u))`` on real fields (every channel alike).

    Parameters
    ----------
    multiplier
        ``(*spatial)`` complex multipliers on :func:`torch.fft.fftn`'s frequency grid.
    norm
        ``"function"`` (liponet's L2 norm) or ``"sup"``.
    source
        What the multiplier is (for the constant's ``source``).
    input_norm
        ``"sobolev:S"`` for a constant from liponet's discrete Sobolev norm (same FFT grid) into
        the function norm: ``max_k |h_k| / (1 + |2 pi k|^2)^(S/2)``. Default: ``norm``.

    Lipschitz constant
    ------------------
    For real ``u`` the map is the circular convolution with the real kernel
    ``κ = Re ifftn(m)``, whose DFT is the Hermitian part ``h_k = (m_k + conj(m_{-k})) / 2``. In
    the function norm (orthonormal DFT up to a fixed factor) the constant is ``max_k |h_k|``
    (attained by the mode ``k``); in the sup norm it is ``sum_j |κ_j|`` (attained by
    ``u = sign(κ)`` reflected), also for vector fields (triangle inequality). Both computed in
    float64 and rounded up by a margin covering the FFT's rounding.

    Examples
    --------
    >>> import math, torch
    >>> k = torch.fft.fftfreq(16, d=1 / 16, dtype=torch.float64)
    >>> shift = torch.exp(-2j * math.pi * k * 0.3 / 16)  # 0.3 of a cell
    >>> round(multiplier_lipschitz(shift).value, 6), multiplier_lipschitz(shift, "sup").value > 1
    (1.0, True)
    """
    norm = check_norm(norm)
    in_norm = check_norm(input_norm if input_norm is not None else norm)
    m = torch.as_tensor(multiplier).to(torch.complex128)
    n = m.numel()
    scale = float(m.abs().max()) if n else 0.0
    margin = 8 * math.log2(2 * n) * n * 2.0**-52 * scale  # FFT rounding, summed over the kernel
    if norm == "function" and in_norm.startswith("sobolev:"):
        s = float(in_norm.split(":", 1)[1])
        q = sum((k**2 for k in _wavenumbers(tuple(m.shape))), torch.zeros((), dtype=torch.float64))
        weight = (1 + q) ** (s / 2)
        value = float((((m + _reflect(m).conj()) / 2).abs() / weight).max())
        how = f"max |Hermitian part of the multiplier| / Sobolev weight (S = {s:g})"
    elif in_norm != norm:
        raise ValueError(f"multiplier_lipschitz: no constant from {in_norm!r} to {norm!r}")
    elif norm == "function":
        value = float(((m + _reflect(m).conj()) / 2).abs().max())
        how = "max |Hermitian part of the multiplier|"
    elif norm == "sup":
        value = float(torch.fft.ifftn(m).real.abs().sum())
        how = "l1 norm of the discrete kernel"
    else:
        raise ValueError(f"multiplier_lipschitz: norm must be 'function' or 'sup', got {norm!r}")
    return LipschitzConstant(
        (value + margin) * (1 + SVD_RELATIVE_MARGIN),
        "certified",
        in_norm,
        norm,
        f"{source or 'Fourier multiplier'} on {tuple(m.shape)} points: {how}",
        Premises(discretization=FOURIER_MULTIPLIER),
    )


def _wavenumbers(spatial: tuple[int, ...]) -> list[Tensor]:
    out = []
    for dim, n in enumerate(spatial):
        k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64) * (2 * math.pi)
        shape = [1] * len(spatial)
        shape[dim] = n
        out.append(k.reshape(shape))
    return out


def grid_lipschitz(
    pde: str,
    spatial: int | tuple[int, ...],
    norm: str = "function",
    input_norm: str | None = None,
    **params: Any,
) -> LipschitzConstant:
    """Constant of the discrete map that :mod:`liponet.certify.reference` applies to samples.

    Parameters
    ----------
    pde
        ``"advection"`` (parameter ``shift``, a number or one per dimension, in units of the
        unit box) or ``"heat"`` (``nu``, ``t``).
    spatial
        Grid points per dimension.
    norm
        ``"function"`` or ``"sup"``.
    input_norm
        ``"sobolev:S"`` for the smoothing constant into the function norm (heat); default
        ``norm``.

    Returns
    -------
    LipschitzConstant
        Certified. A shift by whole cells permutes the values: constant 1 on any grid data
        (discretization :data:`~liponet.certify.ANY_GRID`). Otherwise the Fourier multiplier's
        exact constant (:func:`multiplier_lipschitz`), proved for data made by that multiplier
        (discretization ``"fourier-multiplier"``); samples of the exact solution shifted by a
        fraction of a cell are *not* such data.

    Examples
    --------
    >>> grid_lipschitz("advection", 64, "sup", shift=0.25).value  # 16 whole cells
    1.0
    >>> c = grid_lipschitz("advection", 64, "sup", shift=0.1)
    >>> c.value > 1, c.premises.discretization
    (True, 'fourier-multiplier')
    """
    dims = (spatial,) if isinstance(spatial, int) else tuple(spatial)
    norm = check_norm(norm)
    if pde == "advection":
        unknown = sorted(set(params) - {"shift"})
        if unknown or "shift" not in params:
            raise ValueError(f"advection: needs parameter shift only, got {sorted(params)}")
        shift = params["shift"]
        shifts = (shift,) * len(dims) if isinstance(shift, (int, float)) else tuple(shift)
        if len(shifts) != len(dims):
            raise ValueError(f"advection: one shift per dimension ({len(dims)}), got {shifts}")
        cells = [float(s) * n for s, n in zip(shifts, dims, strict=True)]
        if input_norm in (None, norm) and all(
            abs(c - round(c)) <= WHOLE_CELL_TOLERANCE for c in cells
        ):
            return LipschitzConstant(
                1.0,
                "certified",
                norm,
                norm,
                f"a shift by whole cells ({', '.join(f'{round(c)}' for c in cells)}) permutes "
                "the grid values",
                Premises(discretization=ANY_GRID),
            )
        phase = sum(
            (k * float(s) for k, s in zip(_wavenumbers(dims), shifts, strict=True)),
            torch.zeros((), dtype=torch.float64),
        )
        m = torch.exp(-1j * phase)
        return multiplier_lipschitz(
            m, norm, f"Fourier shift by {shifts} (cells {cells})", input_norm
        )
    if pde == "heat":
        unknown = sorted(set(params) - {"nu", "t"})
        if unknown or not {"nu", "t"} <= set(params):
            raise ValueError(f"heat: needs parameters nu and t, got {sorted(params)}")
        nu, t = float(params["nu"]), float(params["t"])
        if not (nu >= 0 and t >= 0):
            raise ValueError(f"heat needs nu, t >= 0, got {nu}, {t}")
        k2 = sum((k**2 for k in _wavenumbers(dims)), torch.zeros((), dtype=torch.float64))
        multiplier = torch.exp(-nu * t * k2).to(torch.complex128)
        return multiplier_lipschitz(
            multiplier, norm, f"Fourier heat step nu*t={nu * t:g}", input_norm
        )
    raise ValueError(
        f"grid_lipschitz: no discrete constant for {pde!r}; available: advection, heat"
    )


def generator_lipschitz(
    attrs: Mapping[str, Any], *, frames: int, spatial_stride: int = 1, norm: str = "function"
) -> tuple[LipschitzConstant | None, str]:
    """``L_G`` of the map between stored frames ``frames`` apart of a generated file, if proved.

    Reads the ``discretization`` attribute that :func:`liponet.data.generate` writes (with
    ``nx``, ``dt`` and the PDE's parameters) and matches it to a theorem about the discrete map
    the data define; the same constant holds from a window of frames (stacked as channels) to
    the next frame, since the window's norm is at least its last frame's.

    * ``exact-samples`` (advection: the exact solution evaluated at cell centres): certified 1
      when ``beta * dt * frames`` is a whole number of (strided) cells (a permutation of the
      values); otherwise none (the samples at a fractional shift are not a function of the
      samples before it, and measured pair ratios exceed 1).
    * ``strang-logistic-ftcs`` (1-D diffusion-reaction): with no spatial stride, each substep is
      exact logistic half steps (slope ``<= exp(rho dt/2)`` on ``[0, 1]``) around a forward-Euler
      diffusion step whose weights are ``>= 0`` (diffusion number ``<= 1/2``), a contraction in
      the sup and the L2 norm; the frames' constant is ``exp(rho * dt * frames)`` for values in
      ``[0, 1]``. A spatial stride subsamples the grid the scheme acts on: none.
    * anything else (finite volumes, PDEBench's files, which carry no such attribute): none.

    Returns
    -------
    tuple
        The certified constant (or ``None``) and one line saying why.

    Examples
    --------
    >>> attrs = {"discretization": "exact-samples", "nx": 64, "dt": 0.25, "beta": 0.4}
    >>> generator_lipschitz(attrs, frames=1)[0] is None  # 0.1 = 6.4 cells: no theorem
    True
    >>> generator_lipschitz(attrs, frames=5)[1]  # 0.5 = 32 whole cells
    'a shift by whole cells permutes the grid values'
    """
    norm = check_norm(norm)
    disc = attrs.get("discretization")
    if isinstance(disc, bytes):
        disc = disc.decode()
    if frames < 1 or spatial_stride < 1:
        raise ValueError(f"frames and spatial_stride must be >= 1, got {frames}, {spatial_stride}")
    if disc is None:
        return None, "the file states no discretization (not written by liponet.data.generate)"
    if norm not in ("function", "sup"):
        return None, f"no discrete theorem in the {norm!r} norm"
    if disc == "exact-samples":
        nx, dt, beta = int(attrs["nx"]), float(attrs["dt"]), float(attrs["beta"])
        cells = beta * dt * frames * nx / spatial_stride
        if abs(cells - round(cells)) > WHOLE_CELL_TOLERANCE:
            return None, (
                f"exact solution sampled at cell centres, shifted by {cells:.4g} cells per "
                f"{frames} frame(s): not whole cells, so not an isometry of the grid values"
            )
        return LipschitzConstant(
            1.0,
            "certified",
            norm,
            norm,
            f"exact samples shifted by {round(cells)} whole cells: a permutation of the values",
            Premises(discretization=disc),
        ), "a shift by whole cells permutes the grid values"
    if disc == "strang-logistic-ftcs":
        if spatial_stride != 1:
            return None, (
                f"the scheme acts on the full grid; a spatial stride of {spatial_stride} "
                "subsamples it, so its constant does not carry over"
            )
        number = float(attrs["diffusion_number"])
        if number > 0.5:
            return None, f"diffusion number {number:g} > 1/2: the explicit step is not monotone"
        rho, dt = float(attrs["rho"]), float(attrs["dt"])
        return LipschitzConstant(
            math.exp(rho * dt * frames) * (1 + SVD_RELATIVE_MARGIN),
            "certified",
            norm,
            norm,
            f"Strang logistic/FTCS scheme (diffusion number {number:.3g} <= 1/2), values in "
            f"[0, 1]: exp(rho dt frames) = exp({rho:g}*{dt:g}*{frames})",
            Premises(value_range=(0.0, 1.0), discretization=disc),
        ), "monotone scheme with exact logistic steps"
    return None, f"no theorem for the discrete map {disc!r}"


#: Unit roundoff of float32 storage.
FLOAT32_ROUNDOFF = 2.0**-24


def float32_storage_noise(lipschitz_true: float, *fields: Tensor) -> float:
    """``input_noise`` covering float32 storage of the pairs of an exactly proved discrete map.

    A generator computes ``y = G(u)`` in float64 and stores ``a = fl(u)``, ``ỹ = fl(y)``, each
    value within ``r = 2^-24`` relative of the exact one, so (function and sup norms)
    ``||G(a) - ỹ|| <= r M (1 + L_G)`` with ``M`` the largest stored magnitude. This enters the
    certificate twice (the calibration error and the query's observed error); passed as
    ``input_noise`` (which adds ``L_G eps``) it is ``eps = 2 r M (1 + L_G) / L_G``.

    Examples
    --------
    >>> import torch
    >>> float32_storage_noise(1.0, torch.ones(2, 1, 4)) == 4 * 2.0**-24
    True
    """
    if not lipschitz_true > 0:
        raise ValueError(f"lipschitz_true must be > 0, got {lipschitz_true}")
    m = max((float(f.abs().max()) for f in fields if f.numel()), default=0.0)
    return 2 * FLOAT32_ROUNDOFF * m * (1 + lipschitz_true) / lipschitz_true

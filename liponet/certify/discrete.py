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
* :func:`logistic_pair_lipschitz` / :func:`logistic_pair_bound`: the logistic reaction's constant
  on the segment between two given non-negative inputs, far below ``exp(rho t)`` wherever the
  reaction saturates (the Jacobian of the scheme at their pointwise minimum, see there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..functional import SVD_RELATIVE_MARGIN
from .norms import check_norm, field_norm
from .operator import ErrorBound, LipschitzConstant, calib_errors_from, weakest_label
from .premises import ANY_GRID, PremiseError, Premises

__all__ = [
    "FOURIER_MULTIPLIER",
    "float32_storage_noise",
    "generator_lipschitz",
    "grid_lipschitz",
    "logistic_pair_bound",
    "logistic_pair_lipschitz",
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


#: Pairs per chunk of :func:`logistic_pair_lipschitz` (memory: a frame's substep factors).
PAIR_CHUNK = 64


def _strang_substeps(attrs: Mapping[str, Any]) -> tuple[int, float, float, float, int]:
    """``(substeps per frame, diffusion number, rho, substep dt, nx)`` of a Strang file."""
    nx, dt = int(attrs["nx"]), float(attrs["dt"])
    number, rho = float(attrs["diffusion_number"]), float(attrs["rho"])
    nu = float(attrs.get("Nu", attrs.get("nu", math.nan)))
    if number == 0:
        return 1, 0.0, rho, dt, nx
    if not nu > 0:
        raise PremiseError("the file states a diffusion number but no viscosity Nu > 0")
    dt_sub = number / (nx * nx) / nu  # diffusion number = nu dt_sub / dx^2, dx = 1 / nx
    n = round(dt / dt_sub)
    if n < 1 or abs(n * dt_sub - dt) > 1e-9 * dt:
        raise PremiseError(
            f"dt {dt:g} is not a whole number of substeps {dt_sub:.6g} (Nu, nx and the diffusion "
            "number of the file disagree)"
        )
    return n, number, rho, dt_sub, nx


def logistic_pair_lipschitz(
    inputs_a: Tensor,
    inputs_b: Tensor,
    attrs: Mapping[str, Any],
    *,
    frames: int,
    spatial_stride: int = 1,
    norm: str = "function",
) -> Tensor:
    """Certified constant of a Strang logistic/FTCS file's map on each segment ``[a_p, b_p]``.

    Parameters
    ----------
    inputs_a, inputs_b
        ``(n_pairs, nx)`` or ``(n_pairs, 1, nx)`` non-negative fields (the map's inputs).
    attrs
        The file's attributes (``discretization`` ``"strang-logistic-ftcs"``, ``nx``, ``dt``,
        ``rho``, ``Nu``, ``diffusion_number``), as :func:`liponet.data.generate` writes them.
    frames
        Stored frames between input and output.
    spatial_stride
        Must be 1 (the scheme acts on the full grid).
    norm
        ``"function"`` (L2) or ``"sup"``.

    Returns
    -------
    Tensor
        ``(n_pairs,)`` float64: ``L_p`` with ``||G(a_p) - G(b_p)|| <= L_p ||a_p - b_p||``, never
        above the class constant ``exp(rho dt frames)`` of :func:`generator_lipschitz`.

    Raises
    ------
    PremiseError
        For another discretization, a stride, ``rho < 0``, a negative input value, or a file
        whose attributes do not define the scheme.

    Lipschitz constant
    ------------------
    The scheme ``G`` is a product of maps, each order-preserving: exact logistic half steps
    ``Φ(u) = g u / (1 + u (g - 1))`` (pointwise, increasing) and a forward-Euler diffusion step
    ``H`` (a symmetric circulant matrix with entries ``>= 0`` when the diffusion number is
    ``<= 1/2``, which :func:`generator_lipschitz` checks). Let ``ℓ = min(a, b)`` pointwise
    (``>= 0``). Every point ``w`` of the segment satisfies ``w >= ℓ``, so every intermediate
    state of ``w`` is ``>=`` the same state of ``ℓ`` (order preservation), and the slope
    ``Φ'(u) = g / (1 + u (g - 1))^2`` is decreasing for ``u >= 0`` (``g = e^{rho dt/2} >= 1``).
    Hence the Jacobian ``DG(w) = Π D_k H`` (``D_k`` diagonal slopes) satisfies
    ``0 <= DG(w) <= DG(ℓ) =: J`` entrywise, and for non-negative matrices the spectral norm is
    monotone in the entries, so ``||DG(w)||_2 <= ||J||_2``; the mean value inequality on the
    segment gives ``||G(a) - G(b)|| <= ||J||_2 ||a - b||`` (the function norm's uniform weight
    does not change a matrix's norm). ``||J||_2 <= sqrt(||J||_1 ||J||_inf)`` (Schur's test),
    and for ``J >= 0`` these are ``max(J 1)`` and ``max(J^T 1)``: one tangent sweep of the
    scheme from ``ℓ`` and one adjoint sweep (``H`` is symmetric), in float64, rounded up by a
    margin covering their rounding. In the sup norm the constant is ``max(J 1)`` exactly.

    The logistic reaction drives every state towards 1, where ``Φ'`` is below 1; so wherever
    ``ℓ`` is not near 0 over a wide region the constant is far below ``exp(rho t)`` (measured in
    ``benchmarks/results/logistic_pair_bound.md``).

    Examples
    --------
    >>> import torch
    >>> attrs = {"discretization": "strang-logistic-ftcs", "nx": 16, "dt": 0.5, "rho": 4.0,
    ...          "Nu": 0.05, "diffusion_number": 0.2}
    >>> a, b = torch.full((1, 16), 0.5), torch.full((1, 16), 0.6)
    >>> pair = logistic_pair_lipschitz(a, b, attrs, frames=1)
    >>> float(pair[0]) < 1 < generator_lipschitz(attrs, frames=1)[0].value
    True
    """
    norm = check_norm(norm)
    disc = attrs.get("discretization")
    if isinstance(disc, bytes):
        disc = disc.decode()
    if disc != "strang-logistic-ftcs":
        raise PremiseError(f"logistic_pair_lipschitz: the data's map is {disc!r}, not Strang")
    whole, why = generator_lipschitz(attrs, frames=frames, spatial_stride=spatial_stride, norm=norm)
    if whole is None:
        raise PremiseError(f"logistic_pair_lipschitz: {why}")
    n_sub, number, rho, dt_sub, nx = _strang_substeps(attrs)
    if rho < 0:
        raise PremiseError(f"rho = {rho:g} < 0: the logistic slope is not decreasing in u")
    a = torch.as_tensor(inputs_a).to(torch.float64).reshape(inputs_a.shape[0], -1)
    b = torch.as_tensor(inputs_b).to(torch.float64).reshape(inputs_b.shape[0], -1)
    if a.shape != b.shape or a.shape[1] != nx:
        raise ValueError(
            f"inputs must be (n_pairs, {nx}) fields of one channel, got {tuple(inputs_a.shape)} "
            f"and {tuple(inputs_b.shape)}"
        )
    lower = torch.minimum(a, b)
    if lower.numel() and float(lower.min()) < 0:
        raise PremiseError(
            f"an input value {float(lower.min()):.3g} < 0: the pairwise constant is proved for "
            "non-negative inputs"
        )
    g = math.exp(rho * 0.5 * dt_sub)

    def slope(u: Tensor) -> Tensor:
        return g / (1 + u * (g - 1)) ** 2

    def phi(u: Tensor) -> Tensor:
        return u * g / (1 + u * (g - 1))

    def heat(w: Tensor) -> Tensor:
        if number == 0:
            return w
        return w + number * (torch.roll(w, -1, dims=-1) - 2 * w + torch.roll(w, 1, dims=-1))

    def substep(u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s1 = slope(u)
        u = heat(phi(u))
        s2 = slope(u)
        return phi(u), s1, s2

    out = []
    for start in range(0, lower.shape[0], PAIR_CHUNK):
        u = lower[start : start + PAIR_CHUNK]
        tangent = torch.ones_like(u)
        checkpoints = []
        for _ in range(frames):
            checkpoints.append(u)
            for _ in range(n_sub):
                u, s1, s2 = substep(u)
                tangent = s2 * heat(s1 * tangent)  # J 1, one substep D2 H D1 at a time
        row_max = tangent.amax(dim=-1)
        if norm == "sup":
            out.append(row_max)
            continue
        adjoint = torch.ones_like(u)
        for state in reversed(checkpoints):  # J^T 1: the frame's factors again, in reverse
            factors = []
            for _ in range(n_sub):
                state, s1, s2 = substep(state)
                factors.append((s1, s2))
            for s1, s2 in reversed(factors):
                adjoint = s1 * heat(s2 * adjoint)
        out.append(torch.sqrt(row_max * adjoint.amax(dim=-1)))
    values = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
    steps = 3 * n_sub * frames  # multiplications per entry along each sweep
    margin = (1 + 64 * steps * 2.0**-52) * (1 + SVD_RELATIVE_MARGIN)
    return torch.clamp(values * margin, max=whole.value)


def logistic_pair_bound(
    query_inputs: Tensor,
    calib_inputs: Tensor,
    calib_targets: Tensor,
    calib_preds: Tensor,
    lipschitz_model: LipschitzConstant,
    attrs: Mapping[str, Any],
    *,
    frames: int,
    spatial_stride: int = 1,
    norm: str = "function",
    input_noise: float = 0.0,
    nearest: int = 8,
) -> ErrorBound:
    """The plain bound with ``L_G`` per query-calibration pair (:func:`logistic_pair_lipschitz`).

    ``||G(a) - Ĝ(a)|| <= min_i [e_i + (L_G(a, a_i) + L_Ĝ) ||a - a_i||] + L_G eps``, the minimum
    over the ``nearest`` calibration samples with the smallest ``e_i + L_Ĝ ||a - a_i||`` and,
    for the others, the class constant ``exp(rho t)`` (every term is a valid bound, so the
    minimum over any of them is). ``eps = input_noise`` with the class constant (float32
    storage, :func:`float32_storage_noise`). Labelled certified when ``lipschitz_model`` is.

    Parameters
    ----------
    query_inputs, calib_inputs
        ``(n, 1, nx)`` non-negative inputs.
    calib_targets, calib_preds
        ``G(a_i)`` and ``Ĝ(a_i)``.
    lipschitz_model
        The model's constant.
    attrs, frames, spatial_stride, norm
        As :func:`logistic_pair_lipschitz`.
    input_noise
        ``eps`` above.
    nearest
        Calibration samples per query given their pair constant.

    Examples
    --------
    >>> import torch
    >>> from liponet.certify import LipschitzConstant
    >>> attrs = {"discretization": "strang-logistic-ftcs", "nx": 8, "dt": 0.5, "rho": 4.0,
    ...          "Nu": 0.05, "diffusion_number": 0.2}
    >>> a = 0.3 + 0.4 * torch.rand(6, 1, 8)
    >>> model = LipschitzConstant(1.0, "certified", source="a 1-Lipschitz model")
    >>> b = logistic_pair_bound(a[:2], a[2:], a[2:], a[2:], model, attrs, frames=1)
    >>> b.name, b.label, tuple(b.bound.shape)
    ('plain-pairwise', 'certified', (2,))
    """
    norm = check_norm(norm)
    whole, why = generator_lipschitz(attrs, frames=frames, spatial_stride=spatial_stride, norm=norm)
    if whole is None:
        raise PremiseError(f"logistic_pair_bound: {why}")
    if (lipschitz_model.input_norm, lipschitz_model.output_norm) != (norm, norm):
        raise ValueError(
            f"lipschitz_model holds {lipschitz_model.input_norm} -> "
            f"{lipschitz_model.output_norm}, the bound is in the {norm} norm"
        )
    errors = calib_errors_from(None, calib_targets, calib_preds, norm)
    q = query_inputs.to(torch.float64)
    c = calib_inputs.to(torch.float64)
    diff = (q[:, None] - c[None]).reshape(-1, *q.shape[1:])
    dist = field_norm(diff, norm).reshape(q.shape[0], c.shape[0])  # (n_query, n_calib)
    model = float(lipschitz_model.value)
    plain = errors[None] + (whole.value + model) * dist
    k = min(nearest, c.shape[0])
    pick = torch.topk(errors[None] + model * dist, k, dim=1, largest=False).indices
    rows = torch.arange(q.shape[0])[:, None].expand(-1, k)
    pair = logistic_pair_lipschitz(
        q[rows.reshape(-1)], c[pick.reshape(-1)], attrs, frames=frames, norm=norm
    ).reshape(q.shape[0], k)
    terms = plain.clone()
    terms[rows, pick] = errors[pick] + (pair + model) * dist[rows, pick]
    bound, index = terms.min(dim=1)
    label = weakest_label(lipschitz_model.label, "certified")
    return ErrorBound(
        bound=bound + whole.value * input_noise,
        label=label,
        name="plain-pairwise",
        norm=norm,
        index=index,
        distance=dist[torch.arange(q.shape[0]), index][:, None],
        calib_error=errors[index],
        constants={"model": lipschitz_model, "true": whole},
        premises=(
            f"true: L_G per pair = ||DG(min(a, a_i))|| of the Strang logistic/FTCS scheme "
            f"(non-negative inputs; {k} nearest calibration samples per query), else {why}",
        ),
    )

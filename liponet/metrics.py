"""PDEBench's error metrics (RMSE, nRMSE, cRMSE, bRMSE, fRMSE bands, Max), relative L2, VRMSE.

One N-dimensional code path for 1-, 2- and 3-D (any number of spatial dimensions), as a pure
function (:func:`pdebench_metrics`) and as a torchmetrics class (:class:`PDEBenchMetrics`) that
aggregates over batches and DDP ranks. Both go through the same two steps: per-batch *sums*
(:func:`metric_statistics`) and the final formulas (:func:`finalize_metrics`), so a batch-wise
accumulation equals the whole-set computation up to floating-point summation order.

Layout
------
``pred`` and ``target`` are ``(batch, channels, *spatial)``, or ``(batch, channels, *spatial,
time)`` with ``time_axis=True``. At least one spatial dimension. Leading time frames that were
model *inputs* (PDEBench's ``initial_step`` window) are excluded by passing
``input_frames=k``: frames ``[..., :k]`` of the time axis are dropped from every metric. Without a
time axis, pass only predicted frames.

Definitions (per sample b, channel c, time t; x runs over the grid; e = pred - target; N = number
of grid points; every metric is finally averaged over c and t):

- ``rmse``: mean_b sqrt(mean_x e^2)
- ``nrmse``: mean_b sqrt(mean_x e^2) / sqrt(mean_x target^2)
- ``crmse``: sqrt(mean_b (sum_x pred - sum_x target)^2) / N
- ``brmse``: mean_b sqrt(sum of e^2 over the boundary faces / number of face points); each spatial
  dimension contributes its first and last slice (corners are counted once per face, so in 2-D the
  denominator is 2 nx + 2 ny, as in PDEBench)
- ``frmse_low/mid/high``: F = FFT of e over the grid; |F|^2 summed over the non-negative index box
  (``0 <= i_d < n_d // 2``; in 1-D ``0 <= i <= n // 2``, the rfft half-spectrum PDEBench uses) into
  shells k = floor(sqrt(sum_d i_d^2)) < n_shells (``min(n_d) // 2``; ``n // 2 + 1`` in 1-D);
  E_k = sqrt(mean_b shell_k) / prod(n_d) * prod(L_d) with L_d = 1; bands are the mean of E_k over
  k in [0, 4), [4, 12), [12, n_shells). A band with no shell (small grids) is NaN.
- ``max``: max over ALL samples and grid points of |e|, then averaged over c, t. PDEBench averaged
  per-batch maxima; this is the true maximum over the evaluated set (for one channel and no time
  axis, the maximum absolute error itself).
- ``rel_l2``: mean_b ||e|| / ||target||, norms over channels, grid and (predicted) time.

All statistics are accumulated in float64.

The Well's metric, VRMSE (:func:`vrmse`, :class:`VRMSE`), is separate: per sample b and channel
c, ``sqrt(mean_x e^2 / (mean_x (target - mean_x target)^2 + eps))`` (the RMSE relative to the
target's spatial standard deviation, ``eps = 1e-7``), averaged over samples (and channels).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "FOURIER_BANDS",
    "METRIC_NAMES",
    "VRMSE",
    "PDEBenchMetrics",
    "finalize_metrics",
    "metric_statistics",
    "pdebench_metrics",
    "vrmse",
]

#: Shell index ranges of PDEBench's fRMSE bands: [start, stop); ``None`` = up to the last shell.
FOURIER_BANDS: dict[str, tuple[int, int | None]] = {
    "frmse_low": (0, 4),
    "frmse_mid": (4, 12),
    "frmse_high": (12, None),
}

#: Keys of the dictionaries returned by :func:`pdebench_metrics` and :class:`PDEBenchMetrics`.
METRIC_NAMES: tuple[str, ...] = (
    "rmse",
    "nrmse",
    "crmse",
    "brmse",
    *FOURIER_BANDS,
    "max",
    "rel_l2",
)

#: Summed statistics (name -> reduction across batches and ranks).
_STATISTICS: dict[str, str] = {
    "count": "sum",  # ()            number of samples
    "rmse_sum": "sum",  # (c, t)      sum_b sqrt(mean_x e^2)
    "nrmse_sum": "sum",  # (c, t)     sum_b sqrt(mean_x e^2) / sqrt(mean_x target^2)
    "conserved_sq": "sum",  # (c, t)  sum_b ((sum_x pred - sum_x target) / N)^2
    "boundary_sum": "sum",  # (c, t)  sum_b sqrt(boundary mean of e^2)
    "fourier_sq": "sum",  # (c, t, k) sum_b shell_k / prod(n)^2
    "max_abs": "max",  # (c, t)       max_b max_x |e|
    "rel_l2_sum": "sum",  # ()        sum_b ||e|| / ||target||
}


def _to_channels_time_grid(
    x: Tensor, time_axis: bool, input_frames: int, name: str
) -> tuple[Tensor, tuple[int, ...]]:
    """Return ``x`` as float64 ``(batch, channels, time, *spatial)`` and the spatial shape."""
    min_ndim = 4 if time_axis else 3
    if x.ndim < min_ndim:
        layout = "(batch, channels, *spatial, time)" if time_axis else "(batch, channels, *spatial)"
        raise ValueError(
            f"{name} must be {layout} with at least one spatial dimension, got shape "
            f"{tuple(x.shape)}"
        )
    x = x.detach().to(torch.float64)
    if time_axis:
        if not 0 <= input_frames < x.shape[-1]:
            raise ValueError(
                f"input_frames must be in [0, {x.shape[-1]}) for a time axis of length "
                f"{x.shape[-1]}, got {input_frames}"
            )
        x = x[..., input_frames:].movedim(-1, 2)
    elif input_frames != 0:
        raise ValueError("input_frames needs time_axis=True (without a time axis, drop them first)")
    else:
        x = x.unsqueeze(2)
    return x, tuple(x.shape[3:])


def _shell_index(spatial: tuple[int, ...], device: torch.device) -> tuple[Tensor, int]:
    """Shell of every index of the non-negative frequency box, and the number of shells."""
    limits: tuple[int, ...]
    if len(spatial) == 1:
        limits = (spatial[0] // 2 + 1,)
        n_shells = limits[0]
    else:
        limits = tuple(n // 2 for n in spatial)
        n_shells = min(limits)
    grids = torch.meshgrid(
        *(torch.arange(n, device=device, dtype=torch.int64) for n in limits), indexing="ij"
    )
    radius_sq = sum(g**2 for g in grids)
    assert isinstance(radius_sq, Tensor)
    shell = torch.sqrt(radius_sq.to(torch.float64)).floor().to(torch.int64)  # exact < 2**52
    return shell, n_shells


def metric_statistics(
    pred: Tensor, target: Tensor, *, time_axis: bool = False, input_frames: int = 0
) -> dict[str, Tensor]:
    """Per-batch sums from which every metric is computed (see the module docstring).

    Parameters
    ----------
    pred, target
        ``(batch, channels, *spatial)``, or ``(batch, channels, *spatial, time)`` with
        ``time_axis=True``; same shape.
    time_axis
        Whether the last axis is time.
    input_frames
        Leading frames of the time axis to exclude (they were model inputs).

    Returns
    -------
    dict
        float64 tensors named as the keys of ``_STATISTICS`` (sums over the batch, or the
        maximum for ``max_abs``); shapes ``()``, ``(channels, time)`` or
        ``(channels, time, n_shells)``.

    Examples
    --------
    >>> import torch
    >>> stats = metric_statistics(torch.full((2, 1, 8), 1.5), torch.ones(2, 1, 8))
    >>> float(stats["count"]), float(finalize_metrics(stats)["rmse"])
    (2.0, 0.5)
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    p, spatial = _to_channels_time_grid(pred, time_axis, input_frames, "pred")
    t, _ = _to_channels_time_grid(target, time_axis, input_frames, "target")
    batch = p.shape[0]
    grid_dims = tuple(range(3, 3 + len(spatial)))
    n_points = math.prod(spatial)
    e = p - t  # (b, c, t, *spatial)
    e2 = e.square()

    rms = e2.mean(dim=grid_dims).sqrt()  # (b, c, t)
    target_rms = t.square().mean(dim=grid_dims).sqrt()
    conserved = (p.sum(dim=grid_dims) - t.sum(dim=grid_dims)) / n_points

    face_sum = torch.zeros_like(rms)
    face_count = 0
    for dim in grid_dims:
        for index in (0, -1):
            face = e2.select(dim, index).reshape(*e2.shape[:3], -1)  # (b, c, t, face points)
            face_sum = face_sum + face.sum(dim=3)
            face_count += face.shape[3]
    boundary = (face_sum / face_count).sqrt()

    spectrum = torch.fft.fftn(e, dim=grid_dims).abs().square()  # (b, c, t, *spatial)
    shell, n_shells = _shell_index(spatial, e.device)
    for offset, limit in enumerate(shell.shape):
        spectrum = spectrum.narrow(3 + offset, 0, limit)
    keep = shell < n_shells
    power = spectrum.flatten(3)[..., keep.flatten()]  # (b, c, t, kept)
    shells = torch.zeros(*power.shape[:3], n_shells, dtype=power.dtype, device=power.device)
    shells.index_add_(3, shell[keep].flatten(), power)
    shells = shells / float(n_points) ** 2

    flat_e = e.flatten(1)
    flat_t = t.flatten(1)
    rel = torch.linalg.vector_norm(flat_e, dim=1) / torch.linalg.vector_norm(flat_t, dim=1)
    return {
        "count": torch.tensor(float(batch), dtype=torch.float64, device=e.device),
        "rmse_sum": rms.sum(0),
        "nrmse_sum": (rms / target_rms).sum(0),
        "conserved_sq": conserved.square().sum(0),
        "boundary_sum": boundary.sum(0),
        "fourier_sq": shells.sum(0),
        "max_abs": e.abs().flatten(3).amax(dim=(0, 3)),
        "rel_l2_sum": rel.sum(),
    }


def finalize_metrics(stats: dict[str, Tensor]) -> dict[str, Tensor]:
    """The metrics (scalar float64 tensors, keys :data:`METRIC_NAMES`) from summed statistics.

    Examples
    --------
    >>> import torch
    >>> target = torch.ones(4, 1, 8)
    >>> a = metric_statistics(target[:2] + 0.5, target[:2])
    >>> b = metric_statistics(target[2:] - 1.0, target[2:])
    >>> merged = {k: torch.maximum(a[k], b[k]) if k == "max_abs" else a[k] + b[k] for k in a}
    >>> float(finalize_metrics(merged)["max"]), float(finalize_metrics(merged)["rmse"])
    (1.0, 0.75)
    """
    n = stats["count"]
    if not bool(n > 0):
        raise ValueError("no samples were evaluated")
    spectrum = (stats["fourier_sq"] / n).sqrt()  # (c, t, k): E_k with L_d = 1
    out = {
        "rmse": (stats["rmse_sum"] / n).mean(),
        "nrmse": (stats["nrmse_sum"] / n).mean(),
        "crmse": (stats["conserved_sq"] / n).sqrt().mean(),
        "brmse": (stats["boundary_sum"] / n).mean(),
    }
    for name, (start, stop) in FOURIER_BANDS.items():
        band = spectrum[..., start:stop]
        out[name] = band.mean() if band.numel() else spectrum.new_tensor(float("nan"))
    out["max"] = stats["max_abs"].mean()
    out["rel_l2"] = stats["rel_l2_sum"] / n
    return out


def pdebench_metrics(
    pred: Tensor, target: Tensor, *, time_axis: bool = False, input_frames: int = 0
) -> dict[str, Tensor]:
    """PDEBench's metric family and relative L2 over one whole set of samples.

    Parameters
    ----------
    pred, target
        ``(batch, channels, *spatial)`` (any number >= 1 of spatial dimensions), or
        ``(batch, channels, *spatial, time)`` with ``time_axis=True``.
    time_axis
        Whether the last axis is time.
    input_frames
        Number of leading time frames to exclude (model inputs; PDEBench's ``initial_step``).

    Returns
    -------
    dict
        Scalar float64 tensors keyed by :data:`METRIC_NAMES`; definitions in :mod:`liponet.metrics`.

    Examples
    --------
    >>> import torch
    >>> target = torch.ones(2, 1, 8)
    >>> m = pdebench_metrics(target + 0.5, target)
    >>> float(m["rmse"]), float(m["nrmse"]), float(m["max"]), float(m["crmse"])
    (0.5, 0.5, 0.5, 0.5)
    """
    stats = metric_statistics(pred, target, time_axis=time_axis, input_frames=input_frames)
    return finalize_metrics(stats)


class PDEBenchMetrics(Metric):
    """PDEBench's metric family accumulated over batches and DDP ranks.

    Parameters
    ----------
    time_axis
        Whether inputs carry a trailing time axis: ``(batch, channels, *spatial, time)``;
        otherwise ``(batch, channels, *spatial)``.
    input_frames
        Leading time frames excluded from every metric (they were inputs).
    **kwargs
        Passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Notes
    -----
    States are sums (and a maximum) per channel and time frame, reduced across ranks by
    torchmetrics (sum, max), so ``compute()`` equals :func:`pdebench_metrics` on the
    concatenation of every batch of every rank. Every rank must see at least one batch (the state
    shapes are set by the first update) and the same channels, time frames and grid.

    Examples
    --------
    >>> import torch
    >>> metric = PDEBenchMetrics()
    >>> target = torch.ones(4, 1, 8)
    >>> metric.update(target[:2] + 0.5, target[:2])
    >>> metric.update(target[2:] - 2.0, target[2:])
    >>> m = metric.compute()
    >>> float(m["max"]), float(m["rmse"])
    (2.0, 1.25)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, *, time_axis: bool = False, input_frames: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if input_frames < 0 or (input_frames and not time_axis):
            raise ValueError(
                f"input_frames must be >= 0 and needs time_axis=True, got {input_frames}"
            )
        self.time_axis = time_axis
        self.input_frames = input_frames
        for name, reduction in _STATISTICS.items():
            default = torch.tensor(-math.inf if reduction == "max" else 0.0, dtype=torch.float64)
            self.add_state(name, default=default, dist_reduce_fx=reduction)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch (same layout as :func:`pdebench_metrics`)."""
        stats = metric_statistics(
            pred, target, time_axis=self.time_axis, input_frames=self.input_frames
        )
        for name, value in stats.items():
            state: Tensor = getattr(self, name)
            if _STATISTICS[name] == "max":
                setattr(self, name, torch.maximum(state, value))
            else:
                setattr(self, name, state + value)  # a scalar zero broadcasts on first use

    def compute(self) -> dict[str, Tensor]:
        """The metrics over everything seen since the last reset."""
        return finalize_metrics({name: getattr(self, name) for name in _STATISTICS})


#: The Well's stabiliser of the variance in VRMSE.
VRMSE_EPS = 1e-7


def _vrmse_per_sample(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    """``(batch, channels)`` float64 VRMSE of each sample and channel."""
    if pred.shape != target.shape or pred.ndim < 3:
        raise ValueError(
            "pred and target must both be (batch, channels, *spatial) with at least one spatial "
            f"dimension, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    p = pred.detach().to(torch.float64).flatten(2)
    t = target.detach().to(torch.float64).flatten(2)
    mse = (p - t).square().mean(-1)
    var = (t - t.mean(-1, keepdim=True)).square().mean(-1)
    return (mse / (var + eps)).sqrt()


def vrmse(
    pred: Tensor, target: Tensor, *, eps: float = VRMSE_EPS, per_channel: bool = False
) -> Tensor:
    """The Well's variance-scaled RMSE, averaged over the batch (and channels).

    Parameters
    ----------
    pred, target
        ``(batch, channels, *spatial)``, any number >= 1 of spatial dimensions.
    eps
        Added to the target's spatial variance (The Well's ``1e-7``).
    per_channel
        Return one value per channel ``(channels,)`` instead of their mean.

    Returns
    -------
    Tensor
        float64: ``mean_b sqrt(mean_x e^2 / (var_x target + eps))`` (then mean over channels).
        Predicting the target's spatial mean everywhere scores about 1.

    Examples
    --------
    >>> import torch
    >>> target = torch.tensor([[[1.0, -1.0, 1.0, -1.0]]])  # spatial variance 1
    >>> round(float(vrmse(target + 0.5, target)), 6)
    0.5
    >>> round(float(vrmse(torch.zeros_like(target), target)), 6)  # the mean: VRMSE 1
    1.0
    """
    per = _vrmse_per_sample(pred, target, eps).mean(0)
    return per if per_channel else per.mean()


class VRMSE(Metric):
    """:func:`vrmse` accumulated over batches and DDP ranks (per-channel sums and a count).

    Parameters
    ----------
    eps
        As :func:`vrmse`.
    per_channel
        ``compute()`` returns ``(channels,)`` instead of the channel mean.
    **kwargs
        Passed to :class:`torchmetrics.Metric`.

    Examples
    --------
    >>> import torch
    >>> metric = VRMSE()
    >>> target = torch.tensor([[[1.0, -1.0, 1.0, -1.0]]]).repeat(2, 1, 1)
    >>> metric.update(target[:1] + 0.5, target[:1])
    >>> metric.update(target[1:] + 1.5, target[1:])
    >>> round(float(metric.compute()), 6)  # mean of 0.5 and 1.5
    1.0
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self, *, eps: float = VRMSE_EPS, per_channel: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps, self.per_channel = eps, per_channel
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch ``(batch, channels, *spatial)``."""
        per = _vrmse_per_sample(pred, target, self.eps)
        total, count = self.total, self.count
        self.total = total + per.sum(0)  # a scalar zero broadcasts on first use
        self.count = count + per.shape[0]

    def compute(self) -> Tensor:
        """VRMSE over every sample seen since the last reset."""
        total, count = self.total, self.count
        if not bool(count > 0):
            raise ValueError("no samples were evaluated")
        per = total / count
        return per if self.per_channel else per.mean()

"""Fit a model's spectral shortcut to the training windows before training.

A time-stepping PDE's linear part acts on every Fourier mode; :class:`liponet.layers.
SpectralShortcut` learns it as one multiplier ``S_k`` per mode. Gradient descent reaches the
least-squares ``S`` slowly (the high modes carry little of the loss), but ``S`` is linear: the
per-mode least-squares fit of the training windows is one solve
(:meth:`~liponet.layers.SpectralShortcut.fit_`). On the ``medium`` advection task that fit alone,
``f = 0``, reaches a test rollout nRMSE of 0.000597, below every trained model of the previous
rounds (benchmarks/results/spectral_shortcut_init.md).

Three settings of a run use it (:class:`~liponet.train.Trainer`; ``liponet train --set KEY=VALUE``):

* ``shortcut_init = "lstsq"`` / ``"lstsq-rel"`` (:class:`~liponet.train.TrainConfig`): before the
  first step, ``S`` is set to the least-squares step from the training windows to their next
  frames (``"lstsq-rel"``: each window weighted by ``1 / ||y||``, the relative error the
  trainer's ``rel_l2`` loss measures), projected to the shortcut's ball ``max_k ||S_k|| <= s``;
* ``shortcut_frozen = True``: ``S`` then takes no gradient (the fitted step is kept; ``f`` learns
  the rest);
* ``model.kwargs.shortcut_bound = "auto"`` (LipFNO): ``s`` becomes the unconstrained fit's largest
  per-mode norm (exact float64 SVD), so the ball does not cut the data's own step (a wave
  equation's step ``(u(t-1), u(t)) -> u(t+1)`` has ``||S_k||`` up to ``sqrt 5``). ``s`` is a design
  choice read from the data, not a premise: the certified bound is always the weights' own.

The fit holds every training window in memory once (float64 per-mode Gram matrices are
accumulated in chunks; the windows themselves are stacked first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..functional import TARGET_MARGIN
from ..layers.shortcut import (
    SpectralShortcut,
    _mirror,
    hermitian_multipliers,
    lstsq_multipliers,
    project_multipliers,
    shortcut_grid,
    shortcut_modes,
)

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = [
    "SHORTCUT_INITS",
    "ShortcutWindows",
    "fit_model_shortcut",
    "fit_shortcut",
    "free_fit",
    "resolve_shortcut_bound",
    "rollout_multipliers",
    "stacked_windows",
    "window_chains",
]

#: The fits of ``shortcut_init``: one-step least squares (``-rel``: each window weighted by
#: ``1 / ||y_i||``), or the rollout fit over the training trajectories (``-rel``: each
#: trajectory weighted by ``1 / ||its frames||``; :func:`rollout_multipliers`).
SHORTCUT_INITS = ("lstsq", "lstsq-rel", "rollout", "rollout-rel")


def _check_init(how: str) -> None:
    if how not in SHORTCUT_INITS:
        raise ValueError(f"shortcut_init={how!r}: expected one of {', '.join(SHORTCUT_INITS)}")


def fit_shortcut(
    shortcut: SpectralShortcut, x: Tensor, y: Tensor, how: str = "lstsq"
) -> SpectralShortcut:
    """Fit ``shortcut`` to windows ``x`` -> frames ``y`` by the :data:`SHORTCUT_INITS` fit ``how``.

    ``"lstsq-rel"`` scales each pair by ``1 / ||y_i||`` first: the map is linear, so that
    weights each window's squared error by its relative size. ``"rollout"`` /
    ``"rollout-rel"``: :func:`rollout_multipliers` inside the shortcut's ball (its ``s``
    times :data:`~liponet.functional.TARGET_MARGIN`).

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(32, 2, 16)
    >>> y = 2.0 * torch.roll(x[:, -1:], 1, dims=-1)        # gain 2: outside the unit ball
    >>> fit_shortcut(SpectralShortcut(2, 1, 16, s=None), x, y).lipschitz_bound()
    2.0...
    """
    _check_init(how)
    if how.startswith("rollout"):
        radius = None if shortcut.s is None else shortcut.s * TARGET_MARGIN
        return shortcut.assign_(
            rollout_multipliers(x, y, shortcut.size, radius, relative=how == "rollout-rel")
        )
    return shortcut.fit_(*_weighted(x, y, how))


def _weighted(x: Tensor, y: Tensor, how: str) -> tuple[Tensor, Tensor]:
    """``"lstsq-rel"``: each pair scaled by ``1 / ||y_i||``; the pairs as they are otherwise."""
    if how != "lstsq-rel":
        return x, y
    w = y.flatten(1).norm(dim=1).clamp_min(torch.finfo(y.dtype).tiny).reciprocal()
    w = w.reshape(-1, *([1] * (y.ndim - 1)))
    return x * w, y * w


def free_fit(x: Tensor, y: Tensor, how: str = "lstsq") -> Tensor:
    """The unconstrained :data:`SHORTCUT_INITS` fit ``how`` of ``x -> y`` (float64 multipliers).

    Complex128 ``(*shortcut_modes(grid), out, in)`` (the grid: ``x``'s spatial axes): what
    :func:`fit_shortcut` computes before the
    projection to the ball. For the one-step fits, projecting it (:meth:`~liponet.layers.
    SpectralShortcut.assign_`) is the fit inside the ball; the rollout fit inside a ball
    projects every iterate instead (the same where the ball does not bind).

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(32, 2, 16)
    >>> free_fit(x, 0.5 * x[:, -1:]).shape
    torch.Size([9, 1, 2])
    """
    _check_init(how)
    if how.startswith("rollout"):
        return rollout_multipliers(x, y, tuple(x.shape[2:]), relative=how == "rollout-rel")
    return lstsq_multipliers(*_weighted(x, y, how), tuple(x.shape[2:]))


@dataclasses.dataclass(frozen=True)
class ShortcutWindows:
    """The stacked training windows of a shortcut fit, and the unconstrained fit if made.

    ``free`` (complex128 multipliers, :func:`free_fit`) is set when ``shortcut_bound="auto"``
    needed it; :func:`fit_model_shortcut` then projects it instead of fitting again.
    """

    x: Tensor
    y: Tensor
    free: Tensor | None = None


def stacked_windows(dataset: Dataset[Any], batch: int = 4096) -> tuple[Tensor, Tensor]:
    """Every ``(x, y)`` pair of ``dataset`` stacked into two tensors (in dataset order)."""
    xs, ys = [], []
    for pair in DataLoader(dataset, batch_size=batch, shuffle=False):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(
                "shortcut fit: the training set must yield (input, target) pairs, got "
                f"{type(pair).__name__}"
            )
        xs.append(pair[0])
        ys.append(pair[1])
    if not xs:
        raise ValueError("shortcut fit: the training set is empty")
    return torch.cat(xs), torch.cat(ys)


def _the_shortcut(model: nn.Module) -> SpectralShortcut:
    found = [m for m in model.modules() if isinstance(m, SpectralShortcut)]
    if len(found) != 1:
        raise ValueError(
            "shortcut_init / shortcut_frozen need a model with one spectral shortcut "
            f"(LipFNO or FNO with increment='spectral'), found {len(found)}"
        )
    return found[0]


def fit_model_shortcut(
    model: nn.Module,
    x: Tensor | None,
    y: Tensor | None,
    how: str | None = "lstsq",
    frozen: bool = False,
    free: Tensor | None = None,
) -> nn.Module:
    """``model``'s spectral shortcut fitted to ``x -> y`` (``how=None``: left as it is), and frozen.

    The fit is projected to the shortcut's ball (its ``s``); ``frozen=True`` turns its gradient
    off (``requires_grad``), so an optimizer leaves it. Works the same for
    :class:`~liponet.models.FNO` (no ball) and :class:`~liponet.models.LipFNO`. ``free``: the
    unconstrained fit ``how`` of the same windows (:func:`free_fit`, as
    :func:`resolve_shortcut_bound` made it), projected to the ball instead of fitting again.
    """
    shortcut = _the_shortcut(model)
    if how is not None:
        fitted = SpectralShortcut(shortcut.in_channels, shortcut.out_channels, shortcut.size,
                                  s=shortcut.s)  # fmt: skip
        if free is not None:
            fitted.assign_(free)
        elif x is None or y is None:
            raise ValueError(f"shortcut_init={how!r}: the windows to fit (x, y) are missing")
        else:
            fit_shortcut(fitted, x, y, how)
        with torch.no_grad():
            shortcut.weight.copy_(fitted.weight.to(shortcut.weight))
    if frozen:
        shortcut.weight.requires_grad_(False)
    return model


def resolve_shortcut_bound(
    kwargs: Mapping[str, Any],
    x: Tensor,
    y: Tensor,
    how: str = "lstsq",
    free: Tensor | None = None,
) -> tuple[dict[str, Any], float | None]:
    """``kwargs`` with ``shortcut_bound="auto"`` replaced by the unconstrained fit's norm.

    Returns the new keywords and the bound chosen (``None`` when ``shortcut_bound`` is not
    ``"auto"``). The bound is ``max_k ||S_k||_2`` of the unconstrained fit ``how`` of
    ``x -> y`` (``free`` when given, else :func:`free_fit`; the float64 SVD of the multipliers
    as a shortcut stores them), never below 1 (the increment form's identity step stays
    inside the ball).
    """
    out = dict(kwargs)
    if out.get("shortcut_bound") != "auto":
        return out, None
    if out.get("increment") != "spectral":
        raise ValueError(
            "model.kwargs.shortcut_bound='auto' sizes the spectral shortcut's ball: it needs "
            f"model.kwargs.increment='spectral' (got increment={out.get('increment')!r})"
        )
    if free is None:
        free = free_fit(x, y, how)
    stored = SpectralShortcut(x.shape[1], y.shape[1], tuple(x.shape[2:]), s=None).assign_(free)
    bound = max(1.0, stored.lipschitz_bound())
    out["shortcut_bound"] = bound
    return out, bound


def prepare_shortcut(
    config: TrainConfig, dataset: Dataset[Any]
) -> tuple[TrainConfig, ShortcutWindows | None]:
    """Resolve ``shortcut_bound="auto"`` of ``config``; the stacked windows when a fit needs them.

    Nothing is read from ``dataset`` unless ``config.shortcut_init`` or ``shortcut_bound="auto"``
    asks for it. With ``"auto"``, the unconstrained fit that sized the ball comes back with the
    windows (``free``): the model's shortcut is then that fit projected to its ball, with no
    second fit (the ball is never smaller than the fit's largest norm, so the projection
    moves at most the largest multiplier by ``1 - TARGET_MARGIN``).
    """
    kwargs = config.model.kwargs
    wants_bound = kwargs.get("shortcut_bound") == "auto"
    if config.shortcut_init is None and not wants_bound:
        return config, None
    x, y = stacked_windows(dataset)
    if not wants_bound:
        return config, ShortcutWindows(x, y)
    free = free_fit(x, y, config.shortcut_init or "lstsq")
    new, _ = resolve_shortcut_bound(kwargs, x, y, free=free)
    model = dataclasses.replace(config.model, kwargs=new)
    return dataclasses.replace(config, model=model), ShortcutWindows(x, y, free)


# -- the rollout fit ------------------------------------------------------------------------


def window_chains(x: Tensor, y: Tensor) -> list[tuple[int, int]]:
    """Runs of consecutive windows of one trajectory: ``(first index, number of windows)``.

    Window ``i + 1`` continues window ``i`` when it is window ``i`` shifted by one frame with
    ``y[i]`` appended (frames stacked time-major as channels, ``out`` channels per frame), as
    a dataset of every window of every trajectory yields them in order. A window that no
    neighbour continues is a chain of length 1.

    Examples
    --------
    >>> import torch
    >>> frames = torch.randn(6, 1, 8)                       # one trajectory of 6 frames
    >>> x = torch.stack([frames[i : i + 2, 0] for i in range(4)])
    >>> y = frames[2:6]
    >>> window_chains(torch.cat([x, x[:1]]), torch.cat([y, y[:1]]))
    [(0, 4), (4, 1)]
    """
    c = y.shape[1]
    if len(x) < 2:
        return [(0, len(x))]
    follows = (torch.cat([x[:-1, c:], y[:-1]], 1) == x[1:]).flatten(1).all(1).tolist()
    chains, start = [], 0
    for i, linked in enumerate(follows):
        if not linked:
            chains.append((start, i + 1 - start))
            start = i + 1
    chains.append((start, len(x) - start))
    return chains


def _rollout_problem(
    x: Tensor, y: Tensor, horizon: int | None, relative: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Start windows, targets and weights of the rollout objective, per ``rfftn`` mode.

    Returns complex128 ``w0 (K, m, in)`` (``rfftn`` of each segment's first window, its ``K``
    modes flattened), ``targets (K, m, H, out)`` (the next ``H`` frames, zero beyond a
    segment's end) and float64 weights ``(m, H)`` (0 beyond a segment's end; ``relative``:
    ``1 / ||targets of the segment||^2``).
    """
    dims = tuple(range(2 - x.ndim, 0))  # the spatial axes
    starts, lengths = [], []
    for first, count in window_chains(x, y):
        step = count if horizon is None else horizon
        for s in range(first, first + count, step):
            starts.append(s)
            lengths.append(min(step, first + count - s))
    h = max(lengths)
    idx = torch.tensor(starts)[:, None] + torch.arange(h)[None, :]  # (m, H)
    valid = torch.arange(h)[None, :] < torch.tensor(lengths)[:, None]
    idx = torch.where(valid, idx, torch.zeros_like(idx))
    mask = valid.reshape(*valid.shape, *([1] * (y.ndim - 1)))
    frames = y.to(torch.float64)[idx] * mask  # (m, H, out, *grid)
    weight = valid.to(torch.float64)
    if relative:
        energy = frames.pow(2).flatten(1).sum(1).clamp_min(torch.finfo(torch.float64).tiny)
        weight = weight / energy[:, None]
    w0 = torch.fft.rfftn(x[torch.tensor(starts)].to(torch.float64), dim=dims, norm="ortho")
    targets = torch.fft.rfftn(frames, dim=dims, norm="ortho")  # (m, H, out, *modes)
    w0, targets = w0.flatten(2), targets.flatten(3)  # (m, in, K), (m, H, out, K)
    return w0.permute(2, 0, 1), targets.permute(3, 0, 1, 2), weight


def _rollout_terms(
    s: Tensor, w0: Tensor, targets: Tensor, weight: Tensor, jacobian: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Per-mode weighted rollout loss and its Gauss-Newton terms ``J^H W J``, ``J^H W r``.

    ``s`` ``(K, out, in)``; the prediction ``p_j = S w_j`` feeds the window
    ``w_{j+1} = [w_j[out:], p_j]``. Each ``p_j`` is a polynomial in the entries of ``S``
    (holomorphic: no conjugates), so ``J_j = dp_j / dvec(S)`` is carried forward exactly:
    ``dp_j = [delta_oa w_j,b] + sum_t S[:, frame t] dp_(frame t of w_j)``, where a frame of
    the window is either data (derivative 0) or one of the last predictions.
    """
    kn, n_out, n_in = s.shape
    frames = n_in // n_out
    npar = n_out * n_in
    m = w0.shape[1]
    w = w0
    eye = torch.eye(n_out, dtype=s.dtype)
    loss = torch.zeros(kn, dtype=torch.float64)
    gram = torch.zeros(kn, npar, npar, dtype=s.dtype) if jacobian else None
    grad = torch.zeros(kn, npar, dtype=s.dtype) if jacobian else None
    history: list[Tensor | None] = [None] * frames  # d(frame t of the window)/dvec(S)
    for j in range(targets.shape[2]):
        p = torch.einsum("koi,kmi->kmo", s, w)  # (K,out,in),(K,m,in)->(K,m,out)
        r = p - targets[:, :, j]
        wj = weight[None, :, j, None]  # (1, m, 1)
        loss += (wj * r.abs().pow(2)).sum((1, 2))
        if gram is not None and grad is not None:
            dp = torch.einsum("oa,kmb->kmoab", eye, w).reshape(kn, m, n_out, npar)
            for t, dframe in enumerate(history):
                if dframe is not None:
                    block = s[:, :, t * n_out : (t + 1) * n_out]  # (K, out, out)
                    dp = dp + torch.einsum("koc,kmcp->kmop", block, dframe)
            flat = dp.reshape(kn, m * n_out, npar)
            weighted = (wj[..., None] * dp).reshape(kn, m * n_out, npar)
            gram += weighted.conj().transpose(1, 2) @ flat  # (K, P, P)
            grad += (weighted.conj().transpose(1, 2) @ r.reshape(kn, m * n_out, 1))[..., 0]
            history = [*history[1:], dp]
        w = torch.cat([w[:, :, n_out:], p], 2)
    return loss, gram, grad


@torch.no_grad()
def rollout_multipliers(
    x: Tensor,
    y: Tensor,
    size: int | Sequence[int],
    radius: float | None = None,
    horizon: int | None = None,
    relative: bool = False,
    init: Tensor | None = None,
    max_iter: int = 60,
    tol: float = 1e-10,
) -> Tensor:
    """The per-mode step that minimizes the rollout error of the training trajectories.

    The windows ``x -> y`` are chained into trajectories (:func:`window_chains`); from each
    chain's first window (every ``horizon``-th window with a ``horizon``) the step is rolled
    out over the chain's frames, feeding its own predictions back, and
    ``sum ||rollout - frames||^2`` (``relative``: each segment weighted by ``1 / ||its
    frames||^2``) is minimized. The shortcut is linear per mode, so the objective splits into
    one small problem per ``rfftn`` mode (``out * in`` complex unknowns), solved in float64 by
    Levenberg-Marquardt with the exact forward Jacobian of the rollout, starting from the
    one-step least-squares fit (:func:`~liponet.layers.shortcut.lstsq_multipliers`, weighted
    alike) or ``init``. With a ``radius`` every iterate is projected to the ball
    ``||S_k||_2 <= radius`` (a step is kept only where it lowers the mode's objective).
    ``horizon=1`` is the one-step least-squares problem itself. On a grid of several axes the
    mirrored modes of a Hermitian slice solve conjugate problems: a step is kept there only
    where both improve, and every iterate is in the Hermitian form
    (:func:`~liponet.layers.shortcut.hermitian_multipliers`).

    Parameters
    ----------
    x, y
        Windows ``(n, in, *size)`` and next frames ``(n, out, *size)``, trajectories in order.
    size
        The grid (points per spatial axis; an ``int`` in 1-D).
    radius
        Ball of every multiplier (``None``: unconstrained).
    horizon
        Steps per rolled-out segment (``None``: each chain whole).
    relative
        Weight each segment by the inverse of its frames' energy.
    init
        Complex ``(*shortcut_modes(size), out, in)`` start (default: the one-step fit).
    max_iter, tol
        Iterations at most; stop once no mode's objective falls by more than ``tol`` relative.

    Returns
    -------
    Tensor
        Complex128 ``(*shortcut_modes(size), out, in)`` in the Hermitian form (real at
        ``k = 0`` and Nyquist in 1-D).

    Examples
    --------
    >>> import torch
    >>> u = torch.randn(4, 16)
    >>> frames = torch.stack([torch.roll(u, t, dims=-1) for t in range(8)], 1)  # 1 cell a frame
    >>> x = torch.stack([frames[:, t : t + 2] for t in range(6)], 1).flatten(0, 1)  # (24, 2, 16)
    >>> y = frames[:, 2:8, None].flatten(0, 1)  # (24, 1, 16), trajectory after trajectory
    >>> step = SpectralShortcut(2, 1, 16, s=None).assign_(rollout_multipliers(x, y, 16))
    >>> torch.allclose(step(x), y, atol=1e-5)
    True
    """
    if horizon is not None and int(horizon) < 1:
        raise ValueError(f"rollout fit: horizon must be >= 1 or None, got {horizon}")
    if radius is not None and not radius > 0:
        raise ValueError(f"rollout fit: radius must be > 0 or None, got {radius}")
    grid = shortcut_grid(size)
    modes = shortcut_modes(grid)
    w0, targets, weight = _rollout_problem(x, y, horizon, relative)
    if init is None:
        init = lstsq_multipliers(x, y, grid)
    shape = init.shape
    mirror = _mirror(grid) if len(grid) > 1 else None

    def hermitian(a: Tensor) -> Tensor:  # on the flat (K, out, in) multipliers
        return hermitian_multipliers(a.reshape(*modes, *a.shape[1:]), grid).flatten(0, -3)

    s = hermitian(init.to(torch.complex128).flatten(0, -3))
    if radius is not None:
        s = hermitian(project_multipliers(s, radius))
    loss, gram, grad = _rollout_terms(s, w0, targets, weight, jacobian=True)
    assert gram is not None and grad is not None
    diag_scale = gram.diagonal(dim1=-2, dim2=-1).real.amax(-1).clamp_min(1e-300)
    lam = torch.full_like(loss, 1e-4)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
    stalled = 0
    for _ in range(int(max_iter)):
        damped = gram + (lam * diag_scale)[:, None, None] * eye
        step = torch.linalg.solve(damped, -grad[..., None])[..., 0]
        trial = hermitian(s + step.reshape(s.shape))
        if radius is not None:
            trial = hermitian(project_multipliers(trial, radius))
        trial_loss, _, _ = _rollout_terms(trial, w0, targets, weight, jacobian=False)
        better = trial_loss < loss
        if mirror is not None:  # a mode and its mirror move together (the form is kept)
            better = better & better[mirror]
        gain = torch.where(better, (loss - trial_loss) / loss.clamp_min(1e-300), 0.0)
        lam = torch.where(better, lam / 3.0, lam * 4.0).clamp(1e-12, 1e12)
        if bool(better.any()):
            s = torch.where(better[:, None, None], trial, s)
            loss, gram, grad = _rollout_terms(s, w0, targets, weight, jacobian=True)
            assert gram is not None and grad is not None
        stalled = stalled + 1 if float(gain.max()) < tol else 0
        if stalled >= 2:
            break
    return s.reshape(shape)

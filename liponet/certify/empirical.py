"""Empirical Lipschitz *lower* bounds: sampling, gradient-ascent attacks, exact Jacobian norms.

Nothing here is a certificate. Every number is attained by actual input pairs (or a local
Jacobian), so it is a lower bound of the true constant; the certified upper bound is
``model.lipschitz_bound()``. Tests compare the two: estimate <= certificate must always hold.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..functional import batched_norm

__all__ = ["estimate_lipschitz", "jacobian_lipschitz", "pair_ratios"]

Fn = Callable[[Tensor], Tensor]


def pair_ratios(f: Fn, x: Tensor, y: Tensor, norm: str = "euclidean") -> Tensor:
    """``||f(x) - f(y)|| / ||x - y||`` for each pair of the batches, in liponet's norms.

    Pairs with ``x == y`` give 0.

    Examples
    --------
    >>> import torch
    >>> pair_ratios(lambda z: 3 * z, torch.zeros(2, 2), torch.ones(2, 2))
    tensor([3., 3.])
    """
    num = batched_norm(f(x) - f(y), norm)
    den = batched_norm(x - y, norm)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 0.0)


def jacobian_lipschitz(f: Fn, x: Tensor, norm: str = "euclidean") -> Tensor:
    """Exact local constant ``||J_f(x)||`` at each point, by dense Jacobian and SVD.

    For small models only (the Jacobian is ``out_numel x in_numel`` per point). With
    ``norm="function"`` the Euclidean 2-norm is rescaled by ``sqrt(n_in_points / n_out_points)``
    (the mean-over-grid quadrature of both sides).

    Parameters
    ----------
    f
        The function, applied to a batch of one sample.
    x
        ``(batch, ...)`` points.
    norm
        ``"euclidean"`` or ``"function"``.

    Returns
    -------
    Tensor
        ``(batch,)`` float64: the local constants (lower bounds of the global constant).

    Examples
    --------
    >>> import torch
    >>> jacobian_lipschitz(lambda z: 3 * z, torch.randn(2, 2))
    tensor([3., 3.], dtype=torch.float64)
    """
    values = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda z: f(z.unsqueeze(0))[0], xi)
        out_shape = jac.shape[: jac.ndim - xi.ndim]
        mat = jac.reshape(out_shape.numel(), xi.numel()).double()
        sigma = torch.linalg.matrix_norm(mat, ord=2)
        if norm == "function":
            n_in = xi[0].numel()
            n_out = out_shape[1:].numel()
            sigma = sigma * (n_in / n_out) ** 0.5
        values.append(sigma)
    return torch.stack(values)


def estimate_lipschitz(
    f: Fn,
    x: Tensor,
    norm: str = "euclidean",
    n_steps: int = 50,
    lr: float = 1e-2,
    scale: float | None = None,
    seed: int = 0,
) -> float:
    """Empirical lower bound of the Lipschitz constant by sampling and gradient ascent on pairs.

    Starting pairs: every point with a random partner from the batch, and every point with a small
    random perturbation of it. Adam then maximizes ``||f(x) - f(y)|| / ||x - y||`` over both
    points of each pair for ``n_steps``. The largest ratio ever seen is returned. It is an
    **estimate**: a lower bound of the true constant, never a certificate.

    Parameters
    ----------
    f
        The function (e.g. a model in eval mode); its parameters are not changed.
    x
        ``(batch, ...)`` reference points, e.g. training inputs (batch >= 2 for mixed pairs).
    norm
        ``"euclidean"`` for pointwise models, ``"function"`` for fields.
    n_steps
        Gradient-ascent steps (0: sampling only).
    lr
        Adam step size, relative to ``scale``.
    scale
        Size of the small perturbations (default: 1e-2 times the typical norm of ``x``).
    seed
        Seed of the random pairs (a private generator; global RNG untouched).

    Examples
    --------
    >>> import torch
    >>> f = lambda z: 3.0 * z
    >>> round(estimate_lipschitz(f, torch.randn(8, 2, dtype=torch.float64), n_steps=5), 9)
    3.0
    """
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a non-empty batch (batch, ...), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or inf values")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = x.detach()
    if scale is None:
        scale = 1e-2 * float(batched_norm(x, norm).mean().clamp_min(1e-12))
    unit = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    unit = unit / batched_norm(unit, norm).reshape(-1, *([1] * (x.ndim - 1)))
    partners = x[torch.randperm(x.shape[0], generator=gen).to(x.device)]
    a = torch.cat([x, x])
    b = torch.cat([partners, x + scale * unit])
    same = batched_norm(a - b, norm) == 0
    b[same] = a[same] + scale * unit[: int(same.sum())]
    with torch.no_grad():
        best = float(pair_ratios(f, a, b, norm).max())
    if n_steps <= 0:
        return best
    a = a.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    opt = torch.optim.Adam([a, b], lr=lr * scale)
    for _ in range(n_steps):
        opt.zero_grad()
        ratios = pair_ratios(f, a, b, norm)
        best = max(best, float(ratios.detach().max()))
        (-ratios.sum()).backward()
        opt.step()
    with torch.no_grad():
        best = max(best, float(pair_ratios(f, a, b, norm).max()))
    return best

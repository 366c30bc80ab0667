"""Dense layers with a certified spectral norm."""

from __future__ import annotations

import math
from typing import Any

import torch
from deel.torchlip import normalizers as _deel
from deel.torchlip.normalizers import bjorck_normalization
from torch import Tensor, nn

from ..functional import (
    TARGET_MARGIN,
    _GramTest,
    power_iteration,
    spectral_norm_exact,
    spectral_norm_upper,
)
from .base import CertifiedModule
from .cache import WeightKeyedCache

__all__ = [
    "DEFAULT_BJORCK_ITER",
    "LEVEL_STEPS",
    "LEVEL_TEST_WORK",
    "ClippedLinear",
    "LipLinear",
    "level_norm_upper",
]

#: Björck iterations used by default (same count in training and eval, so both compute the same
#: kind of function).
DEFAULT_BJORCK_ITER = 15

#: From this much SVD work (``out * in * min(out, in)``) on, a constrained :class:`LipLinear`
#: certifies its eval weight by Cholesky tests of its float64 Gram matrix at levels just above
#: its target (:func:`level_norm_upper`) instead of a second float64 SVD: one Gram product and
#: one or two factorizations, about 0.7 of the SVD's time at ``80 x 80`` and ``128 x 128``, 0.5
#: at ``128 x 256`` (one process, interleaved, 1 thread); below it the SVD is as cheap.
LEVEL_TEST_WORK = 1 << 19

#: The levels :func:`level_norm_upper` tries, in order: ``t (1 + j e)`` for ``j`` in this tuple,
#: ``t`` the layer's target ``k (1 - 2^-20)`` and ``e`` the weight's machine epsilon (``2^-23``
#: in float32; ``1e-10`` in float64, above the test's own margin). The last, ``t (1 + 2^-20)``
#: in float32, is still below ``k``.
LEVEL_STEPS = (2, 4, 8)


def level_norm_upper(a: Tensor, target: float) -> float | None:
    """A proven upper bound of ``||A||_2`` at most ``target (1 + 8 e)`` above it, or ``None``.

    For a weight normalized to ``target`` and rounded to its precision (float32 or float64),
    whose norm is ``target`` up to that rounding: Cholesky tests of ``c I - A^T A`` on the Gram
    matrix of ``A`` computed once in float64 (:class:`~liponet.functional._GramTest`, the proof
    of :func:`~liponet.functional.cholesky_norm_upper`: the float32 entries' products are exact
    in float64, the margin is the float64 sums' and factorization's rounding, ``~1e-13``
    relative) at the levels ``target (1 + j e)`` of :data:`LEVEL_STEPS` in turn; the first that
    a factorization proves is returned (the bound the test proves, ``<=`` the level). ``None``
    where every test fails (a norm above the last level, NaN or inf) or the weight is neither
    float32 nor float64: the caller takes the SVD bound instead.

    Parameters
    ----------
    a
        ``(out, in)`` float32 or float64 matrix; its entries are taken as exact values.
    target
        The norm ``a`` was normalized to (> 0).

    Returns
    -------
    float or None
        The proven bound, within ``8 e`` (relative) above ``target``, or ``None``.

    Examples
    --------
    >>> import torch
    >>> q = torch.linalg.qr(torch.randn(80, 80, dtype=torch.float64))[0].float()
    >>> exact = float(torch.linalg.matrix_norm(q.double(), 2))
    >>> bound = level_norm_upper(q, 1.0)
    >>> exact <= bound <= 1.0 + 8 * 2.0**-23
    True
    """
    if a.dtype not in (torch.float32, torch.float64) or a.ndim != 2 or not (target > 0):
        return None
    step = 2.0**-23 if a.dtype == torch.float32 else 1e-10
    test = _GramTest(a.detach().to(torch.float64).unsqueeze(0))
    for j in LEVEL_STEPS:
        level = target * (1.0 + j * step)
        level2 = torch.tensor([level * level], dtype=torch.float64, device=a.device)
        bound = float(test.run(None, level2)[0][0])
        if math.isfinite(bound):
            return bound
    return None


class LipLinear(CertifiedModule):
    """Affine layer ``y = W x + b`` whose weight is normalized to spectral norm ``k``.

    Parameters
    ----------
    in_features, out_features
        Sizes of the last dimension of input and output.
    k
        Target Lipschitz constant (> 0). ``None`` switches the constraint off (the unconstrained
        twin on the same code path: the raw weight is used and its exact norm certified).
    bias
        Learn an additive bias.
    orthogonal
        Björck-orthonormalize after dividing by the norm estimate (all singular values pushed
        to 1: gradient norm preserving, as in deel-torchlip's ``SpectralLinear``). With ``False``
        only the largest singular value is set to ``k``.
    n_power
        Power iterations per training step (warm-started from the previous step).

    Lipschitz constant
    ------------------
    The spectral norm of the weight used in eval mode, in the Euclidean norm of the last
    dimension (hence also in liponet's function norm when applied pointwise). Certified by a
    float64 SVD (:func:`liponet.functional.spectral_norm_upper`) of that weight, or, for a
    constrained layer from :data:`LEVEL_TEST_WORK` on, by a float64 Cholesky test proving it
    below a level at most ``8`` float32 epsilons above the target (:func:`level_norm_upper`:
    one Gram product and one or two factorizations instead of the SVD; the SVD where no level
    is proven). The weight is normalized to ``k`` times :data:`~liponet.functional.TARGET_MARGIN`
    (``1 - 2^-20``), so the float32 rounding of the stored weight keeps the certificate ``<= k``.

    Notes
    -----
    Training forwards divide by a warm-started power-iteration estimate (a training device).
    Eval forwards divide by the exact largest singular value and apply the same number of Björck
    steps; that eval weight and its certificate are cached until the weight changes (compared
    bitwise with a stored copy, :class:`~liponet.layers.cache.WeightKeyedCache`, so writes through
    ``param.data`` are seen too), and it is the weight certified and exported. deel-torchlip's
    own layers cache the weight of the *last training forward* (which precedes the last
    optimizer step); this class does not.

    Examples
    --------
    >>> import torch
    >>> layer = LipLinear(4, 3, k=2.0).eval()
    >>> layer(torch.randn(5, 4)).shape
    torch.Size([5, 3])
    >>> 2.0 * (1 - 1e-5) < layer.lipschitz_bound() <= 2.0
    True
    """

    #: Whether the eval weight's norm is the target ``k (1 - 2^-20)`` up to rounding (its
    #: certificate may then be a level just above the target, :func:`level_norm_upper`).
    _near_target = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        k: float | None = 1.0,
        bias: bool = True,
        orthogonal: bool = True,
        n_power: int = 1,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {in_features}, {out_features}"
            )
        if k is not None and not (math.isfinite(k) and k > 0):
            raise ValueError(f"k must be a finite positive number or None, got {k}")
        if n_power < 1:
            raise ValueError(f"n_power must be >= 1, got {n_power}")
        self.in_features = in_features
        self.out_features = out_features
        self.k = k
        self.orthogonal = orthogonal
        self.n_power = n_power
        self.u: Tensor
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        if k is None:
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        else:
            nn.init.orthogonal_(self.weight)
        self.register_buffer("u", nn.functional.normalize(torch.randn(in_features), dim=0))
        self._cache = WeightKeyedCache([self.weight])

    def _normalize(self, w: Tensor, sigma: Tensor) -> Tensor:
        assert self.k is not None
        w = w / sigma
        if self.orthogonal:
            # deel-torchlip's version stops early (Frobenius change < 1e-3) and detaches the
            # Gram product after 4 iterations: near-orthogonal training weights take ~1-5
            # iterations. liponet.functional.bjorck with a fixed 15 was measured 1.8-3.0x slower
            # per CPU train step (LipMLP widths 32-512), so the early-stopping one stays here.
            w = bjorck_normalization(w)
        return (self.k * TARGET_MARGIN) * w

    def effective_weight(self) -> Tensor:
        """The weight the eval-mode forward uses (cached while the weight's bits are unchanged)."""
        if self.k is None:
            return self.weight.detach()
        return self._cache.get("eval_weight", [self.weight], self._compute_eval_weight)

    def _compute_eval_weight(self, weight: Tensor) -> Tensor:
        with torch.no_grad():
            w = weight.detach()
            sigma = spectral_norm_exact(w).to(w.dtype)
            return self._normalize(w, sigma)

    def current_weight(self) -> Tensor:
        """The weight ``forward`` applies now (training: one warm-started power step, with grad)."""
        if self.k is None:
            return self.weight
        if self.training:
            if _fused_weight(self.weight):
                u = _power_vector(self.weight, self.u, self.n_power)
                with torch.no_grad():
                    self.u.copy_(u)
                scale = self.k * TARGET_MARGIN
                w: Tensor = _TrainWeight.apply(self.weight, u, scale, self.orthogonal)
                return w
            sigma, u = power_iteration(self.weight, self.u, self.n_power)
            with torch.no_grad():
                self.u.copy_(u)
            return self._normalize(self.weight, sigma)
        return self.effective_weight()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the normalized affine map to ``(..., in_features)``."""
        return nn.functional.linear(x, self.current_weight(), self.bias)

    def lipschitz_bound(self) -> float:
        """Guaranteed upper bound of the eval weight's spectral norm (see the class docstring)."""
        return self._cache.get("bound", [self.weight], self._compute_bound)

    def _compute_bound(self, weight: Tensor) -> float:
        a = self.effective_weight()
        if self._near_target and self.k is not None:
            o, i = a.shape
            if o * i * min(o, i) >= LEVEL_TEST_WORK:
                bound = level_norm_upper(a, self.k * TARGET_MARGIN)
                if bound is not None:
                    return bound
        return float(spectral_norm_upper(a))

    def export(self) -> nn.Linear:
        """A ``torch.nn.Linear`` holding the eval weight."""
        layer = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        layer = layer.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(self.effective_weight())
            if self.bias is not None:
                assert layer.bias is not None
                layer.bias.copy_(self.bias)
        return layer

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, k={self.k}, "
            f"bias={self.bias is not None}, orthogonal={self.orthogonal}"
        )


def _fused_weight(weight: Tensor) -> bool:
    """Whether a training weight runs as one node (:class:`_TrainWeight`).

    In eager float32/float64 without autocast, with a 2-D weight that needs a gradient; while a
    graph is captured (``torch.compile``/``torch.export``/``jit.trace``) or under autocast (whose
    dtype rules the plain operations take) the plain differentiable operations run.
    """
    return (
        weight.requires_grad
        and torch.is_grad_enabled()
        and weight.ndim == 2
        and weight.dtype in (torch.float32, torch.float64)
        and not torch.is_autocast_enabled(weight.device.type)
        and not (torch.compiler.is_compiling() or torch.jit.is_tracing())
    )


class _TrainWeight(torch.autograd.Function):
    """:class:`LipLinear`'s training weight ``c * bjorck(W / ||W u||)`` as one autograd node.

    The forward is the generic path's computation (equal up to float rounding):
    ``sigma = ||W u||`` with the warm-started power vector ``u`` held constant, ``W_0 = W /
    sigma``, then deel-torchlip's ``bjorck_normalization`` loop (``W_{n+1} = (1 + beta) W_n -
    beta W_n W_n^T W_n``, stopped once ``||W_{n+1} - W_n||_F < eps``, the cubic term detached
    after its first few iterations, as deel-torchlip detaches it), then the factor ``c = k *
    TARGET_MARGIN``. The backward is written out instead of recorded (fewer, larger operations
    than the recorded graph of the power step, division and Björck products; a training step
    of a 1-D ``medium`` LipFNO gains up to a few percent, within the run-to-run spread of
    ``benchmarks/medium_step_time.py``): for ``G = dL/dW_{n+1}``,

    - through a Björck step with gradient: ``dL/dW_n = (1 + beta) G - beta (G W_n^T W_n +
      W_n G^T W_n + W_n W_n^T G)`` (the adjoint of ``W -> W W^T W``, three products with the
      forward's Gram matrix saved), detached steps pass ``(1 + beta) G``;
    - through ``W_0 = W / sigma`` with ``sigma = ||W u||``: ``dL/dW = G / sigma - (<G, W> /
      sigma^3) (W u) u^T``.

    Inputs: ``weight`` ``(out, in)``, ``u`` ``(in,)`` (no gradient), ``scale`` ``c``,
    ``orthogonal`` (``False``: no Björck steps). First derivatives only
    (``once_differentiable``). A training device: the certificate is computed from the eval
    weight (float64 SVD), never from this one.
    """

    @staticmethod
    def forward(ctx: Any, weight: Tensor, u: Tensor, scale: float, orthogonal: bool) -> Tensor:
        wu = torch.mv(weight, u)  # (out,)
        sigma = torch.linalg.vector_norm(wu)
        w = weight / sigma
        saved: list[Tensor] = []  # per Björck step with gradient: its iterate and Gram product
        if orthogonal:
            beta, maxiter = _deel.DEFAULT_BETA, _deel.DEFAULT_MAXITER_BJORCK
            rows = w.shape[0] <= w.shape[1]
            for n in range(maxiter):
                old = w
                gram = torch.mm(w, w.t()) if rows else torch.mm(w.t(), w)
                cubic = torch.mm(gram, w) if rows else torch.mm(w, gram)
                w = torch.mul(w, 1.0 + beta).sub_(cubic.mul_(beta))  # (1 + b) W - b W W^T W
                if n < _deel.DEFAULT_BJORK_DETACH:
                    saved += [old, gram]
                else:  # deel-torchlip detaches the cubic term from here on
                    saved += [old.new_empty(0), old.new_empty(0)]
                if not torch.linalg.norm(w - old).item() >= _deel.DEFAULT_EPS_BJORCK:
                    break  # the Frobenius change is below eps (or not a number)
        ctx.scale, ctx.rows = scale, orthogonal and w.shape[0] <= w.shape[1]
        ctx.save_for_backward(weight, u, wu, sigma, *saved)
        return w.mul_(scale)  # w is this node's own (weight / sigma or a Björck iterate)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        weight, u, wu, sigma, *saved = ctx.saved_tensors
        beta = _deel.DEFAULT_BETA
        g = grad * ctx.scale
        for i in reversed(range(0, len(saved), 2)):
            w, gram = saved[i], saved[i + 1]
            if not w.numel():
                g = g.mul_(1.0 + beta)  # g is this node's own from its first line on
                continue
            # adjoint of W W^T W: rows (A = W W^T): (G W^T + W G^T) W + A G;
            # columns (B = W^T W): G B + W (G^T W + W^T G)
            if ctx.rows:
                p = torch.mm(g, w.t())
                cubic = torch.mm(p + p.t(), w).addmm_(gram, g)
            else:
                q = torch.mm(g.t(), w)
                cubic = torch.mm(w, q + q.t()).addmm_(g, gram)
            g = g.mul_(1.0 + beta).sub_(cubic.mul_(beta))
        inner = (g * weight).sum() / sigma**3
        return (g / sigma).sub_(torch.outer(wu, u).mul_(inner)), None, None, None


def _power_vector(weight: Tensor, u: Tensor, n_iter: int) -> Tensor:
    """Warm-started power iteration's right vector of a 2-D ``weight`` (no gradient).

    :func:`liponet.functional.power_iteration`'s vector with matrix-vector products.
    """
    with torch.no_grad():
        w = weight.detach()
        for _ in range(n_iter):
            v = nn.functional.normalize(torch.mv(w, u), dim=0)
            u = nn.functional.normalize(torch.mv(w.t(), v), dim=0)
    return u


class ClippedLinear(LipLinear):
    """Affine layer whose weight is shrunk onto the ball ``||W|| <= k`` (left alone inside it).

    ``W' = W * min(1, k / ||W||)``, computed on the first ``in_features - free_columns`` columns
    only: the last ``free_columns`` columns (e.g. grid coordinates appended to a lifting, which
    are the same for every input function and never enter its constant) stay free. Unlike
    :class:`LipLinear`, which sets the norm to ``k``, a weight already inside the ball is used
    as it is: a layer built from trained weights with ``k`` at least their norm computes the
    same function, and training may move its norm anywhere up to ``k``.

    Parameters
    ----------
    in_features, out_features
        Sizes of the last dimension of input and output.
    k
        Radius of the ball (> 0).
    bias
        Learn an additive bias.
    free_columns
        Trailing input columns excluded from the norm and from the clipping.
    n_power
        Power iterations per training step (warm-started).

    Lipschitz constant
    ------------------
    In the Euclidean norm of the last dimension, the float64-SVD bound of the whole eval weight
    (as :class:`LipLinear`); the norm of its clipped columns is ``<= k`` up to float32 rounding.
    Applied pointwise to fields whose free columns carry constant channels
    (:class:`~liponet.models.fno.FieldLinear` with ``grid = free_columns``), the certified
    constant is that of the clipped columns alone.

    Examples
    --------
    >>> import torch
    >>> layer = ClippedLinear(3, 2, k=0.5).eval()
    >>> with torch.no_grad():
    ...     _ = layer.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.1, 0.0]]))
    >>> layer.effective_weight()
    tensor([[0.5000, 0.0000, 0.0000],
            [0.0000, 0.0250, 0.0000]])
    >>> round(layer.lipschitz_bound(), 5)
    0.5
    """

    _near_target = False  # its norm may lie anywhere up to k: the SVD bound

    def __init__(
        self,
        in_features: int,
        out_features: int,
        k: float,
        bias: bool = True,
        free_columns: int = 0,
        n_power: int = 1,
    ) -> None:
        super().__init__(
            in_features, out_features, k=k, bias=bias, orthogonal=False, n_power=n_power
        )
        if not 0 <= free_columns < in_features:
            raise ValueError(
                f"free_columns must be in [0, {in_features}) (in_features), got {free_columns}"
            )
        self.free_columns = free_columns
        n = in_features - free_columns
        self.register_buffer("u", nn.functional.normalize(torch.randn(n), dim=0))

    @property
    def radius(self) -> float:
        """``k``, the radius of the ball (always a number here)."""
        assert self.k is not None
        return self.k

    def _clip(self, w: Tensor, sigma: Tensor) -> Tensor:
        n = w.shape[1] - self.free_columns
        scale = (self.radius / sigma).clamp(max=1.0)
        if not self.free_columns:
            return w * scale
        return torch.cat([w[:, :n] * scale, w[:, n:]], 1)

    def _compute_eval_weight(self, weight: Tensor) -> Tensor:
        with torch.no_grad():
            w = weight.detach()
            n = w.shape[1] - self.free_columns
            sigma = spectral_norm_exact(w[:, :n]).to(w.dtype)
            return self._clip(w, sigma)

    def current_weight(self) -> Tensor:
        """The weight ``forward`` applies now (training: one warm-started power step, with grad)."""
        if not self.training:
            return self.effective_weight()
        n = self.in_features - self.free_columns
        sigma, u = power_iteration(self.weight[:, :n], self.u, self.n_power)
        with torch.no_grad():
            self.u.copy_(u)
        return self._clip(self.weight, sigma)

    def warm_start(self) -> None:
        """Set the power-iteration vector to the exact top right singular vector (float64 SVD).

        A training forward then clips with (nearly) the exact norm from its first step.
        """
        with torch.no_grad():
            n = self.in_features - self.free_columns
            w = self.weight.detach()[:, :n].double()
            self.u.copy_(torch.linalg.svd(w, full_matrices=False)[2][0].to(self.u.dtype))

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, k={self.k}, "
            f"bias={self.bias is not None}, free_columns={self.free_columns}"
        )

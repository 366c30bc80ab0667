"""1-Lipschitz residual blocks for Fourier operators: the convex-potential block.

The convex-potential layer (CPL; Meunier et al., ICML 2022, "A dynamical system perspective for
Lipschitz neural networks"; the residual family Prach et al., CVPR 2024, rank among the strongest
1-Lipschitz layers) is

``y = x - (2 / ||K||^2) K^T relu(K x + b)``

for any linear ``K``. Here ``K`` is a Fourier multiplier fused with a pointwise skip, exactly the
linear part of an FNO block (:class:`~liponet.layers.LipSpectralConv` with ``skip=True``), and
``K^T`` its adjoint, which is again a Fourier multiplier: ``M_k^H`` on kept modes and ``W^T``
elsewhere (with the orthonormal FFT the multiplier is unitarily diagonalized; ``A_{-k} =
conj(A_k)`` holds for ``A_k^H`` whenever it holds for ``A_k``). Both go through
:func:`~liponet.layers.fourier.spectral_apply`, the one code path of every Fourier layer.

Why it is 1-Lipschitz. Where it is differentiable, the Jacobian is ``I - c K^T D K`` with ``D``
diagonal with entries in ``[0, 1]`` (ReLU's slopes) and ``c = 2 / s^2``: a symmetric matrix whose
eigenvalues lie in ``[1 - c ||K||^2, 1]``. With ``s >= ||K||`` they lie in ``[-1, 1]``, so its
norm is at most 1; the map is piecewise linear and continuous, hence globally 1-Lipschitz. In
general the block's constant is ``max(1, c ||K||^2 - 1)``, which is what
:meth:`ConvexPotentialBlock.lipschitz_bound` certifies with a float64-SVD upper bound of
``||K||``. Unlike the plain FNO block ``sigma(W x + K x + b)``, whose linear part must itself be
1-Lipschitz, the residual form stays 1-Lipschitz with *every* singular value of ``K`` free: the
block can be the identity, a contraction in some directions, and nonlinear in others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..functional import TARGET_MARGIN
from .base import CertifiedModule
from .fourier import LipSpectralConv, SpectralMultiplier, check_field, spectral_apply

__all__ = ["CPL_ACTIVATIONS", "CPL_NORM", "ConvexPotentialBlock", "adjoint_weights"]

#: Activations of the convex-potential block: monotone with slopes in ``[0, 1]`` (what the
#: proof needs). ``"relu"`` (piecewise linear) and ``"softplus"`` (``log(1 + e^x)``, slopes
#: ``sigmoid(x)`` in ``(0, 1)``: a smooth, strictly convex potential, curvature everywhere).
CPL_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "softplus": nn.functional.softplus,
}

#: Norm ``K`` is normalized to (just below 1): :class:`~liponet.layers.LipSpectralConv` with
#: ``k=1`` aims at ``TARGET_MARGIN = 1 - 2^-20``, so the float32 eval weights have ``||K|| < 1``
#: despite rounding (~1e-7), ``2 s^2 - 1 < 1`` and each block is certified exactly 1 (with a
#: norm of 1 the rounding would be amplified four-fold per block). The factor stays 2.
CPL_NORM = TARGET_MARGIN


def adjoint_weights(kept: Tensor, skip: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Weights of the adjoint Fourier multiplier ``K^T`` of ``K = (kept, skip)``.

    Parameters
    ----------
    kept
        Complex ``(*kept, out, in)`` spectral weights ``R_k`` (Hermitian on the ``k_d = 0``
        slice, as :func:`~liponet.layers.fourier.spectral_apply` expects).
    skip
        Real ``(out, in)`` pointwise weight ``W`` or ``None``.

    Returns
    -------
    tuple
        ``(R_k^H (*kept, in, out), W^T (in, out) or None)``: the multiplier ``W^T + R_k^H`` on
        kept modes and ``W^T`` elsewhere, the exact adjoint in liponet's function norm.
    """
    adj = kept.transpose(-2, -1).conj()  # a lazy view (conj bit): the einsum reads it directly
    return adj, None if skip is None else skip.transpose(0, 1)


class ConvexPotentialBlock(CertifiedModule):
    """Residual Fourier block ``y = x - (2 / ||K||^2) K^T relu(K x + b)``, 1-Lipschitz.

    ``K`` is a Fourier multiplier plus pointwise skip from ``width`` to ``hidden`` channels,
    normalized to norm :data:`CPL_NORM` (just below 1) by :class:`~liponet.layers.LipSpectralConv`
    (so the factor 2 is safe); ``K^T`` is its exact adjoint.

    Parameters
    ----------
    width
        Channels in and out.
    modes
        Kept modes per spatial dimension (see :class:`~liponet.layers.LipSpectralConv`).
    hidden
        Channels of ``K x`` (default ``width``).
    normalization
        Multiplier normalization of ``K`` (``"global"``, ``"clip"``, ``"orthogonal"``); any of
        them keeps ``||K|| <= 1``, which is all the certificate needs.
    n_power
        Warm-started power iterations per training step.
    activation
        ``"relu"`` (default) or ``"softplus"`` (:data:`CPL_ACTIVATIONS`): any elementwise
        activation with slopes in ``[0, 1]`` keeps the certificate.

    Lipschitz constant
    ------------------
    ``max(1, 2 s^2 - 1)`` in liponet's function norm at every resolution, with ``s`` the
    float64-SVD upper bound of ``||K||`` (``max(max_k ||W' + R'_k||, ||W'||)`` of the eval
    weights, :meth:`LipSpectralConv.lipschitz_bound`). ``K`` is normalized to
    :data:`CPL_NORM` ``= 1 - 2^-20``, so ``s < 1`` despite float32 rounding and the certificate
    is exactly 1. Proof in the module docstring (Jacobian ``I - 2 K^T D
    K`` symmetric with eigenvalues in ``[1 - 2 ||K||^2, 1]``, ``D`` the ReLU slopes in
    ``[0, 1]``). Only an elementwise activation with slopes in ``[0, 1]`` keeps ``K^T D K``
    symmetric positive semi-definite, hence ReLU or softplus (GroupSort would not).

    Examples
    --------
    >>> import torch
    >>> block = ConvexPotentialBlock(4, modes=(3,)).eval()
    >>> block(torch.randn(2, 4, 16)).shape
    torch.Size([2, 4, 16])
    >>> block.lipschitz_bound()
    1.0
    """

    def __init__(
        self,
        width: int,
        modes: Sequence[int],
        hidden: int | None = None,
        normalization: str = "global",
        n_power: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        hidden = width if hidden is None else hidden
        if width < 1 or hidden < 1:
            raise ValueError(f"width and hidden must be >= 1, got {width}, {hidden}")
        if activation not in CPL_ACTIVATIONS:
            raise ValueError(
                f"unknown convex-potential activation {activation!r}; available: "
                f"{', '.join(CPL_ACTIVATIONS)} (monotone, slopes in [0, 1])"
            )
        self.activation = activation
        self.width = width
        self.hidden = hidden
        self.conv = LipSpectralConv(
            width, hidden, modes, k=1.0, skip=True, bias=True, normalization=normalization,
            n_power=n_power,
        )  # fmt: skip
        self.modes = self.conv.modes

    def _weights(self) -> tuple[Tensor, Tensor | None]:
        # training: power-iteration normalization (a training device, with gradient);
        # eval: the exact float64 normalization, cached (the weights certified and exported)
        if self.training:
            return self.conv._train_weights()
        return self.conv.effective_weights()

    def forward(self, x: Tensor) -> Tensor:
        """``x - 2 K^T relu(K x + b)`` on ``(batch, width, *spatial)``."""
        check_field(x, self.width, self.modes)
        r, w = self._weights()
        sigma = CPL_ACTIVATIONS[self.activation]
        z = sigma(spectral_apply(x, r, w, self.conv.bias, self.modes))  # (b, hidden, *S)
        r_adj, w_adj = adjoint_weights(r, w)
        return x - 2.0 * spectral_apply(z, r_adj, w_adj, None, self.modes)  # (b, width, *S)

    def lipschitz_bound(self) -> float:
        """``max(1, 2 s^2 - 1)`` with ``s`` the float64-SVD bound of ``||K||``."""
        s = self.conv.lipschitz_bound()  # max(max_k ||W' + R'_k||, ||W'||), float64 SVD
        return max(1.0, 2.0 * s * s - 1.0)

    def export(self) -> nn.Module:
        """Plain modules: ``K`` and ``K^T`` as frozen :class:`SpectralMultiplier` s."""
        r, w = self.conv.effective_weights()
        bias = None if self.conv.bias is None else self.conv.bias.detach()
        r_adj, w_adj = adjoint_weights(r, w)
        return _PlainConvexPotential(
            SpectralMultiplier(r, w, bias, self.modes),
            SpectralMultiplier(r_adj.resolve_conj(), w_adj, None, self.modes),
            self.activation,
        )

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return (
            f"width={self.width}, hidden={self.hidden}, modes={self.modes}, "
            f"activation={self.activation!r}"
        )


class _PlainConvexPotential(nn.Module):
    def __init__(self, k: nn.Module, k_adjoint: nn.Module, activation: str = "relu") -> None:
        super().__init__()
        self.k = k
        self.k_adjoint = k_adjoint
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return x - 2.0 * self.k_adjoint(CPL_ACTIVATIONS[self.activation](self.k(x)))

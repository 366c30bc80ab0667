"""Lipschitz MLPs for function regression x in R^d -> u(x) in R^c, and the unconstrained twin."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ..layers import (
    LIPSCHITZ_ACTIVATIONS,
    AuxiliaryScale,
    CertifiedModule,
    CertifiedSequential,
    LipLinear,
    OutputScale,
    make_activation,
)
from .registry import register_model

__all__ = ["MLP", "OUTPUT_SCALES", "LipMLP", "box_ball"]

OutputScaleName = Literal["none", "vector", "auxiliary"]

#: Accepted values of ``output_scale``.
OUTPUT_SCALES: tuple[str, ...] = ("none", "vector", "auxiliary")


def box_ball(domain: tuple[Sequence[float], Sequence[float]], dim: int) -> tuple[Tensor, float]:
    """Centre and Euclidean radius (half-diagonal) of the box ``[lo, hi]``.

    Raises
    ------
    ValueError
        If the box does not have ``dim`` coordinates or has ``lo > hi`` somewhere.
    """
    # checked and measured on the CPU: the values are needed even while a model is built on
    # PyTorch's meta device (shapes only); the centre then goes to the default device
    lo = torch.as_tensor(domain[0], dtype=torch.float64, device="cpu").reshape(-1)
    hi = torch.as_tensor(domain[1], dtype=torch.float64, device="cpu").reshape(-1)
    if lo.numel() != dim or hi.numel() != dim:
        raise ValueError(
            f"domain must be (lo, hi) with {dim} coordinates each, got {lo.numel()} and "
            f"{hi.numel()}"
        )
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()) or bool((lo > hi).any()):
        raise ValueError(f"domain must satisfy lo <= hi with finite values, got {domain}")
    centre = torch.tensor(((lo + hi) / 2).tolist(), dtype=torch.float64)
    return centre, float(torch.linalg.vector_norm(hi - lo) / 2)


def check_variant(
    width: int, depth: int, k: float, activation: str, output_scale: str, constrained: bool
) -> None:
    """Validate the arguments every model family shares (one place for their error messages).

    Raises
    ------
    ValueError
        If ``width`` or ``depth`` is < 1, ``k`` is not finite and positive, ``output_scale`` is
        unknown, or a constrained model is given an activation that is not 1-Lipschitz.
    """
    if depth < 1:
        raise ValueError(f"depth (number of hidden layers or blocks) must be >= 1, got {depth}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"k must be a finite positive number, got {k}")
    if output_scale not in OUTPUT_SCALES:
        raise ValueError(
            f"output_scale must be one of {', '.join(OUTPUT_SCALES)}, got {output_scale!r}"
        )
    if constrained and activation not in LIPSCHITZ_ACTIVATIONS:
        raise ValueError(
            f"activation {activation!r} is not 1-Lipschitz; constrained models accept: "
            f"{', '.join(LIPSCHITZ_ACTIVATIONS)}"
        )


class _MLPBase(CertifiedModule):
    """Shared code path of :class:`LipMLP` and its unconstrained twin :class:`MLP`."""

    constrained: bool = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 64,
        depth: int = 3,
        k: float = 1.0,
        activation: str = "groupsort2",
        free_last_layer: bool = False,
        output_scale: OutputScaleName = "none",
        domain: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        check_variant(width, depth, k, activation, output_scale, self.constrained)
        if output_scale == "auxiliary" and domain is None:
            raise ValueError(
                "output_scale='auxiliary' needs domain=(lo, hi): its certificate holds on a "
                "bounded domain only"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.output_scale = output_scale
        ball = None if domain is None else box_ball(domain, in_features)
        if domain is not None:
            self.register_buffer("domain_lo", torch.as_tensor(domain[0], dtype=torch.float32))
            self.register_buffer("domain_hi", torch.as_tensor(domain[1], dtype=torch.float32))
        hidden_k = 1.0 if self.constrained else None
        last_k = None if (free_last_layer or not self.constrained) else k
        body: CertifiedModule = _stack(
            in_features, out_features, width, depth, activation, hidden_k, last_k
        )
        if output_scale == "vector":
            body = CertifiedSequential(body, OutputScale(out_features))
        elif output_scale == "auxiliary":
            assert ball is not None
            aux = _stack(
                in_features, out_features, max(width // 2, 2), 1, activation, hidden_k, hidden_k
            )
            last = aux[len(aux) - 1]
            assert isinstance(last, LipLinear) and last.bias is not None
            with torch.no_grad():  # start as the identity scale s(x) ~ 1
                last.bias.fill_(1.0)
            body = AuxiliaryScale(body, aux, ball[0].float(), ball[1])
        self.net = body

    def forward(self, x: Tensor) -> Tensor:
        """Map points ``(batch, in_features)`` to values ``(batch, out_features)``."""
        return self.net(x)

    def lipschitz_bound(self) -> float:
        """Certified constant of x -> u(x) in the Euclidean norms (composed from the layers)."""
        return self.net.lipschitz_bound()

    def export(self) -> nn.Module:
        """Plain torch modules computing the same eval-mode function."""
        return self.net.export()


def _stack(
    in_features: int,
    out_features: int,
    width: int,
    depth: int,
    activation: str,
    hidden_k: float | None,
    last_k: float | None,
) -> CertifiedSequential:
    layers: list[nn.Module] = []
    features = in_features
    for _ in range(depth):
        layers += [LipLinear(features, width, k=hidden_k), make_activation(activation)]
        features = width
    layers.append(LipLinear(features, out_features, k=last_k))
    return CertifiedSequential(*layers)


@register_model("LipMLP")
class LipMLP(_MLPBase):
    """Lipschitz MLP ``x in R^d -> u(x) in R^c`` with the research plan's expressivity variants.

    Parameters
    ----------
    in_features, out_features
        ``d`` and ``c``.
    width, depth
        Hidden width and number of hidden layers.
    k
        Target constant of the last layer (hidden layers are 1-Lipschitz; with biases this is as
        expressive as spreading ``k`` over all layers).
    activation
        A 1-Lipschitz activation: ``groupsort2`` (default), ``fullsort``, ``relu``, ``abs``.
    free_last_layer
        Variant (b): leave the last layer unconstrained; its exact norm enters the bound.
    output_scale
        ``"none"``; ``"vector"``, variant (c): multiply by a trainable per-component scale;
        ``"auxiliary"``, variant (d): multiply by the output of an auxiliary 1-Lipschitz network
        (needs ``domain``).
    domain
        ``(lo, hi)``: the box of inputs the certificate must cover (required by variant (d),
        recorded otherwise so certificates can check points against it).

    Lipschitz constant
    ------------------
    In the Euclidean norms of ``R^d`` and ``R^c``: the product of the layers' float64-SVD norms
    (<= ``k`` for variant (a)); times ``max |s_c|`` for (c); the product rule on the domain for
    (d) (see :class:`liponet.layers.AuxiliaryScale`). Certified from the eval-mode weights.

    Examples
    --------
    >>> import torch
    >>> model = LipMLP(2, 1, width=16, depth=2, k=3.0).eval()
    >>> model(torch.rand(8, 2)).shape
    torch.Size([8, 1])
    >>> model.lipschitz_bound() <= 3.0 * (1 + 1e-6)
    True
    """


@register_model("MLP")
class MLP(_MLPBase):
    """The unconstrained twin of :class:`LipMLP`: same code path, no weight normalization.

    Default activation GELU (slope up to 1.1289, accounted for in the bound).

    Lipschitz constant
    ------------------
    Still certified: the product of the layers' exact (float64 SVD) norms and the activations'
    slopes; typically far larger than the true constant.

    Examples
    --------
    >>> import torch
    >>> MLP(2, 1, width=16, activation="gelu")(torch.rand(8, 2)).shape
    torch.Size([8, 1])
    """

    constrained = False

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 64,
        depth: int = 3,
        activation: str = "gelu",
        output_scale: OutputScaleName = "none",
        domain: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__(
            in_features,
            out_features,
            width=width,
            depth=depth,
            activation=activation,
            output_scale=output_scale,
            domain=domain,
        )

"""What a certificate rests on, as data, and the one place that checks it.

A number labelled *certified* is a theorem only under its premises: the input domain the
constant was proved on (an auxiliary-scale model's ``radius``; ``[0, 1]`` values for the logistic
reaction), the discretization the true operator's constant was proved for (a theorem about the
continuous operator says nothing about the map between grid samples that a data file defines),
the eval-mode function and the very weights a model's constant was computed from, and, for
statistical bounds, calibration data that took no part in training or in choosing the checkpoint.

Each constant and bound carries its premises (:class:`Premises`); the checks below either refuse
(:class:`PremiseError`, a ``ValueError`` naming what is missing) or say why a label is lowered
(:func:`discretization_note`). The rule, everywhere: a premise that can be checked is checked; a
premise that cannot be checked never yields the label ``certified``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .norms import check_norm, field_norm

__all__ = [
    "ANY_GRID",
    "CONTINUOUS",
    "PremiseError",
    "Premises",
    "check_eval_mode",
    "check_inputs",
    "check_weights",
    "discretization_note",
    "input_ball",
    "weights_fingerprint",
]

#: Discretization of a constant that holds between the grid values themselves, whatever produced
#: them (a model's certificate; a shift by whole cells, which permutes the values).
ANY_GRID = "any grid"
#: Discretization of a theorem about the continuous solution operator (functions, not samples).
CONTINUOUS = "continuous"

#: Slack on value-range premises, for data stored in float32 (values rounded to ~6e-8 relative).
VALUE_RANGE_SLACK = 1e-6


class PremiseError(ValueError):
    """A certificate was asked for where one of its premises fails (the message names it)."""


@dataclass(frozen=True)
class Premises:
    """The premises of a Lipschitz constant (all optional; the defaults assume nothing).

    Parameters
    ----------
    radius
        Inputs must satisfy ``||a - centre|| <= radius`` in ``ball_norm`` (auxiliary-scale
        models are certified on that ball only). ``None``: no restriction.
    centre
        Centre of the ball, flattened (``None``: the zero field).
    ball_norm
        Norm of the ball (``"function"`` for fields, ``"euclidean"`` for point inputs).
    value_range
        Inputs' values must lie in ``[lo, hi]`` (e.g. the logistic reaction's ``[0, 1]``).
    discretization
        What the constant is proved for: :data:`ANY_GRID` (the grid values themselves),
        :data:`CONTINUOUS` (the continuous operator only) or the name of one discrete map (e.g.
        ``"fourier-multiplier"``, matched against the data's declared discretization).
    weights
        Fingerprint of the weights a model constant was computed from
        (:func:`weights_fingerprint`); ``None`` for constants of no model.

    Examples
    --------
    >>> Premises(radius=0.5, discretization="continuous").describe()
    ['inputs with ||a||_function <= 0.5', 'proved for: continuous']
    """

    radius: float | None = None
    centre: tuple[float, ...] | None = None
    ball_norm: str = "function"
    value_range: tuple[float, float] | None = None
    discretization: str = ANY_GRID
    weights: str | None = None

    def __post_init__(self) -> None:
        if self.radius is not None and not (math.isfinite(self.radius) and self.radius >= 0):
            raise ValueError(f"radius must be finite and >= 0, got {self.radius}")
        if self.value_range is not None and not self.value_range[0] <= self.value_range[1]:
            raise ValueError(f"value_range must be (lo, hi) with lo <= hi, got {self.value_range}")
        check_norm(self.ball_norm)

    def describe(self) -> list[str]:
        """One short line per premise (for tables and command-line summaries)."""
        out = []
        if self.radius is not None:
            where = "a" if self.centre is None else "a - centre"
            out.append(f"inputs with ||{where}||_{self.ball_norm} <= {self.radius:g}")
        if self.value_range is not None:
            out.append(f"input values in [{self.value_range[0]:g}, {self.value_range[1]:g}]")
        if self.discretization != ANY_GRID:
            out.append(f"proved for: {self.discretization}")
        if self.weights is not None:
            out.append(f"eval-mode weights {self.weights[:12]}")
        return out


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter and buffer of ``model`` (names, dtypes, shapes and values).

    Reads the values themselves, so any way of writing the weights (optimizer steps,
    ``param.data.copy_``, ``load_state_dict``) changes it.

    Examples
    --------
    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> a = weights_fingerprint(m)
    >>> with torch.no_grad():
    ...     _ = m.weight.data.copy_(m.weight + 1)
    ...     b = weights_fingerprint(m)
    >>> a == b
    False
    """
    digest = hashlib.blake2b(digest_size=16)
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        t = tensor.detach()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            data = t.to("cpu").contiguous()
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_eval_mode(model: nn.Module, what: str = "model") -> None:
    """Refuse a model in training mode (its forward is not the function a certificate covers).

    Raises
    ------
    PremiseError
        If ``model`` or any submodule is in training mode.
    """
    training = [name or "(root)" for name, m in model.named_modules() if m.training]
    if training:
        raise PremiseError(
            f"{what} {type(model).__name__} is in training mode ({training[0]}): certificates "
            "cover the eval-mode function (training forwards use power-iteration/Björck weights "
            "that lipschitz_bound() does not bound); call model.eval() first"
        )


def check_weights(premises: Premises, model: nn.Module, what: str = "constant") -> None:
    """Refuse a constant computed from other weights than ``model`` holds now."""
    if premises.weights is None:
        return
    now = weights_fingerprint(model)
    if now != premises.weights:
        raise PremiseError(
            f"the {what} was computed from other weights (fingerprint {premises.weights[:12]}) "
            f"than {type(model).__name__} holds now ({now[:12]}): recompute it "
            "(liponet.certify.model_constant)"
        )


def input_ball(model: nn.Module) -> tuple[float, tuple[float, ...] | None, str] | None:
    """``(radius, centre, norm)`` of the input ball a model is certified on, or ``None``.

    Auxiliary-scale models (``output_scale="auxiliary"``) certify the product rule only on the
    ball their scale was bounded on: the function-norm ball ``||a|| <= radius`` of a LipFNO, the
    Euclidean ball around the box's centre of a LipMLP. (A LipDeepONet's auxiliary scale acts on
    the query coordinates; its domain is checked with ``in_domain``.)
    """
    from ..layers import AuxiliaryScale

    net = getattr(model, "net", None)
    if not isinstance(net, AuxiliaryScale):
        return None
    centre = net.centre.detach().double().reshape(-1)
    if centre.numel() <= 1 and not bool(centre.any()):
        return net.radius, None, "function"
    return net.radius, tuple(float(c) for c in centre), "euclidean"


def check_inputs(premises: Premises, inputs: Tensor, role: str, what: str = "constant") -> None:
    """Refuse inputs outside the domain a constant holds on (ball, value range).

    Parameters
    ----------
    premises
        The constant's premises.
    inputs
        ``(n, ...)`` inputs (queries or calibration inputs).
    role
        What they are, for the message (``"query"``, ``"calibration input"``).
    what
        Which constant, for the message.

    Raises
    ------
    PremiseError
        Naming the first offending input, its norm (or value) and the premise.
    """
    if inputs.shape[0] == 0:
        return
    if premises.radius is not None:
        flat = inputs.to(torch.float64)
        if premises.centre is not None:
            centre = torch.as_tensor(premises.centre, dtype=torch.float64, device=flat.device)
            flat = flat.reshape(flat.shape[0], -1)
            if flat.shape[1] != centre.numel():
                raise PremiseError(
                    f"{role}s have {flat.shape[1]} features, the {what}'s ball centre "
                    f"{centre.numel()}"
                )
            flat = flat - centre[None]
        norms = field_norm(flat, premises.ball_norm)
        worst = int(norms.argmax())
        if float(norms[worst]) > premises.radius:
            raise PremiseError(
                f"{role} {worst} has ||a||_{premises.ball_norm} = {float(norms[worst]):.4g} > "
                f"radius {premises.radius:g}: the {what} is certified on the ball of that radius "
                "only (auxiliary output scale); no bound holds outside it"
            )
    if premises.value_range is not None:
        lo, hi = premises.value_range
        low, high = float(inputs.min()), float(inputs.max())
        if low < lo - VALUE_RANGE_SLACK or high > hi + VALUE_RANGE_SLACK:
            raise PremiseError(
                f"{role} values span [{low:.4g}, {high:.4g}]: the {what} is proved for values in "
                f"[{lo:g}, {hi:g}] only"
            )


def discretization_note(premises: Premises, data_discretization: str | None) -> str | None:
    """Why a constant does not apply to grid data of ``data_discretization`` (``None``: it does).

    A constant proved for :data:`ANY_GRID` applies to any grid data; one proved for a named
    discrete map applies when the data declare no discretization (the caller computed it for their
    map) or the same one; a theorem about the :data:`CONTINUOUS` operator never applies to grid
    samples by itself (fractional-cell shifts of sampled fields are not isometries of the values,
    Fourier-multiplier kernels have sup-norm constants above 1).
    """
    disc = premises.discretization
    if disc == ANY_GRID:
        return None
    if disc == CONTINUOUS:
        return (
            "L_G is a theorem about the continuous operator; the grid data's own map needs its "
            "own constant (liponet.certify.grid_lipschitz / generator_lipschitz)"
        )
    if data_discretization is not None and data_discretization != disc:
        return f"L_G is proved for {disc!r}, the data were made by {data_discretization!r}"
    return None

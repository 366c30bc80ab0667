"""Symmetry augmentation of training pairs: the dihedral group of a square grid.

If the true operator ``G`` commutes with a grid transformation ``g`` (``G(g a) = g G(a)``),
``(g a, g G(a))`` is another exact training pair. PDEBench's Darcy flow (``-div(a grad u) =
beta`` on the unit square, ``u = 0`` on the walls, constant ``beta``) commutes with the eight
symmetries of the square (the dihedral group D4), and liponet's cell-centred finite-volume
solver (:func:`liponet.data.generators.darcy.solve_darcy`) does so exactly on its own grid
(tested). A strided read of that grid keeps only the exact subgroup whose elements map the kept
cells onto kept cells: with stride 2 from cell 0 (the ``medium`` preset), a flip sends the kept
even cells to odd ones, so only the identity and the transpose stay exact (``"transpose"``);
the other six elements then pair each kept field with a solution sampled half a coarse cell
away (``benchmarks/results/darcy_study.md``).

The group acts on the last two (spatial) axes of ``(batch, channels, ny, nx)`` fields by
permuting grid values, every channel alike: right for scalar fields (Darcy's coefficient and
pressure), wrong for vector components (a velocity's components would also have to be
permuted and negated). The grid-coordinate channels a model appends itself are not
transformed (they describe the grid, not the field).

:mod:`liponet.certify.symmetry`'s groups (cyclic shifts and the periodic point reflection
``j -> -j mod n``) are the symmetries of periodic problems; they do not hold with Darcy's walls,
whose reflections are ``j -> n - 1 - j`` (:func:`torch.flip`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["AUGMENTATIONS", "apply_dihedral", "augment_pair", "check_augmentation"]

#: Augmentation name -> the dihedral elements it draws from (codes of :func:`apply_dihedral`).
#: ``none``: no augmentation; ``transpose``: identity and the transpose; ``d4``: all eight.
AUGMENTATIONS: dict[str, tuple[int, ...]] = {
    "none": (0,),
    "transpose": (0, 4),
    "d4": tuple(range(8)),
}


def apply_dihedral(u: Tensor, element: int) -> Tensor:
    """Apply one symmetry of the square to fields ``(batch, channels, n, n)`` (same shape).

    ``element`` in ``0..7`` codes ``4 t + 2 f_x + f_y``: flip the last axis if ``f_y``, the
    second-to-last if ``f_x``, then transpose the two if ``t`` (``0`` is the identity, ``4``
    the transpose, ``3`` the rotation by 180 degrees). Every element permutes grid values, so
    it preserves liponet's function norm.

    Examples
    --------
    >>> u = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> apply_dihedral(u, 4)[0, 0].tolist(), apply_dihedral(u, 3)[0, 0].tolist()
    ([[0.0, 2.0], [1.0, 3.0]], [[3.0, 2.0], [1.0, 0.0]])
    """
    if not 0 <= element < 8:
        raise ValueError(f"dihedral element must be in 0..7, got {element}")
    if u.dim() < 3 or u.shape[-1] != u.shape[-2]:
        raise ValueError(
            f"the symmetries of the square act on square grids (..., n, n), got shape "
            f"{tuple(u.shape)}"
        )
    dims = [d for bit, d in ((2, -2), (1, -1)) if element & bit]
    out = torch.flip(u, dims) if dims else u
    return out.transpose(-1, -2) if element & 4 else out


def check_augmentation(
    name: str, input_shape: tuple[int, ...], target_shape: tuple[int, ...]
) -> None:
    """Raise ``ValueError`` unless augmentation ``name`` acts on samples of these shapes.

    Shapes are per sample, ``(channels, *spatial)``: every augmentation but ``none`` needs two
    spatial axes of equal size, the same grid for inputs and targets.
    """
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment: unknown value {name!r}; valid: {', '.join(AUGMENTATIONS)}")
    if name == "none":
        return
    for what, shape in (("inputs", input_shape), ("targets", target_shape)):
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(
                f"augment={name!r} needs square 2-D fields (channels, n, n); the data's {what} "
                f"are shaped {tuple(shape)} per sample"
            )
    if tuple(input_shape[1:]) != tuple(target_shape[1:]):
        raise ValueError(
            f"augment={name!r} needs inputs and targets on the same grid, got "
            f"{tuple(input_shape[1:])} and {tuple(target_shape[1:])}"
        )


def augment_pair(
    x: Tensor, y: Tensor, name: str, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Apply one random element of augmentation ``name``'s group to a batch of pairs.

    One element for the whole batch (drawn from ``generator``, or torch's global generator),
    applied to the inputs ``x`` and targets ``y`` alike: ``(g x, g y)``.

    Examples
    --------
    >>> x = torch.randn(2, 1, 4, 4)
    >>> gx, gy = augment_pair(x, 2 * x, "d4", torch.Generator().manual_seed(0))
    >>> torch.equal(gy, 2 * gx)
    True
    """
    elements = AUGMENTATIONS[name]
    if len(elements) == 1:
        return x, y
    check_augmentation(name, tuple(x.shape[1:]), tuple(y.shape[1:]))
    pick = int(torch.randint(len(elements), (1,), generator=generator))
    element = elements[pick]
    return apply_dihedral(x, element), apply_dihedral(y, element)

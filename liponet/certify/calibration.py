"""Calibration at scale: certify against 10^5+ calibration pairs, streamed, memory flat.

The certificate ``min_i [e_i + (L_G + L_Ĝ) d(a, a_i)]`` (plain, or over group orbits,
:mod:`liponet.certify.symmetry`) gets tighter as the calibration set gets denser around the
queries, and the generators make pairs cheaply. :func:`streamed_error_bound` takes any iterable
of ``(inputs, targets)`` chunks (:func:`generated_pairs` for a registered family,
:func:`file_pairs` for PDEBench files) and keeps only the queries, one chunk and a running best
per query: memory does not grow with the number of pairs.

**The index, and why each variant stays certified.** For each chunk, group-invariant features
(Fourier magnitudes along the shift axes; the field itself for the plain bound) give a *lower*
bound ``LB(a, a_i) <= min_g ||a - g a_i||`` for every pair at the cost of one matrix product.

* Model evaluations are skipped for chunk inputs with ``(L_G + L_Ĝ) LB >=`` every query's
  current bound: since ``e_i >= 0`` such a pair cannot improve any bound (exact pruning).
* ``exact=True`` (default): pairs are searched in increasing order of ``e_i + slope LB``,
  ``candidates`` per query at a time, until no remaining lower bound beats the best: the result
  is the minimum over every pair and group element (up to float rounding of the pruning test).
* ``exact=False``: one round of ``candidates`` pairs per query and chunk (an approximate
  nearest-neighbour search); it may miss the minimum.

Either way the bound reported for a query is ``e_i + slope ||a - g a_i||`` recomputed directly
(float64, rounded up) for an actual calibration pair and group element, and every such value is
a valid bound: an approximate search can only make the bound looser, never wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..layers import CertifiedModule
from .discrete import float32_storage_noise
from .harness import field_operator
from .norms import field_norm
from .operator import ConstantLike, as_constant, check_constant_premises
from .premises import check_inputs
from .symmetry import OrbitSearch, SymmetricErrorBound, SymmetryGroup, verify_premises

__all__ = [
    "StreamedErrorBound",
    "file_pairs",
    "generated_pairs",
    "streamed_error_bound",
    "streamed_error_bounds",
]

#: Calibration pairs per chunk of a generated or stored calibration set.
CHUNK = 2048

#: Tag of the batched random streams (keeps them apart from per-sample streams ``(seed, i)``).
_BATCH_STREAM = 0x5EED


def _check_calibration_chunk(inputs: Tensor, targets: Tensor, query_inputs: Tensor) -> None:
    """Refuse a calibration chunk whose pairs don't pair up or whose inputs don't fit the queries.

    Raises
    ------
    ValueError
        Naming both shapes: ``inputs`` and ``targets`` need the same count, ``inputs`` the
        queries' ``(channels, *spatial)``.
    """
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"a calibration chunk has {inputs.shape[0]} inputs and {targets.shape[0]} targets"
        )
    if inputs.shape[1:] != query_inputs.shape[1:]:
        raise ValueError(
            f"calibration inputs {tuple(inputs.shape[1:])} do not match the queries "
            f"{tuple(query_inputs.shape[1:])}"
        )


def _frames(arrays: dict[str, Tensor], t_in: int, t_out: int) -> tuple[Tensor, Tensor]:
    """``(b, nt, *spatial)`` (``tensor``) or ``(b, nt, *spatial, c)`` (``data``) -> pairs."""
    if "tensor" in arrays:
        u = arrays["tensor"][:, :, None]  # (b, nt, 1, *spatial)
    elif "data" in arrays:
        d = arrays["data"]
        u = d.permute(0, 1, d.ndim - 1, *range(2, d.ndim - 1))  # (b, nt, c, *spatial)
    else:
        raise ValueError(
            f"a generated calibration set needs time series ('tensor' or 'data'), got "
            f"{sorted(arrays)}"
        )
    nt = u.shape[1]
    for name, t in (("t_in", t_in), ("t_out", t_out)):
        if not -nt <= t < nt:
            raise ValueError(f"{name}={t} is out of range for {nt} stored frames")
    return u[:, t_in], u[:, t_out]


def generated_pairs(
    family: str,
    n_samples: int,
    *,
    nx: int | None = None,
    nt: int | None = None,
    t_in: int = 0,
    t_out: int = -1,
    seed: int = 1,
    batch_size: int = CHUNK,
    device: torch.device | str = "cpu",
    per_sample: bool = False,
    **params: Any,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Calibration pairs ``(u(t_in), u(t_out))`` of a registered family, chunk by chunk.

    Each chunk is solved when it is asked for and dropped after use, so ``n_samples`` can be
    far larger than memory allows for a whole set. Fields come as ``(b, channels, *spatial)``.

    For the 1-D periodic families (PDEBench's sine-series initial conditions) the initial
    conditions of a chunk are drawn from one random stream ``(seed, chunk, tag)`` with array
    calls (:func:`~liponet.data.generators.initial.sine_series_batch`: the same distribution,
    ~50x faster than per-sample streams) and the solver's float64 frames are returned as they
    are, so a pair is the discrete solution operator applied to its input exactly (no float32
    rounding in between). ``per_sample=True`` (and every other family) goes through
    :func:`liponet.data.generators.simulate` instead: the per-sample streams of ``liponet
    generate``, float32 frames.

    Parameters
    ----------
    family
        A name of :func:`liponet.data.generators.available_families`.
    n_samples, nx, nt
        Number of pairs, cells per axis, stored frames (``nt=2``: only ``t = 0`` and
        ``t = t_final``, the cheapest way to get the operator ``u(0) -> u(t_final)``).
    t_in, t_out
        Stored frames of the input and the target.
    seed
        The generator's seed. Use one that differs from the training/test data's (sample ``i``
        of seed ``s`` is drawn from its own stream ``(s, i)``: a different seed gives fresh
        draws; the same seed would repeat the test inputs themselves).
    batch_size, device, **params
        As in :func:`liponet.data.generators.simulate`.
    per_sample
        Reproduce ``liponet generate``'s samples (slower; float32 frames).

    Examples
    --------
    >>> x, y = next(generated_pairs("advection", 4, nx=16, nt=2, beta=0.1, t_final=1.25))
    >>> x.shape, y.shape
    (torch.Size([4, 1, 16]), torch.Size([4, 1, 16]))
    """
    from ..data.generators import get_family, simulate
    from ..data.generators.initial import sine_series_batch
    from ..data.generators.one_d import Periodic1D

    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cls = get_family(family)
    if per_sample or not issubclass(cls, Periodic1D):
        for _, arrays in simulate(
            family,
            n_samples=n_samples,
            nx=nx,
            nt=nt,
            seed=seed,
            device=device,
            batch_size=batch_size,
            **params,
        ):
            yield _frames(arrays, t_in, t_out)
        return
    fam = cls(nx if nx is not None else cls.default_nx, nt, params)
    x = torch.as_tensor(fam.x, dtype=torch.float64, device=device)
    length = float(fam.x[-1] - fam.x[0])
    for k, start in enumerate(range(0, n_samples, batch_size)):
        rng = np.random.default_rng([int(seed), k, _BATCH_STREAM])
        series = sine_series_batch(rng, min(batch_size, n_samples - start), length)
        frames = fam.march(series.to(device), x, lambda: None)  # (b, nt, nx) float64
        yield _frames({"tensor": frames.cpu()}, t_in, t_out)


def file_pairs(
    paths: Sequence[str | Path],
    *,
    split: str = "train",
    t_in: int = 0,
    t_out: int = -1,
    reduced_resolution: int = 1,
    reduced_resolution_t: int = 1,
    chunk: int = CHUNK,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Calibration pairs read from PDEBench files, ``chunk`` items at a time.

    Every file is read through :class:`liponet.data.PDEBenchDataset` (``task="step"``), so any
    layout it knows works; files are opened one after the other and only one chunk is held.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.data import generate
    >>> path = generate("advection", pathlib.Path(tempfile.mkdtemp()) / "a.hdf5",
    ...                 n_samples=30, nx=16, nt=3)
    >>> [x.shape[0] for x, _ in file_pairs([path], chunk=10)]
    [10, 10, 5]
    """
    from ..data import PDEBenchDataset

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"calibration file not found: {path}")
        ds = PDEBenchDataset(
            path,
            split=split,
            task="step",
            t_in=t_in,
            t_out=t_out,
            reduced_resolution=reduced_resolution,
            reduced_resolution_t=reduced_resolution_t,
        )
        for start in range(0, len(ds), chunk):
            items = [ds[i] for i in range(start, min(start + chunk, len(ds)))]
            yield torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


@dataclass
class StreamedErrorBound(SymmetricErrorBound):
    """A :class:`SymmetricErrorBound` with the cost of its search.

    Attributes
    ----------
    n_calib
        Calibration pairs seen.
    n_evaluated
        Of these, how many the model was evaluated on (the others were pruned exactly).
    searched_pairs
        (query, calibration) pairs searched over the orbit.
    unproven
        Queries for which the approximate search (``exact=False``) left pairs unsearched that
        might have given a smaller bound (their bound is still valid).

    Examples
    --------
    >>> import torch
    >>> b = StreamedErrorBound(torch.tensor([0.3]), "certified", "plain", "function",
    ...                        n_calib=10**5, n_evaluated=2000)
    >>> f"model ran on {b.n_evaluated / b.n_calib:.0%} of the pairs"
    'model ran on 2% of the pairs'
    """

    n_calib: int = 0
    n_evaluated: int = 0
    searched_pairs: int = 0
    unproven: int = 0


def _evaluate(
    apply: Callable[[Tensor], Tensor], model: nn.Module, inputs: Tensor, batch: int
) -> Tensor:
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float64
    device = param.device if param is not None else inputs.device
    with torch.no_grad():
        out = [apply(x.to(device=device, dtype=dtype)) for x in inputs.split(batch)]
    return torch.cat(out).to(torch.float64)


def streamed_error_bound(
    query_inputs: Tensor,
    pairs: Iterable[tuple[Tensor, Tensor]],
    model: CertifiedModule,
    *,
    lipschitz_true: ConstantLike,
    group: SymmetryGroup | None = None,
    operator: str | None = None,
    operator_params: dict[str, float] | None = None,
    exact: bool = True,
    candidates: int = 16,
    eval_batch: int = 256,
    data_discretization: str | None = None,
    float32_storage: bool = False,
) -> StreamedErrorBound:
    """The operator certificate against a stream of calibration pairs (plain or over orbits).

    ``||G(a) - Ĝ(a)|| <= min_i min_g [ e_i + (L_G + L_Ĝ) ||a - g a_i|| ]`` in liponet's
    function norm, ``g`` over ``group`` (the identity when ``group`` is ``None``; otherwise both
    premises are checked as in :func:`~liponet.certify.symmetry.symmetric_error_bound`).
    ``e_i`` is computed here: the model is evaluated (in its own dtype; certify in float64) on
    the calibration inputs that may still improve a bound.

    Parameters
    ----------
    query_inputs
        ``(n_query, channels, *spatial)``.
    pairs
        Iterable of ``(inputs, targets)`` chunks, e.g. :func:`generated_pairs`, :func:`file_pairs`.
    model
        The certified surrogate (its ``lipschitz_bound()``; its architecture if ``group``).
    lipschitz_true
        ``L_G`` in the function norm.
    group, operator, operator_params
        The symmetry group and the true operator's name in the symmetry registry.
    exact, candidates
        The index (see the module docstring): exact pruned search, or one round of
        ``candidates`` per query and chunk.
    eval_batch
        Model evaluation batch.
    data_discretization
        The pairs' discretization, matched against ``L_G``'s; every constant's premises are
        checked (queries up front, each chunk's inputs as it arrives), as in
        :func:`~liponet.certify.operator_error_bound`.
    float32_storage
        See :func:`streamed_error_bounds`.

    Returns
    -------
    StreamedErrorBound
        Labelled by the weakest of ``L_Ĝ``, ``L_G`` and the operator's symmetry.

    Examples
    --------
    >>> import torch
    >>> from liponet.models import LipFNO
    >>> from liponet.certify import grid_lipschitz
    >>> model = LipFNO(1, 1, modes=(4,), width=4, depth=1, grid=False).eval().double()
    >>> x, _ = next(generated_pairs("advection", 3, nx=16, nt=2, seed=0, t_final=1.25))
    >>> shift = grid_lipschitz("advection", 16, shift=0.125)  # 2 whole cells: a permutation
    >>> b = streamed_error_bound(x.double(),
    ...     generated_pairs("advection", 500, nx=16, nt=2, t_final=1.25, batch_size=100),
    ...     model, lipschitz_true=shift, group=SymmetryGroup((0,)), operator="advection")
    >>> b.label, b.n_calib, b.name
    ('certified', 500, 'shift-reduced')
    """
    return streamed_error_bounds(
        query_inputs,
        pairs,
        model,
        lipschitz_true=lipschitz_true,
        groups=[group],
        operator=operator,
        operator_params=operator_params,
        exact=exact,
        candidates=candidates,
        eval_batch=eval_batch,
        data_discretization=data_discretization,
        float32_storage=float32_storage,
    )[0]


def streamed_error_bounds(
    query_inputs: Tensor,
    pairs: Iterable[tuple[Tensor, Tensor]],
    model: CertifiedModule,
    *,
    lipschitz_true: ConstantLike,
    groups: Sequence[SymmetryGroup | None],
    operator: str | None = None,
    operator_params: dict[str, float] | None = None,
    exact: bool = True,
    candidates: int = 16,
    eval_batch: int = 256,
    apply: Callable[[Tensor], Tensor] | None = None,
    data_discretization: str | None = None,
    float32_storage: bool = False,
) -> list[StreamedErrorBound]:
    """:func:`streamed_error_bound` for several groups in one pass over the pairs.

    The pairs are generated or read once and the model is evaluated once on every input that
    may improve some group's bound (``None`` in ``groups``: the plain bound). ``apply`` is the
    map evaluated on calibration fields (default: the exported model; a DeepONet through
    :func:`~liponet.certify.field_operator`, at the cell centres). ``float32_storage``: the
    pairs and queries are float32-stored samples of an exactly proved discrete map; the bound
    then adds ``L_G eps`` with :func:`~liponet.certify.float32_storage_noise` of the largest
    magnitude seen (queries and every chunk).
    """
    if not groups:
        raise ValueError("groups must name at least one group (None: the plain bound)")
    if not isinstance(model, CertifiedModule):
        raise TypeError(f"model must be a CertifiedModule, got {type(model).__name__}")
    chosen = [g if g is not None else SymmetryGroup(()) for g in groups]
    checked = []
    for group in chosen:
        if group.shift_axes:
            checked.append(verify_premises(model, group, operator, **(operator_params or {})))
        else:
            checked.append(("certified", {}))
    l_model = as_constant(model)
    l_true = as_constant(lipschitz_true)
    constants, lines, notes = check_constant_premises(
        {"model": l_model, "true": l_true}, {"query": query_inputs}, data_discretization
    )
    l_model, l_true = constants["model"], constants["true"]
    for c in (l_model, l_true):
        if c.input_norm != "function" or c.output_norm not in ("function", "sup"):
            raise ValueError(
                f"streamed bounds are in the function norm; got a constant from "
                f"{c.input_norm!r} to {c.output_norm!r}"
            )
    if apply is None:
        apply = field_operator(model) if hasattr(model, "branch_coefficients") else model.export()
    slope = l_model.value + l_true.value
    searches = [OrbitSearch(query_inputs, g, slope, exact, candidates) for g in chosen]
    n_calib = n_evaluated = 0
    largest = float(query_inputs.abs().max()) if query_inputs.numel() else 0.0
    for inputs, targets in pairs:
        largest = max(largest, float(inputs.abs().max()), float(targets.abs().max()))
        _check_calibration_chunk(inputs, targets, query_inputs)
        for role, c in constants.items():
            check_inputs(c.premises, inputs, "calibration input", f"{role} constant")
        keeps = [s.useful(inputs).cpu() for s in searches]
        union = torch.stack(keeps).any(0)
        idx = torch.nonzero(union).reshape(-1)
        if idx.numel():
            x = inputs[idx].to(torch.float64)
            preds = _evaluate(apply, model, x, eval_batch)
            if preds.shape != targets[idx].shape:
                raise ValueError(
                    f"the model's outputs {tuple(preds.shape[1:])} do not match the "
                    f"calibration targets {tuple(targets.shape[1:])}"
                )
            errors = field_norm(targets[idx].to(torch.float64) - preds.cpu(), "function")
            for search, keep in zip(searches, keeps, strict=True):
                mine = keep[idx]
                search.update(x[mine], errors[mine], idx[mine] + n_calib)
        n_calib += inputs.shape[0]
        n_evaluated += int(idx.numel())
    if n_calib == 0:
        raise ValueError("the calibration set is empty")
    noise = 0.0
    if float32_storage and l_true.value > 0:
        noise = float32_storage_noise(l_true.value, torch.tensor([largest]))
    out = []
    for search, (label_sym, premises) in zip(searches, checked, strict=True):
        base = search.result(
            l_model, l_true, label_sym, premises, lines, notes, offset=l_true.value * noise
        )
        out.append(
            StreamedErrorBound(
                **{f: getattr(base, f) for f in base.__dataclass_fields__},
                n_calib=n_calib,
                n_evaluated=n_evaluated,
                searched_pairs=search.searched_pairs,
                unproven=int(search.unproven.sum()),
            )
        )
    return out

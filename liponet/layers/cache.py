"""Values derived from weights, recomputed exactly when the weights' contents change.

Eval weights (normalized by exact float64 norms) and certificates are expensive, so layers cache
them. A cache keyed on a tensor's version counter or storage pointer goes stale when something
writes the parameter without autograd noticing: ``param.data.copy_(...)`` (EMA/SWA utilities,
other libraries) moves neither. :class:`WeightKeyedCache` is keyed on the weights themselves: it
keeps a copy of every source tensor and compares it *bitwise* with the current one on each
access, so no write can be missed (a NaN compares equal to the same NaN, ``-0.0`` differs from
``0.0``). The check reads each weight and its copy once (the C library's ``memcmp`` on CPU) and
allocates nothing; the price is one extra copy of the weights in memory.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["WeightKeyedCache", "same_bits"]

T = TypeVar("T")

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _load_memcmp() -> Callable[[int, int, int], int] | None:
    """The C library's ``memcmp`` (about twice as fast as ``torch.equal``), if it can be found."""
    try:
        libc = ctypes.CDLL(None)
        fn = libc.memcmp
    except (OSError, AttributeError, TypeError):  # e.g. Windows: no process-wide symbol table
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return fn


_MEMCMP = _load_memcmp()

#: Marks a value absent from a cache (``None`` can be a cached value).
_MISSING = object()


def _plain_cpu(t: Tensor) -> bool:
    """Dense contiguous CPU memory holding exactly the values (no lazy conjugate/negation)."""
    return (
        t.device.type == "cpu"
        and t.layout == torch.strided
        and t.is_contiguous()
        and not t.is_conj()
        and not t.is_neg()
    )


def same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors have the same shape, dtype, device and bit pattern.

    Examples
    --------
    >>> import torch
    >>> same_bits(torch.tensor([0.0]), torch.tensor([-0.0]))
    False
    >>> nan = torch.tensor([float("nan")])
    >>> same_bits(nan, nan.clone())
    True
    """
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    # Lazy conjugate / negative views: their values materialized (a dtype view of them fails).
    a, b = a.resolve_conj().resolve_neg(), b.resolve_conj().resolve_neg()
    if _MEMCMP is not None and _plain_cpu(a) and _plain_cpu(b):
        # Same bytes: the two blocks of memory compared by the C library.
        return _MEMCMP(a.data_ptr(), b.data_ptr(), a.numel() * a.element_size()) == 0
    if a.is_contiguous() and b.is_contiguous() and a.numel() * a.element_size() % 8 == 0:
        # Same bytes, compared 8 at a time (several times faster than per float32 element).
        a, b = a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)
        return bool(torch.equal(a.view(torch.int64), b.view(torch.int64)))
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    if a.dtype.is_floating_point:
        as_int = _INT_OF_SIZE[a.element_size()]
        a, b = a.view(as_int), b.view(as_int)
    return bool(torch.equal(a, b))


#: ``(shape, dtype, bytes, the copy)`` of a plain CPU copy (the copy itself, not its address:
#: a deep copy of the cache then compares with its own copies).
_Layout = tuple[torch.Size, torch.dtype, int, Tensor]


def _plain_layout(copies: Sequence[Tensor]) -> list[_Layout] | None:
    """``(shape, dtype, bytes, copy)`` of each copy if all are plain CPU memory, else None."""
    if _MEMCMP is None or not all(_plain_cpu(c) for c in copies):
        return None
    return [(c.shape, c.dtype, c.numel() * c.element_size(), c) for c in copies]


@contextlib.contextmanager
def _eager(exporting: bool) -> Iterator[None]:
    """Plain eager torch on real tensors while a graph is captured (no-op otherwise).

    ``torch.export`` traces with dispatch modes (fake tensors, graph proxies) and a
    torch-function handler; ``torch.jit.trace`` records every op. Both are set aside here: the
    weights are real, and the cached values become constants of the captured program.
    """
    tracing_state = torch._C._get_tracing_state()
    if not exporting and tracing_state is None:
        yield
        return
    from torch.utils._python_dispatch import _disable_current_modes

    torch._C._set_tracing_state(None)  # type: ignore[attr-defined]
    try:
        if exporting:
            with _disable_current_modes(), torch._C.DisableTorchFunction():
                yield
        else:
            yield
    finally:
        torch._C._set_tracing_state(tracing_state)  # type: ignore[attr-defined]


@contextlib.contextmanager
def _no_autocast(sources: Sequence[Tensor]) -> Iterator[None]:
    """Autocast off on the sources' devices: a cached value is a function of the weights only.

    A forward under autocast (the Trainer's bf16 on CUDA) that computed eval weights there would
    run their products in bfloat16: the model would then certify above its budget and differ
    from the same weights loaded elsewhere (the first CUDA device check measured 1.0036 against
    ``k = 1``, outputs 1.5e-3 apart).
    """
    with contextlib.ExitStack() as stack:
        for kind in sorted({s.device.type for s in sources} | {"cpu"}):
            stack.enter_context(torch.autocast(kind, enabled=False))
        yield


class WeightKeyedCache:
    """Named values computed from some tensors, valid while those tensors hold the same bits.

    Every :meth:`get` first checks that the sources are bitwise equal to the copies taken when
    the cached values were computed; on any difference (shape, dtype, device or a single bit)
    all cached values are dropped and recomputed from the current weights, with autocast off (a
    value depends on the weights only, not on the caller's precision).

    Parameters
    ----------
    sources
        The tensors (usually parameters) the values will be computed from. They are remembered
        so that ``torch.export`` (which traces with fake tensors that hold no data) can still
        check and use the real weights: the values then enter the exported program as
        constants, exactly as the eager forward would use them. Every eager :meth:`get`
        refreshes the remembered tensors.

    Examples
    --------
    >>> import torch
    >>> w = torch.ones(2)
    >>> cache = WeightKeyedCache([w])
    >>> cache.get("sum", [w], lambda w: float(w.sum()))
    2.0
    >>> w.data.copy_(torch.full((2,), 3.0))  # moves no version counter
    tensor([3., 3.])
    >>> cache.get("sum", [w], lambda w: float(w.sum()))
    6.0
    """

    def __init__(self, sources: Sequence[Tensor] | None = None) -> None:
        self._refs: list[Tensor] | None = None if sources is None else list(sources)
        self._snapshot: list[Tensor] | None = None
        #: ``(shape, dtype, bytes, copy)`` of each snapshot copy when every copy is plain
        #: CPU memory and ``memcmp`` is available (the fast check of :meth:`_cached`), else None.
        self._plain: list[_Layout] | None = None
        self._values: dict[str, Any] = {}
        self._computing: list[Tensor] | None = None
        #: How many times a value was (re)computed (for tests and benchmarks).
        self.misses = 0

    def _valid(self, sources: Sequence[Tensor]) -> bool:
        snap = self._snapshot
        if snap is None or len(snap) != len(sources):
            return False
        return all(same_bits(s.detach(), c) for s, c in zip(sources, snap, strict=True))

    def get(self, name: str, sources: Sequence[Tensor], compute: Callable[..., T]) -> T:
        """The value ``name`` for the current ``sources``, ``compute(*sources)`` if needed.

        Under ``torch.export`` the remembered real tensors replace ``sources``; under
        ``torch.compile`` this runs eagerly (outside the graph), so the check is never skipped.
        An eager call that finds the value cached checks the sources bitwise (one ``memcmp``
        each against their copies) and returns it, with none of the graph-capture handling
        (measured: 20 -> 5 us per call, see :meth:`_cached`).
        """
        value = self._cached(name, sources)
        if value is not _MISSING:
            self._refs = list(sources)
            return value  # type: ignore[return-value]
        return self._get(name, sources, compute)

    def _cached(self, name: str, sources: Sequence[Tensor]) -> object:
        """The cached value of an eager call whose sources provably hold the snapshot's bits.

        ``_MISSING`` whenever the fast check cannot decide (a graph being captured, a compute
        of this cache running, a source that is not plain CPU memory, no C ``memcmp``) or
        finds a difference: :meth:`_get` then runs the full check. ``torch.compile`` and
        ``torch.export`` see ``is_compiling()`` / ``is_exporting()`` true and always take
        :meth:`_get` (the graph-break boundary); ``torch.jit.trace`` has a tracing state.
        """
        plain = self._plain
        if plain is None or self._computing is not None or len(plain) != len(sources):
            return _MISSING
        value = self._values.get(name, _MISSING)
        if (
            value is _MISSING
            or torch.compiler.is_compiling()
            or torch.compiler.is_exporting()
            or torch._C._get_tracing_state() is not None
        ):
            return _MISSING
        memcmp = _MEMCMP
        assert memcmp is not None  # _plain is None without it
        for s, (shape, dtype, nbytes, c) in zip(sources, plain, strict=True):
            if not (
                s.is_cpu
                and s.dtype is dtype
                and s.layout is torch.strided
                and s.shape == shape
                and s.is_contiguous()
                and not s.is_conj()
                and not s.is_neg()
            ) or memcmp(s.data_ptr(), c.data_ptr(), nbytes):
                return _MISSING
        return value

    @torch.compiler.disable
    def _get(self, name: str, sources: Sequence[Tensor], compute: Callable[..., T]) -> T:
        """:meth:`get` with the full check (every tensor kind, graph capture, recomputation)."""
        exporting = torch.compiler.is_exporting()
        if exporting:
            if self._refs is not None and len(self._refs) == len(sources):
                sources = self._refs
        else:
            self._refs = list(sources)
        with _eager(exporting), torch.no_grad():
            # A get from inside a compute of this cache, on the same tensors, needs no second
            # check: nothing wrote them in between (computes only read their sources).
            inner = (
                self._computing is not None
                and all(a is b for a, b in zip(sources, self._computing, strict=False))
                and len(sources) == len(self._computing)
            )
            if not inner and not self._valid(sources):
                self._values = {}
                self._take_snapshot(sources)
            if name not in self._values:
                self.misses += 1
                outer, self._computing = self._computing, list(sources)
                try:
                    with _no_autocast(sources):
                        self._values[name] = compute(*sources)
                finally:
                    self._computing = outer
        value: T = self._values[name]
        return value

    def _take_snapshot(self, sources: Sequence[Tensor]) -> None:
        """Copy the sources, into the previous copies' memory where the layouts agree."""
        old = self._snapshot
        self._snapshot = None  # no stale copy survives a failure half-way
        self._plain = None
        fmt = torch.contiguous_format
        fresh = []
        for i, s in enumerate(sources):
            s = s.detach()
            c = None if old is None or i >= len(old) else old[i]
            if c is not None and c.shape == s.shape and c.dtype == s.dtype and c.device == s.device:
                fresh.append(c.copy_(s))  # no new pages to fault in
            else:
                # values materialized: a lazy conjugate of a source is copied conjugated
                fresh.append(s.clone(memory_format=fmt).resolve_conj().resolve_neg())
        self._snapshot = fresh
        self._plain = _plain_layout(fresh)

    def clear(self) -> None:
        """Drop every cached value."""
        self._snapshot = None
        self._plain = None
        self._values = {}

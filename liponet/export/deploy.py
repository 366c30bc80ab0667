"""Deployment files of liponet models: ONNX (onnxruntime) and ``torch.export`` programs (.pt2).

Both are built from the model's ``export()`` (the eval weights, plain torch modules) with a
dynamic batch axis (and a dynamic number of query points for DeepONet's coordinates); a Fourier
model's files are for one grid (``grid=``), the one it was built with. ONNX graphs take the
real-arithmetic Fourier layers of :func:`onnx_ready` (ONNX runtimes have no complex tensors);
``.pt2`` programs keep liponet's registered FFT operators (``torch.export.load`` needs
``import liponet`` first).

The certificate of a deployed file is the model's ``lipschitz_bound()``: the file computes the
same function (float rounding aside; :func:`check_deployment` measures the difference on
random inputs), and :func:`deployment_card` writes the bound next to the input layout.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..layers import AuxiliaryScale, CertifiedModule, SpectralMultiplier
from ..layers.fourier import check_field
from .dft import DFTSpectralMultiplier

__all__ = [
    "FORMATS",
    "DeploymentInputs",
    "check_deployment",
    "deployment_card",
    "deployment_inputs",
    "export_onnx",
    "export_program",
    "onnx_available",
    "onnx_ready",
]

#: Deployment formats: ``"onnx"`` (an ONNX graph for onnxruntime and other ONNX runtimes) and
#: ``"pt2"`` (a ``torch.export`` program, ``torch.export.save``).
FORMATS: tuple[str, ...] = ("onnx", "pt2")

#: Packages the ONNX path needs (the ``onnx`` extra: ``pip install 'liponet[onnx]'``);
#: onnxruntime only runs the files (:func:`check_deployment`).
ONNX_PACKAGES: tuple[str, ...] = ("onnx", "onnxscript")

#: Warnings that torch's exporters issue from their own internals (nothing a caller can act on)
#: and that would otherwise reach every caller of :func:`export_onnx` / :func:`export_program`.
_EXPORTER_NOISE: tuple[tuple[type[Warning], str], ...] = (
    (FutureWarning, r".*isinstance\(treespec, LeafSpec\)"),
    (UserWarning, r"Exporting a model while it is in training mode"),
)


def onnx_available() -> bool:
    """Whether the packages of the ONNX path (``onnx``, ``onnxscript``) are installed.

    Examples
    --------
    >>> isinstance(onnx_available(), bool)
    True
    """
    return not _missing_onnx_packages()


def _missing_onnx_packages() -> list[str]:
    missing = []
    for name in ONNX_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or blocked installation counts as missing
            found = False
        if not found:
            missing.append(name)
    return missing


@dataclass
class DeploymentInputs:
    """Example inputs of a model and how the deployed file reads them.

    Attributes
    ----------
    names
        Input names of the deployed graph, in call order.
    tensors
        Example tensors (float32, CPU), one per name.
    dynamic
        Per input: axis index -> axis name for the axes left free (``"batch"``, ``"points"``).
    layouts
        Per input: the layout in words, e.g. ``"(batch, 1, 128)"``.
    output
        The output's layout in words.
    extra
        Facts the certificate depends on: the ``domain`` of DeepONet's query points (or of an
        MLP's inputs), the ``radius`` (function norm) of the input functions a LipFNO with
        ``output_scale="auxiliary"`` is certified on.

    Examples
    --------
    >>> from liponet.models import LipDeepONet
    >>> inputs = deployment_inputs(LipDeepONet(8, ([0.0], [1.0]), n_basis=4, width=8, depth=2))
    >>> inputs.names, inputs.shapes(), inputs.output
    (('u', 'coords'), [['batch', 1, 8], ['points', 1]], '(batch, 1, points)')
    """

    names: tuple[str, ...]
    tensors: tuple[Tensor, ...]
    dynamic: tuple[dict[int, str], ...]
    layouts: tuple[str, ...]
    output: str
    extra: dict[str, Any] = field(default_factory=dict)

    def shapes(self) -> list[list[int | str]]:
        """Each input's shape with its free axes named (the sidecar's ``shape`` entries)."""
        return [
            [dyn.get(i, int(n)) for i, n in enumerate(t.shape)]
            for t, dyn in zip(self.tensors, self.dynamic, strict=True)
        ]


def _field_inputs(
    in_channels: int, out_channels: int, grid: Sequence[int], batch: int, gen: torch.Generator
) -> DeploymentInputs:
    sizes = ", ".join(map(str, grid))
    x = torch.randn(batch, in_channels, *grid, generator=gen)
    return DeploymentInputs(
        names=("x",),
        tensors=(x,),
        dynamic=({0: "batch"},),
        layouts=(f"(batch, {in_channels}, {sizes}): (batch, in_channels, *spatial)",),
        output=f"(batch, {out_channels}, {sizes}): (batch, out_channels, *spatial)",
    )


def deployment_inputs(
    model: nn.Module,
    grid: Sequence[int] | None = None,
    batch: int = 2,
    points: int = 16,
    seed: int = 0,
) -> DeploymentInputs:
    """Random example inputs for ``model`` (a liponet model) and the layout of its deployed file.

    Parameters
    ----------
    model
        A :class:`~liponet.models.LipFNO` / ``FNO``, ``LipDeepONet`` / ``DeepONet``,
        ``LipLocalDeepONet`` / ``LocalDeepONet`` or ``LipMLP`` / ``MLP``.
    grid
        Fourier models only (and required there): the grid ``(n_1, ..., n_d)`` the file is
        for, each ``n_i >= 2 m_i - 1``.
    batch
        Example batch size (``>= 2``: a batch of 1 would be specialized as a constant).
    points
        DeepONet: example number of query points (a free axis of the file).
    seed
        Seed of the random example values.

    Raises
    ------
    ValueError
        For a model kind without a deployment layout, a missing, superfluous or too small grid.

    Examples
    --------
    >>> from liponet.models import LipFNO
    >>> inputs = deployment_inputs(LipFNO(1, 1, modes=(4,), width=4, depth=1), grid=(32,))
    >>> inputs.names, inputs.shapes()
    (('x',), [['batch', 1, 32]])
    """
    from ..models.deeponet import _DeepONetBase, _LocalDeepONetBase
    from ..models.fno import _FNOBase
    from ..models.mlp import _MLPBase

    if batch < 2:
        raise ValueError(f"batch must be >= 2 (a batch of 1 is specialized), got {batch}")
    gen = torch.Generator().manual_seed(seed)
    kind = type(model).__name__
    if grid is not None and not isinstance(model, _FNOBase):
        raise ValueError(
            f"grid applies to Fourier models (LipFNO, FNO) only; {kind} has a fixed input layout"
        )
    if isinstance(model, _FNOBase):
        if grid is None:
            raise ValueError(
                f"{kind} needs grid=(n_1, ..., n_{len(model.modes)}): a deployed Fourier model is "
                "built for one grid (e.g. the training data's)"
            )
        grid = tuple(int(n) for n in grid)
        if len(grid) != len(model.modes):
            raise ValueError(
                f"grid {grid} must have {len(model.modes)} size(s), one per spatial dimension of "
                f"modes={model.modes}"
            )
        check_field(torch.empty(0, 1, *grid, device="meta"), 1, model.modes, "grid")
        inputs = _field_inputs(model.in_channels, model.out_channels, grid, batch, gen)
        radii = [m.radius for m in model.modules() if isinstance(m, AuxiliaryScale)]
        if radii:  # output_scale="auxiliary": certified on a ball of input functions only
            inputs.extra["radius"] = float(radii[0])
        return inputs
    if isinstance(model, _LocalDeepONetBase):
        return _field_inputs(model.in_channels, model.out_channels, model.grid, batch, gen)
    if isinstance(model, _DeepONetBase):
        u = torch.randn(batch, model.in_channels, model.n_sensors, generator=gen)
        lo, hi = model.domain_lo.cpu(), model.domain_hi.cpu()
        y = lo + (hi - lo) * torch.rand(points, model.coord_dim, generator=gen)
        return DeploymentInputs(
            names=("u", "coords"),
            tensors=(u, y),
            dynamic=({0: "batch"}, {0: "points"}),
            layouts=(
                f"(batch, {model.in_channels}, {model.n_sensors}): (batch, in_channels, "
                "n_sensors), the input function at the fixed sensors",
                f"(points, {model.coord_dim}): query coordinates, shared by the batch",
            ),
            output=f"(batch, {model.out_channels}, points)",
            extra={"domain": [lo.tolist(), hi.tolist()]},
        )
    if isinstance(model, _MLPBase):
        x = torch.randn(batch, model.in_features, generator=gen)
        out = model.out_features
        extra: dict[str, Any] = {}
        box = [getattr(model, name, None) for name in ("domain_lo", "domain_hi")]
        if all(isinstance(t, Tensor) for t in box):
            extra["domain"] = [torch.as_tensor(t).cpu().tolist() for t in box]
        return DeploymentInputs(
            names=("x",),
            tensors=(x,),
            dynamic=({0: "batch"},),
            layouts=(f"(batch, {model.in_features}): points",),
            output=f"(batch, {out})",
            extra=extra,
        )
    raise ValueError(
        f"no deployment layout for {kind}; deployable: LipFNO, FNO, LipDeepONet, DeepONet, "
        "LipLocalDeepONet, LocalDeepONet, LipMLP, MLP"
    )


def _plain(model: nn.Module) -> nn.Module:
    """The eval-mode plain modules of a certified model (a plain module as it is)."""
    plain = model.export() if isinstance(model, CertifiedModule) else model
    return plain.eval()


def onnx_ready(model: nn.Module, *inputs: Tensor) -> nn.Module:
    """A copy of ``model.export()`` whose Fourier layers use real arithmetic only (for ONNX).

    Every :class:`~liponet.layers.SpectralMultiplier` becomes a
    :class:`~liponet.export.DFTSpectralMultiplier` (the same linear map, with precomputed
    cosine/sine bases) for the grid it receives when the copy runs on ``inputs``; the rest is
    unchanged. The result holds no complex tensor and calls no FFT.

    Parameters
    ----------
    model
        A certified model (its ``export()`` is used) or plain modules (an ``export()``).
    *inputs
        Example inputs; they fix each Fourier layer's grid.

    Raises
    ------
    ValueError
        If a Fourier layer is not reached by ``inputs`` or sees two grids.

    Examples
    --------
    >>> import torch
    >>> from liponet.models import LipFNO
    >>> model = LipFNO(1, 1, modes=(4, 3), width=4, depth=2).eval()
    >>> x = torch.randn(2, 1, 12, 10)
    >>> ready = onnx_ready(model, x)
    >>> any(p.is_complex() for p in ready.buffers())
    False
    >>> torch.allclose(ready(x), model(x), atol=1e-5)
    True
    """
    plain = copy.deepcopy(_plain(model))
    seen: dict[str, set[tuple[int, ...]]] = {}
    hooks = []
    for name, module in plain.named_modules():
        if isinstance(module, SpectralMultiplier):
            seen[name] = set()

            def record(mod: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
                seen[name].add(tuple(int(n) for n in args[0].shape[2:]))

            hooks.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            plain(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    for name, grids in seen.items():
        if len(grids) != 1:
            what = "was not reached" if not grids else f"saw several grids {sorted(grids)}"
            raise ValueError(f"Fourier layer {name or '(root)'} {what} on the example inputs")
        layer = plain.get_submodule(name)
        dft = DFTSpectralMultiplier.from_multiplier(layer, next(iter(grids)))
        if not name:
            return dft.eval()
        parent, _, child = name.rpartition(".")
        setattr(plain.get_submodule(parent), child, dft)
    return plain.eval()


def _dynamic_shapes(inputs: DeploymentInputs) -> tuple[dict[int, Any], ...]:
    dims: dict[str, Any] = {}
    for dyn in inputs.dynamic:
        for axis in dyn.values():
            dims.setdefault(axis, torch.export.Dim(axis))
    return tuple({i: dims[axis] for i, axis in dyn.items()} for dyn in inputs.dynamic)


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        for category, message in _EXPORTER_NOISE:
            warnings.filterwarnings("ignore", message=message, category=category)
        return fn()


def export_program(model: nn.Module, inputs: DeploymentInputs) -> torch.export.ExportedProgram:
    """``torch.export`` program of ``model.export()`` with the free axes of ``inputs`` dynamic.

    The Fourier layers stay liponet's registered FFT operators (``liponet::kept_rfftn``,
    ``liponet::kept_irfftn``): load a saved program after ``import liponet``.

    Examples
    --------
    >>> import torch
    >>> from liponet.models import LipFNO
    >>> model = LipFNO(1, 1, modes=(4,), width=4, depth=1).eval()
    >>> program = export_program(model, deployment_inputs(model, grid=(16,)))
    >>> x = torch.randn(5, 1, 16)
    >>> torch.allclose(program.module()(x), model(x), atol=1e-6)
    True
    """
    plain = _plain(model)
    with torch.no_grad():
        return _quiet(
            lambda: torch.export.export(
                plain, inputs.tensors, dynamic_shapes=_dynamic_shapes(inputs)
            )
        )


def _require_onnx() -> None:
    missing = _missing_onnx_packages()
    if missing:
        raise ImportError(
            f"ONNX export needs the package(s) {', '.join(missing)}: "
            "pip install 'liponet[onnx]' (onnx, onnxscript, onnxruntime)"
        )


def export_onnx(model: nn.Module, inputs: DeploymentInputs, opset: int = 18) -> Any:
    """ONNX graph of ``model`` (``torch.onnx.export(..., dynamo=True)`` of :func:`onnx_ready`).

    Parameters
    ----------
    model
        A liponet model (or plain modules).
    inputs
        From :func:`deployment_inputs`: example tensors, input names and free axes.
    opset
        ONNX opset version (the graph uses standard operators only: MatMul, Transpose, Concat,
        Relu, ...; no DFT).

    Returns
    -------
    torch.onnx.ONNXProgram
        ``.save(path)`` writes the ``.onnx`` file; ``.model_proto`` is the graph.

    Raises
    ------
    ImportError
        Without the ``onnx`` extra (``onnx``, ``onnxscript``).

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("onnxscript")  # the `onnx` extra
    >>> from liponet.models import LipMLP
    >>> model = LipMLP(2, 1, width=8, depth=2).eval()
    >>> program = export_onnx(model, deployment_inputs(model))
    >>> [i.name for i in program.model_proto.graph.input]
    ['x']
    """
    _require_onnx()
    ready = onnx_ready(model, *inputs.tensors)
    with torch.no_grad():
        return _quiet(
            lambda: torch.onnx.export(
                ready,
                inputs.tensors,
                input_names=list(inputs.names),
                output_names=["output"],
                dynamic_shapes=_dynamic_shapes(inputs),
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        )


def check_deployment(
    run: Callable[..., Tensor], model: nn.Module, inputs: Sequence[DeploymentInputs]
) -> dict[str, Any]:
    """Largest differences between a deployed function and the eager model on example inputs.

    Parameters
    ----------
    run
        The deployed function (e.g. an onnxruntime session wrapped to take and return tensors,
        or a loaded program's ``module()``).
    model
        The eager model (eval mode).
    inputs
        Example inputs, e.g. from :func:`deployment_inputs` with several batch sizes.

    Returns
    -------
    dict
        ``max_abs_error``, ``max_rel_error`` (the largest absolute difference over the largest
        absolute eager output of the same call) and the ``batch_sizes`` checked.

    Examples
    --------
    >>> from liponet.models import LipMLP
    >>> model = LipMLP(2, 1, width=8, depth=2).eval()
    >>> plain = model.export()
    >>> check = check_deployment(plain, model, [deployment_inputs(model, batch=b) for b in (2, 5)])
    >>> check["max_rel_error"] <= 1e-6, check["batch_sizes"]
    (True, [2, 5])
    """
    worst_abs = worst_rel = 0.0
    with torch.no_grad():
        for example in inputs:
            expected = model(*example.tensors)
            got = run(*example.tensors)
            diff = float((got - expected).abs().max())
            scale = float(expected.abs().max())
            worst_abs = max(worst_abs, diff)
            worst_rel = max(worst_rel, diff / scale if scale > 0 else diff)
    return {
        "max_abs_error": worst_abs,
        "max_rel_error": worst_rel,
        "batch_sizes": [int(example.tensors[0].shape[0]) for example in inputs],
    }


def _norm_of(model: nn.Module) -> str:
    from ..models.deeponet import _DeepONetBase
    from ..models.mlp import _MLPBase

    if isinstance(model, _MLPBase):
        return "Euclidean norms of the input point and the output vector"
    if isinstance(model, _DeepONetBase):
        return (
            "input function: sqrt(mean over sensors of sum over channels of u^2); output: the "
            "Euclidean norm over channels at every query point in the domain (hence also the "
            "function norm over any query points)"
        )
    return "function norm on both sides: sqrt(mean over grid points of sum over channels of u^2)"


def deployment_card(
    model: nn.Module,
    inputs: DeploymentInputs,
    fmt: str,
    file: str,
    check: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON sidecar of a deployed file: certificate, norm, input layout, check results.

    Examples
    --------
    >>> from liponet.models import LipMLP
    >>> model = LipMLP(2, 1, width=8, depth=2, k=2.0).eval()
    >>> card = deployment_card(model, deployment_inputs(model), "onnx", "mlp.onnx")
    >>> card["lipschitz_bound"] <= 2.0, card["inputs"][0]["shape"]
    (True, ['batch', 2])
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; available: {', '.join(FORMATS)}")
    from .. import __version__

    bound = model.lipschitz_bound() if isinstance(model, CertifiedModule) else None
    card: dict[str, Any] = {
        "format": fmt,
        "file": file,
        "model": type(model).__name__,
        "lipschitz_bound": bound if bound is None or math.isfinite(bound) else str(bound),
        "lipschitz_bound_kind": "certified (float64 SVD bounds of the eval weights)"
        if bound is not None
        else None,
        "norm": _norm_of(model),
        "inputs": [
            {"name": name, "shape": shape, "dtype": "float32", "layout": layout}
            for name, shape, layout in zip(
                inputs.names, inputs.shapes(), inputs.layouts, strict=True
            )
        ],
        "output": {"name": "output", "layout": inputs.output, "dtype": "float32"},
        "check": check,
        "liponet_version": __version__,
        "torch_version": torch.__version__,
    }
    if fmt == "pt2":
        card["load"] = "import liponet, then torch.export.load(file).module()"
    card.update(inputs.extra)
    return card

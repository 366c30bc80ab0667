"""Lipschitz DeepONet (branch and trunk LipMLPs) with operator-level certificates, and its twin.

``G(u)(y)_c = sum_k b_{c,k}(u) t_{c,k}(y) + bias_c``: a branch network ``b`` reads the input
function at ``m`` fixed sensors, a trunk network ``t`` reads a query coordinate ``y``. Both are
:class:`~liponet.models.LipMLP` (or :class:`~liponet.models.MLP` for the twin), so every
expressivity variant of the MLPs carries over with its certificate.

The global branch makes the output live in the span of the ``n_basis`` trunk functions of each
channel, a fixed low-rank space. Operators whose outputs are not low-rank (e.g. 2-D
diffusion-reaction from noise initial states: the best rank-32 projection of its outputs keeps a
relative error of 0.93 / 0.80 per field, ``benchmarks/results/deeponet_2d.md``) are out of reach
of any such network, whatever its training. :class:`LipLocalDeepONet` (and its twin
:class:`LocalDeepONet`) reads, for each output point, the input on a local patch around it:
its outputs have full rank.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import spectral_norm_upper
from ..layers import Abs, CertifiedModule, CertifiedSequential, GroupSort, LipLinear, MaxMin, ReLU
from .mlp import MLP, LipMLP, OutputScaleName, box_ball
from .registry import register_model

__all__ = [
    "DeepONet",
    "LipDeepONet",
    "LipLocalDeepONet",
    "LocalDeepONet",
    "PeriodicEmbedding",
    "extract_patches",
]

#: Relative slack on bounds that evaluate a network in float64 (its value at one point).
_EVAL_SLACK = 1.0 + 1e-12

Domain = tuple[Sequence[float], Sequence[float]]

#: Activations whose export computes their own forward with no parameters or mode: a float64
#: evaluation applies them as they are (:func:`_plain64`).
_PLAIN_ACTIVATIONS = (GroupSort, MaxMin, ReLU, Abs)


def _plain64(module: nn.Module, x: Tensor) -> Tensor:
    """``copy.deepcopy(module.export()).double().eval()(x)``, without building the modules.

    The same floats: a :class:`~liponet.layers.LipLinear` exports an ``nn.Linear`` holding its
    eval weight and bias, whose ``double()`` converts them exactly, so its float64 forward is
    ``F.linear(x, W'.double(), b.double())``; a :class:`~liponet.layers.CertifiedSequential` or
    :class:`~liponet.models.LipMLP` exports its parts in order; the activations of
    :data:`_PLAIN_ACTIVATIONS` export their own computation. Any other part is exported, copied
    and converted as before. Certificates evaluate trunk networks this way after every
    optimizer step: building, copying and converting the exported modules cost more than the
    evaluation (0.76 ms of a width-32 :class:`LipDeepONet`'s 0.83 ms cached certificate).
    """
    if isinstance(module, LipMLP | MLP):
        return _plain64(module.net, x)
    if isinstance(module, CertifiedSequential):
        for layer in module.layers:
            x = _plain64(layer, x)
        return x
    if isinstance(module, LipLinear):
        weight = module.effective_weight().to(torch.float64)
        bias = None if module.bias is None else module.bias.detach().to(torch.float64)
        return F.linear(x, weight, bias)
    if isinstance(module, _PLAIN_ACTIVATIONS):
        return module(x)
    return copy.deepcopy(module.export()).double().eval()(x)  # type: ignore[operator]


class PeriodicEmbedding(CertifiedModule):
    """Fourier features of the first coordinate: ``y -> (cos(w_j y_0), sin(w_j y_0), s y_1, ...)``.

    ``w_j = 2 pi j / period`` for ``j = 1..harmonics``; the other coordinates are multiplied by
    ``scale`` (1: unchanged). With ``harmonics=0`` the embedding is the identity. Makes a network
    exactly periodic in ``y_0`` (e.g. x of PDEBench's periodic 1-D problems) and lets it
    represent frequencies up to ``harmonics`` without a large network constant.

    Parameters
    ----------
    harmonics
        Number ``J`` of harmonics (0: identity).
    period
        Period of the first coordinate.
    coord_dim
        Number of coordinates.
    scale
        ``s > 0``: factor of the other coordinates (with ``harmonics > 0``). Up to ``s = Omega``
        it costs nothing in the constant and gives the other coordinates the same slope budget
        as the periodic one.

    Lipschitz constant
    ------------------
    ``max(Omega, s)`` (``Omega`` alone for one coordinate), ``Omega = sqrt(sum_j w_j**2)``, in the
    Euclidean norms: the Jacobian's ``y_0`` column has norm exactly ``Omega`` at every point and
    is orthogonal to the other columns, ``s`` times unit vectors, so the constant is exact (up to
    a 1e-12 relative margin for its float64 evaluation).

    Examples
    --------
    >>> import torch
    >>> emb = PeriodicEmbedding(2, period=1.0, coord_dim=2)
    >>> emb(torch.tensor([[0.25, 3.0]])).shape
    torch.Size([1, 5])
    """

    def __init__(self, harmonics: int, period: float, coord_dim: int, scale: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(harmonics, int) and harmonics >= 0):
            raise ValueError(f"harmonics must be an integer >= 0, got {harmonics!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale}")
        if harmonics > 0 and not (math.isfinite(period) and period > 0):
            raise ValueError(
                f"harmonics > 0 needs a positive period (domain length of the first "
                f"coordinate), got {period}"
            )
        self.harmonics = harmonics
        self.coord_dim = coord_dim
        self.scale = float(scale) if harmonics else 1.0
        self.out_features = coord_dim + 2 * harmonics - (1 if harmonics else 0)
        self.omega = 2 * math.pi / period if harmonics else 0.0
        self.index: Tensor  # the harmonics j = 1..J (integers, exact in any float dtype)
        self.register_buffer("index", torch.arange(1, harmonics + 1).float())

    def forward(self, y: Tensor) -> Tensor:
        """``(..., coord_dim) -> (..., out_features)``."""
        if self.harmonics == 0:
            return y
        theta = (y[..., :1] * self.omega) * self.index  # (..., 1) * (J,) -> (..., J)
        rest = y[..., 1:] * self.scale if self.scale != 1.0 else y[..., 1:]
        return torch.cat([torch.cos(theta), torch.sin(theta), rest], dim=-1)

    def lipschitz_bound(self) -> float:
        """``max(Omega, s)`` (exact)."""
        if self.harmonics == 0:
            return 1.0
        omega = self.omega * math.sqrt(sum(j * j for j in range(1, self.harmonics + 1)))
        omega *= _EVAL_SLACK
        return omega if self.coord_dim == 1 else max(omega, self.scale * _EVAL_SLACK)

    def image(self, lo: Tensor, hi: Tensor) -> tuple[Domain, Tensor, float]:
        """Where the box ``[lo, hi]`` lands: a bounding box, and a ball ``(centre, radius)``.

        Cosines and sines lie in ``[-1, 1]`` with ``cos**2 + sin**2 = 1`` per harmonic, so the
        periodic part lies on the sphere of radius ``sqrt(J)`` about 0.
        """
        if self.harmonics == 0:
            box = (lo.tolist(), hi.tolist())
            return (box, *box_ball(box, self.coord_dim))
        ones = [1.0] * (2 * self.harmonics)
        lo, hi = lo * self.scale, hi * self.scale  # the other coordinates, as embedded
        box = ([-x for x in ones] + lo[1:].tolist(), ones + hi[1:].tolist())
        rest = (hi[1:] - lo[1:]) / 2
        zeros = torch.zeros(2 * self.harmonics, dtype=lo.dtype, device=lo.device)
        centre = torch.cat([zeros, (lo + hi)[1:] / 2])
        radius = math.sqrt(self.harmonics + float(rest.pow(2).sum()))
        return box, centre, radius

    def export(self) -> nn.Module:
        """A copy (already plain torch: no constraint machinery)."""
        return copy.deepcopy(self)


class _DeepONetBase(CertifiedModule):
    """Shared code path of :class:`LipDeepONet` and :class:`DeepONet`."""

    constrained: bool = True
    #: Whether the branch reads the sensor vector divided by ``sqrt(m)`` (its function norm).
    scale_sensors: bool = True

    def __init__(
        self,
        n_sensors: int,
        domain: Domain,
        in_channels: int,
        out_channels: int,
        n_basis: int,
        width: int,
        depth: int,
        activation: str,
        output_scale: OutputScaleName,
        harmonics: int,
        net_kwargs: dict[str, object],
    ) -> None:
        super().__init__()
        for name, value in (
            ("n_sensors", n_sensors),
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("n_basis", n_basis),
        ):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(domain, Sequence) and len(domain) == 2):
            raise ValueError(f"domain must be (lo, hi) coordinate lists, got {domain!r}")
        coord_dim = len(domain[0])
        box_ball(domain, coord_dim)  # validates the box
        self.n_sensors = n_sensors
        self.sensor_scale = 1 / math.sqrt(n_sensors) if self.scale_sensors else 1.0
        self.coord_dim = coord_dim
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_basis = n_basis
        self.domain_lo: Tensor
        self.domain_hi: Tensor
        self.register_buffer("domain_lo", torch.as_tensor(domain[0], dtype=torch.float32))
        self.register_buffer("domain_hi", torch.as_tensor(domain[1], dtype=torch.float32))
        net_cls = LipMLP if self.constrained else MLP
        features = out_channels * n_basis
        self.branch: CertifiedModule = net_cls(
            n_sensors * in_channels,
            features,
            width=width,
            depth=depth,
            activation=activation,
            **net_kwargs,  # type: ignore[arg-type]
        )
        # the trunk's domain from the given numbers, on the CPU (not the buffers: a model built
        # on PyTorch's meta device has buffers without values)
        lo, hi = (torch.as_tensor(b, dtype=torch.float64, device="cpu") for b in domain)
        self.embedding = PeriodicEmbedding(harmonics, float(hi[0] - lo[0]), coord_dim)
        trunk_box, self.centre, self.radius = self.embedding.image(lo, hi)
        trunk_kwargs = {key: value for key, value in net_kwargs.items() if key != "k"}
        self.trunk: CertifiedModule = net_cls(
            self.embedding.out_features,
            features,
            width=width,
            depth=depth,
            activation=activation,
            output_scale=output_scale,
            domain=trunk_box,
            **trunk_kwargs,  # type: ignore[arg-type]
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))

    # ----------------------------------------------------------------------------- forward
    def _sensor_vector(self, branch_input: Tensor) -> Tensor:
        """``(batch, in_channels * n_sensors)`` times ``sensor_scale``."""
        expected = self.in_channels * self.n_sensors
        if branch_input.ndim == 3 and tuple(branch_input.shape[1:]) == (
            self.in_channels,
            self.n_sensors,
        ):
            branch_input = branch_input.reshape(branch_input.shape[0], expected)
        if branch_input.ndim != 2 or branch_input.shape[1] != expected:
            raise ValueError(
                f"branch_input must be (batch, {expected}) or (batch, {self.in_channels}, "
                f"{self.n_sensors}), got {tuple(branch_input.shape)}"
            )
        return branch_input * self.sensor_scale

    def _check_coords(self, coords: Tensor, batch: int) -> None:
        if coords.ndim not in (2, 3) or coords.shape[-1] != self.coord_dim:
            raise ValueError(
                f"coords must be (n_points, {self.coord_dim}) or (batch, n_points, "
                f"{self.coord_dim}), got {tuple(coords.shape)}"
            )
        if coords.ndim == 3 and coords.shape[0] != batch:
            raise ValueError(
                f"coords has batch size {coords.shape[0]} but branch_input has {batch}"
            )

    def branch_coefficients(self, branch_input: Tensor) -> Tensor:
        """Branch outputs ``b(u)`` as ``(batch, out_channels, n_basis)``."""
        b = self.branch(self._sensor_vector(branch_input))
        return b.reshape(b.shape[0], self.out_channels, self.n_basis)

    def forward(self, branch_input: Tensor, coords: Tensor) -> Tensor:
        """Evaluate ``G(u)`` at the query points.

        Parameters
        ----------
        branch_input
            ``u`` at the sensors: ``(batch, in_channels, n_sensors)`` or flattened
            channel-major ``(batch, in_channels * n_sensors)``.
        coords
            Query points ``(n_points, coord_dim)`` shared by the batch, or per sample
            ``(batch, n_points, coord_dim)``.

        Returns
        -------
        Tensor
            ``(batch, out_channels, n_points)`` (a field when the query points are a grid).
        """
        b = self.branch_coefficients(branch_input)  # (batch, c, p)
        self._check_coords(coords, b.shape[0])
        return _combine(b, self.trunk(self.embedding(coords)), self.bias)

    # ------------------------------------------------------------------------ certificates
    def basis_sup_bound(self) -> float:
        """Certified ``T >= sup_y max_c ||t_c(y)||_2`` over the declared coordinate domain.

        ``||t_c(y)|| <= ||t_c(centre)|| + L_net * radius`` for the trunk network ``t_c`` applied
        to the embedded coordinates, over a ball holding the embedded domain: the box's centre
        and half-diagonal (no harmonics), or radius ``sqrt(J + sum of squared half-widths of the
        other coordinates)`` about ``(0, ..., 0, centre of the others)`` (with ``J``
        harmonics). ``t(centre)`` is evaluated by the exported trunk network in float64.
        """
        with torch.no_grad():
            centre = self.centre.to(self.domain_lo.device)
            value = _plain64(self.trunk, centre.unsqueeze(0))[0]
            value = value.reshape(self.out_channels, self.n_basis)
        at_centre = float(torch.linalg.vector_norm(value, dim=1).max())
        return (at_centre + self.trunk.lipschitz_bound() * self.radius) * _EVAL_SLACK

    def branch_lipschitz_bound(self) -> float:
        """Certified constant of ``u -> b(u)``, from liponet's function norm of ``u``.

        The branch network sees ``s v`` for the sensor vector ``v`` (``s = sensor_scale``), and
        ``||v - v'||_2 = sqrt(m) ||u - u'||_fn``, so this constant is the network's Euclidean
        constant times ``s sqrt(m)`` (exactly 1 for :class:`LipDeepONet`, ``s = 1/sqrt(m)``).
        """
        factor = self.sensor_scale * math.sqrt(self.n_sensors)
        return self.branch.lipschitz_bound() * factor

    def lipschitz_bound(self) -> float:
        """Certified constant of ``u -> G(u)`` in liponet's function norms (input-function bound).

        ``L_branch * T`` with ``T`` from :meth:`basis_sup_bound`; holds for query points in the
        declared domain, pointwise in ``y`` and hence for the function norm over any set of
        query points in it.
        """
        return self.branch_lipschitz_bound() * self.basis_sup_bound()

    def trunk_lipschitz_bound(self) -> float:
        """Certified constant of ``y -> t(y)`` in the Euclidean norms (on the domain).

        The embedding's constant times the trunk network's.
        """
        return self.embedding.lipschitz_bound() * self.trunk.lipschitz_bound()

    def coordinate_lipschitz_bound(self, branch_input: Tensor) -> Tensor:
        """Certified constant of ``y -> G(u)(y)`` for each input function of the batch.

        ``max_c ||b_c(u)||_2 * L_trunk`` in the Euclidean norms of ``y`` and of the output
        channels; ``b(u)`` is evaluated by the exported branch in float64.

        Parameters
        ----------
        branch_input
            As in :meth:`forward`.

        Returns
        -------
        Tensor
            ``(batch,)`` float64 bounds (valid for ``y, y'`` in the declared domain).
        """
        v = self._sensor_vector(branch_input.detach()).double()
        plain = copy.deepcopy(self.branch.export()).double().eval()
        with torch.no_grad():
            b = plain(v).reshape(v.shape[0], self.out_channels, self.n_basis)
        norms = torch.linalg.vector_norm(b, dim=2).amax(dim=1)
        return norms * self.trunk_lipschitz_bound() * _EVAL_SLACK

    def in_domain(self, coords: Tensor) -> Tensor:
        """Mask of the query points lying in the declared box (where the certificates hold)."""
        lo = self.domain_lo.to(coords.dtype)
        hi = self.domain_hi.to(coords.dtype)
        return ((coords >= lo) & (coords <= hi)).all(dim=-1)

    def export(self) -> nn.Module:
        """Plain torch modules computing the same eval-mode operator."""
        return _PlainDeepONet(
            self.branch.export(),
            nn.Sequential(self.embedding.export(), self.trunk.export()),
            self.bias.detach().clone(),
            self.sensor_scale,
            self.in_channels,
            self.out_channels,
        )


class _PlainDeepONet(nn.Module):
    """Exported DeepONet: the same forward with plain branch and trunk modules."""

    def __init__(
        self,
        branch: nn.Module,
        trunk: nn.Module,
        bias: Tensor,
        sensor_scale: float,
        in_channels: int,
        out_channels: int,
    ) -> None:
        super().__init__()
        self.branch = branch
        self.trunk = trunk
        self.bias: Tensor
        self.register_buffer("bias", bias)
        self.sensor_scale = sensor_scale
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, branch_input: Tensor, coords: Tensor) -> Tensor:
        """Sensor values and coords -> ``(batch, out_channels, n_points)``."""
        v = branch_input.reshape(branch_input.shape[0], -1) * self.sensor_scale
        b = self.branch(v)
        b = b.reshape(b.shape[0], self.out_channels, -1)
        return _combine(b, self.trunk(coords), self.bias)


def _combine(b: Tensor, t: Tensor, bias: Tensor) -> Tensor:
    """``G(u)(y)_c = sum_k b_{c,k}(u) t_{c,k}(y) + bias_c``.

    ``b`` is ``(batch, c, p)``; ``t`` the trunk output ``(n, c * p)`` (points shared by the
    batch) or ``(batch, n, c * p)``; returns ``(batch, c, n)``.
    """
    t = t.reshape(*t.shape[:-1], b.shape[1], b.shape[2])
    if t.ndim == 3:
        out = torch.einsum("bcp,ncp->bcn", b, t)  # (b,c,p),(n,c,p)->(b,c,n)
    else:
        out = torch.einsum("bcp,bncp->bcn", b, t)  # (b,c,p),(b,n,c,p)->(b,c,n)
    return out + bias.view(1, -1, 1)


@register_model("LipDeepONet")
class LipDeepONet(_DeepONetBase):
    """Lipschitz DeepONet ``G(u)(y)_c = sum_k b_{c,k}(u) t_{c,k}(y) + bias_c`` (split basis).

    Each output channel ``c`` has its own ``n_basis`` branch coefficients and trunk basis
    functions (the *split* basis option); branch and trunk are :class:`LipMLP` networks.

    Parameters
    ----------
    n_sensors
        ``m``: number of sensor points at which ``u`` is sampled (any layout; e.g. the input grid
        or a subsample of it). The same sensors must be used at every call.
    domain
        ``(lo, hi)``: the box of query coordinates (``coord_dim = len(lo)``) the certificates
        cover, e.g. ``([0.0], [1.0])`` for x, ``([0.0, 0.0], [1.0, 2.0])`` for (x, t).
    in_channels, out_channels
        Channels of the input function and of the output function.
    n_basis
        ``p``: basis functions per output channel.
    width, depth
        Hidden width and number of hidden layers of both networks.
    k
        Target constant of the branch network's last layer, i.e. of ``u -> b(u)`` in the
        function norm of ``u`` (hidden layers are 1-Lipschitz).
    activation
        A 1-Lipschitz activation (``groupsort2`` default, ``fullsort``, ``relu``, ``abs``).
    free_last_layer
        Variant (b): unconstrained last layers in branch and trunk (exact norms certified).
    output_scale
        Variant (c) ``"vector"``: a trainable scale per trunk basis function; variant (d)
        ``"auxiliary"``: the trunk multiplied by an auxiliary 1-Lipschitz network of ``y``
        (certified on ``domain``). ``"none"`` by default.
    harmonics
        ``J > 0``: the trunk reads Fourier features of the first coordinate, periodic with the
        domain's length in it (:class:`PeriodicEmbedding`; for periodic problems such as
        PDEBench's 1-D families, where it lifts accuracy a lot). 0 (default): raw coordinates.

    Inputs and outputs
    ------------------
    ``model(branch_input, coords)``: ``branch_input`` is ``(batch, in_channels, n_sensors)`` or
    ``(batch, in_channels * n_sensors)`` (channel-major), ``coords`` is ``(n_points, coord_dim)``
    or ``(batch, n_points, coord_dim)``; the output is ``(batch, out_channels, n_points)``, the
    layout of fields ``(batch, channels, *spatial)`` when the points are a flattened grid.
    Query points may be anywhere (any resolution); the certificates hold inside ``domain``.

    Lipschitz constant
    ------------------
    *In the input function* (``lipschitz_bound()``): the branch is fed the sensor vector ``v``
    divided by ``sqrt(m)``, so its Euclidean input norm is liponet's function norm
    ``||u||_fn = sqrt(mean over sensors of sum over channels of u**2)``. For every ``y`` in the
    domain, ``||G(u)(y) - G(u')(y)||_2 <= max_c ||t_c(y)|| ||b(u) - b(u')||
    <= T L_branch ||u - u'||_fn`` (Cauchy-Schwarz per channel, then summed over channels), with
    ``T >= sup_y max_c ||t_c(y)||`` certified as ``||t_c(centre)|| + L_net * radius`` over a ball
    holding the (embedded) domain (see :meth:`basis_sup_bound`). The
    function norm of the output over any query points in the domain (a mean over the points)
    obeys the same bound, so ``L = L_branch * T`` in liponet's function norms. In the Euclidean
    norm of the raw sensor vector the constant is ``L / sqrt(m)``.
    *In the coordinate* (``coordinate_lipschitz_bound(u)``): ``||G(u)(y) - G(u)(y')||_2 <=
    max_c ||b_c(u)|| L_trunk ||y - y'||_2`` with ``L_trunk`` the embedding's constant times the
    trunk network's. Both come from float64-SVD layer norms and float64
    evaluations (``t(centre)``, ``b(u)``) of the exported eval-mode networks.

    Examples
    --------
    >>> import torch
    >>> model = LipDeepONet(16, domain=([0.0], [1.0]), n_basis=8, width=16, depth=2).eval()
    >>> u, y = torch.rand(4, 1, 16), torch.linspace(0, 1, 32).reshape(-1, 1)
    >>> model(u, y).shape
    torch.Size([4, 1, 32])
    >>> model.lipschitz_bound() <= 1.0 * model.basis_sup_bound() * (1 + 1e-6)
    True
    >>> model.coordinate_lipschitz_bound(u).shape
    torch.Size([4])
    """

    def __init__(
        self,
        n_sensors: int,
        domain: Domain,
        in_channels: int = 1,
        out_channels: int = 1,
        n_basis: int = 32,
        width: int = 64,
        depth: int = 3,
        k: float = 1.0,
        activation: str = "groupsort2",
        free_last_layer: bool = False,
        output_scale: OutputScaleName = "none",
        harmonics: int = 0,
    ) -> None:
        super().__init__(
            n_sensors,
            domain,
            in_channels,
            out_channels,
            n_basis,
            width,
            depth,
            activation,
            output_scale,
            harmonics,
            net_kwargs={"k": k, "free_last_layer": free_last_layer},
        )


@register_model("DeepONet")
class DeepONet(_DeepONetBase):
    """The unconstrained twin of :class:`LipDeepONet`: same code path, :class:`MLP` networks.

    Parameters and layouts as in :class:`LipDeepONet` (no ``k``, no ``free_last_layer``);
    default activation GELU. The branch reads the raw sensor vector (no ``1/sqrt(m)``
    scaling: with it, the default-initialized GELU branch trained far worse, nRMSE 0.68 against
    0.21 on the advection benchmark), so its constant enters the bound times ``sqrt(m)``.

    Lipschitz constant
    ------------------
    The same two certificates, with the branch and trunk constants the products of exact
    (float64 SVD) layer norms and activation slopes: still guaranteed, typically far larger
    than the true constants.

    Examples
    --------
    >>> import torch
    >>> model = DeepONet(16, domain=([0.0, 0.0], [1.0, 1.0]), n_basis=8, width=16)
    >>> model(torch.rand(4, 16), torch.rand(4, 10, 2)).shape
    torch.Size([4, 1, 10])
    """

    constrained = False
    scale_sensors = False

    def __init__(
        self,
        n_sensors: int,
        domain: Domain,
        in_channels: int = 1,
        out_channels: int = 1,
        n_basis: int = 32,
        width: int = 64,
        depth: int = 3,
        activation: str = "gelu",
        output_scale: OutputScaleName = "none",
        harmonics: int = 0,
    ) -> None:
        super().__init__(
            n_sensors,
            domain,
            in_channels,
            out_channels,
            n_basis,
            width,
            depth,
            activation,
            output_scale,
            harmonics,
            net_kwargs={},
        )


# -- local (patch) DeepONets ------------------------------------------------------------------


def extract_patches(u: Tensor, patch: int) -> Tensor:
    """The ``patch**d`` cells around every grid point, zero-padded: one row per point.

    Parameters
    ----------
    u
        ``(batch, channels, *grid)`` with ``d = len(grid)`` spatial dimensions.
    patch
        Odd side length ``p`` of the patch (``1``: the point itself).

    Returns
    -------
    Tensor
        ``(batch, n_points, channels * p**d)``, points in row-major order, features
        channel-major (channel, then offset in row-major order).

    Notes
    -----
    With zero padding each value of ``u`` lands in at most ``p**d`` rows (once per offset), so
    ``sum over points of ||row - row'||**2 <= p**d * sum over cells of ||u - u'||**2``: the map
    has Euclidean norm ``sqrt(p**d)`` (attained by a cell with all its neighbours on the grid).

    Examples
    --------
    >>> import torch
    >>> u = torch.arange(9.0).reshape(1, 1, 3, 3)
    >>> extract_patches(u, 3)[0, 4].reshape(3, 3)  # the centre's patch is the whole grid
    tensor([[0., 1., 2.],
            [3., 4., 5.],
            [6., 7., 8.]])
    >>> extract_patches(u, 3)[0, 0].reshape(3, 3)  # a corner's patch is zero-padded
    tensor([[0., 0., 0.],
            [0., 0., 1.],
            [0., 3., 4.]])
    """
    if not (isinstance(patch, int) and patch >= 1 and patch % 2 == 1):
        raise ValueError(f"patch must be an odd integer >= 1, got {patch!r}")
    if u.ndim < 3:
        raise ValueError(f"u must be (batch, channels, *grid), got {tuple(u.shape)}")
    grid = u.shape[2:]
    r = patch // 2
    padded = F.pad(u, [r, r] * len(grid)) if r else u
    pieces = []
    for offset in itertools.product(range(patch), repeat=len(grid)):
        window = tuple(slice(o, o + n) for o, n in zip(offset, grid, strict=True))
        pieces.append(padded[(slice(None), slice(None), *window)])
    stacked = torch.stack(pieces, dim=2)  # (batch, channels, p**d, *grid)
    return stacked.flatten(3).flatten(1, 2).transpose(1, 2)  # (batch, n_points, channels p**d)


def cell_centres(grid: Sequence[int], domain: Domain) -> Tensor:
    """Cell centres of a ``grid`` on the box ``domain``: ``(n_points, d)`` float64, row-major."""
    lo, hi = domain
    axes = [
        lo_j + (torch.arange(n, dtype=torch.float64) + 0.5) * (hi_j - lo_j) / n
        for n, lo_j, hi_j in zip(grid, lo, hi, strict=True)
    ]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


class _LocalDeepONetBase(CertifiedModule):
    """Shared code path of :class:`LipLocalDeepONet` and :class:`LocalDeepONet`."""

    constrained: bool = True

    def __init__(
        self,
        grid: Sequence[int],
        domain: Domain,
        in_channels: int,
        out_channels: int,
        patch: int,
        n_basis: int,
        width: int,
        depth: int,
        activation: str,
        net_kwargs: dict[str, object],
    ) -> None:
        super().__init__()
        grid = tuple(grid)
        if not grid or not all(isinstance(n, int) and n >= 1 for n in grid):
            raise ValueError(f"grid must be a non-empty tuple of integers >= 1, got {grid!r}")
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("n_basis", n_basis),
        ):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(patch, int) and patch >= 1 and patch % 2 == 1):
            raise ValueError(f"patch must be an odd integer >= 1, got {patch!r}")
        if not (isinstance(domain, Sequence) and len(domain) == 2):
            raise ValueError(f"domain must be (lo, hi) coordinate lists, got {domain!r}")
        box_ball(domain, len(grid))  # validates the box and its dimension
        self.grid = grid
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.patch = patch
        self.n_basis = n_basis
        n_features = in_channels * patch ** len(grid)
        #: The branch reads each patch divided by ``sqrt(patch**d)``.
        self.patch_scale = 1 / math.sqrt(patch ** len(grid))
        self.coords: Tensor
        self.register_buffer("coords", cell_centres(grid, domain).float())
        net_cls = LipMLP if self.constrained else MLP
        features = out_channels * n_basis
        self.branch: CertifiedModule = net_cls(
            n_features,
            features,
            width=width,
            depth=depth,
            activation=activation,
            **net_kwargs,  # type: ignore[arg-type]
        )
        trunk_kwargs = {key: value for key, value in net_kwargs.items() if key != "k"}
        self.trunk: CertifiedModule = net_cls(
            len(grid),
            features,
            width=width,
            depth=depth,
            activation=activation,
            domain=domain,
            **trunk_kwargs,  # type: ignore[arg-type]
        )
        self.skip = nn.Parameter(torch.zeros(out_channels, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def _field(self, u: Tensor) -> Tensor:
        """``(batch, in_channels, *grid)`` (or flattened points) -> the grid layout."""
        expected = (self.in_channels, *self.grid)
        if u.ndim == 3 and tuple(u.shape[1:]) == (self.in_channels, math.prod(self.grid)):
            return u.reshape(u.shape[0], *expected)
        if tuple(u.shape[1:]) != expected:
            raise ValueError(
                f"u must be (batch, {', '.join(map(str, expected))}) or (batch, "
                f"{self.in_channels}, {math.prod(self.grid)}), got {tuple(u.shape)}"
            )
        return u

    def forward(self, u: Tensor) -> Tensor:
        """``G(u)`` at the grid's cell centres.

        Parameters
        ----------
        u
            ``(batch, in_channels, *grid)``, or the points flattened (row-major)
            ``(batch, in_channels, n_points)``.

        Returns
        -------
        Tensor
            ``(batch, out_channels, *grid)`` (or ``(batch, out_channels, n_points)``, the
            layout of ``u``).
        """
        field = self._field(u)
        rows = extract_patches(field, self.patch) * self.patch_scale  # (batch, n, C p**d)
        b = self.branch(rows)  # (batch, n, c * basis)
        t = self.trunk(self.coords)  # (n, c * basis)
        out = _combine_local(b, t, self.out_channels, self.bias)  # (batch, c, n)
        points = field.flatten(2)  # (batch, in, n)
        out = out + torch.einsum("oi,bin->bon", self.skip, points)  # (o,i),(b,i,n)->(b,o,n)
        return out.reshape(u.shape[0], self.out_channels, *u.shape[2:])

    # ------------------------------------------------------------------------ certificates
    def basis_sup_bound(self) -> float:
        """Certified ``T = max over the grid points of max_c ||t_c(y)||_2``.

        The trunk is only ever evaluated at the grid's cell centres, so the maximum over them,
        evaluated by the exported trunk network in float64, is exact.
        """
        with torch.no_grad():
            t = _plain64(self.trunk, self.coords.double())
            t = t.reshape(-1, self.out_channels, self.n_basis)
        return float(torch.linalg.vector_norm(t, dim=2).max()) * _EVAL_SLACK

    def branch_lipschitz_bound(self) -> float:
        """Certified Euclidean constant of the branch network (it reads scaled patches)."""
        return self.branch.lipschitz_bound()

    def skip_bound(self) -> float:
        """Exact (float64 SVD) norm of the pointwise skip matrix."""
        return float(spectral_norm_upper(self.skip))

    def lipschitz_bound(self) -> float:
        """Certified ``||S||_2 + L_branch * T`` in liponet's function norms on the grid.

        See the class docstring for the proof.
        """
        return self.skip_bound() + self.branch_lipschitz_bound() * self.basis_sup_bound()

    def export(self) -> nn.Module:
        """Plain torch modules computing the same eval-mode operator."""
        return _PlainLocalDeepONet(self)


class _PlainLocalDeepONet(nn.Module):
    """Exported local DeepONet: the trunk is evaluated once and stored as a table."""

    def __init__(self, model: _LocalDeepONetBase) -> None:
        super().__init__()
        self.branch = model.branch.export()
        self.basis: Tensor
        self.skip: Tensor
        self.bias: Tensor
        with torch.no_grad():
            self.register_buffer("basis", model.trunk.export()(model.coords).detach().clone())
        self.register_buffer("skip", model.skip.detach().clone())
        self.register_buffer("bias", model.bias.detach().clone())
        self.patch = model.patch
        self.patch_scale = model.patch_scale
        self.grid = model.grid
        self.out_channels = model.out_channels
        self.in_channels = model.in_channels

    def forward(self, u: Tensor) -> Tensor:
        """Same layouts as the model's forward."""
        field = u.reshape(u.shape[0], self.in_channels, *self.grid)
        b = self.branch(extract_patches(field, self.patch) * self.patch_scale)
        out = _combine_local(b, self.basis.to(b.dtype), self.out_channels, self.bias)
        out = out + torch.einsum("oi,bin->bon", self.skip, field.flatten(2))
        return out.reshape(u.shape[0], self.out_channels, *u.shape[2:])


def _combine_local(b: Tensor, t: Tensor, out_channels: int, bias: Tensor) -> Tensor:
    """``sum_k b_{n,c,k} t_{n,c,k} + bias_c``.

    ``b`` is ``(batch, n, c * p)``, ``t`` is ``(n, c * p)``; returns ``(batch, c, n)``.
    """
    b = b.reshape(*b.shape[:-1], out_channels, -1)
    t = t.reshape(t.shape[0], out_channels, -1)
    out = torch.einsum("bncp,ncp->bcn", b, t)  # (b,n,c,p),(n,c,p)->(b,c,n)
    return out + bias.view(1, -1, 1)


@register_model("LipLocalDeepONet")
class LipLocalDeepONet(_LocalDeepONetBase):
    """Lipschitz DeepONet with a local branch: ``G(u)(y) = S u(y) + sum_k b_k(P_y u) t_k(y) + c``.

    For each grid point ``y`` the branch network reads the input on the ``patch**d`` cells
    around ``y`` (``P_y u``, zero-padded, all input channels, divided by ``sqrt(patch**d)``);
    the trunk reads the coordinates of ``y``; ``S`` is a pointwise linear skip
    ``in_channels -> out_channels``. Unlike :class:`LipDeepONet` (whose outputs lie in the span of
    ``n_basis`` trunk functions per channel), its outputs have full rank: it suits local
    operators (time steps of diffusion-reaction, ...) on a fixed grid.

    Parameters
    ----------
    grid
        Spatial shape ``(n_1, ..., n_d)`` of the input and output fields (the model is tied to
        this resolution: the patch is a number of cells).
    domain
        ``(lo, hi)``: the box the grid's cells tile; the trunk reads the cell centres.
    in_channels, out_channels
        Channels of the input and output fields.
    patch
        Odd patch side in cells (3: the point and its neighbours).
    n_basis
        Basis functions per output channel.
    width, depth
        Hidden width and number of hidden layers of branch and trunk.
    k
        Target constant of the branch network's last layer (hidden layers are 1-Lipschitz).
    activation
        A 1-Lipschitz activation (``groupsort2`` default, ``fullsort``, ``relu``, ``abs``).

    Lipschitz constant
    ------------------
    ``||S||_2 + L_branch * T`` from liponet's function norm of the input field into that of the
    output field (means over the grid points), with ``L_branch`` the branch network's certified
    Euclidean constant, ``T = max over grid points y of max_c ||t_c(y)||_2`` (the trunk
    evaluated in float64 at the cell centres, the only points it is evaluated at) and
    ``||S||_2`` the skip's float64-SVD norm. Proof: per point and channel Cauchy-Schwarz gives
    ``||G(u)(y) - G(u')(y) - S(u - u')(y)|| <= T L_branch ||P_y(u - u')|| / sqrt(s)``
    (``s = patch**d``); every cell lies in at most ``s`` zero-padded patches, so summing the
    squares over ``y`` gives at most ``T**2 L_branch**2 sum_y ||(u - u')(y)||**2``; divide by
    the number of points and add the skip's part (triangle inequality). Unlike
    :class:`LipDeepONet`'s, the bound is in the function norm only, not pointwise in ``y``.

    Examples
    --------
    >>> import torch
    >>> model = LipLocalDeepONet((8, 8), ([0.0, 0.0], [1.0, 1.0]), 2, 2, n_basis=4, width=8)
    >>> u = torch.rand(3, 2, 8, 8)
    >>> model.eval()(u).shape
    torch.Size([3, 2, 8, 8])
    >>> bound = model.skip_bound() + model.branch_lipschitz_bound() * model.basis_sup_bound()
    >>> model.lipschitz_bound() == bound
    True
    """

    def __init__(
        self,
        grid: Sequence[int],
        domain: Domain,
        in_channels: int = 1,
        out_channels: int = 1,
        patch: int = 3,
        n_basis: int = 16,
        width: int = 64,
        depth: int = 3,
        k: float = 1.0,
        activation: str = "groupsort2",
    ) -> None:
        super().__init__(
            grid,
            domain,
            in_channels,
            out_channels,
            patch,
            n_basis,
            width,
            depth,
            activation,
            net_kwargs={"k": k},
        )


@register_model("LocalDeepONet")
class LocalDeepONet(_LocalDeepONetBase):
    """The unconstrained twin of :class:`LipLocalDeepONet`: same code path, :class:`MLP` networks.

    Parameters as in :class:`LipLocalDeepONet` (no ``k``); default activation GELU.

    Lipschitz constant
    ------------------
    The same certificate, with the branch constant the product of exact (float64 SVD) layer
    norms and activation slopes: still guaranteed, typically far larger than the true constant.

    Examples
    --------
    >>> import torch
    >>> model = LocalDeepONet((16,), ([0.0], [1.0]), n_basis=4, width=8)
    >>> model(torch.rand(2, 1, 16)).shape
    torch.Size([2, 1, 16])
    """

    constrained = False

    def __init__(
        self,
        grid: Sequence[int],
        domain: Domain,
        in_channels: int = 1,
        out_channels: int = 1,
        patch: int = 3,
        n_basis: int = 16,
        width: int = 64,
        depth: int = 3,
        activation: str = "gelu",
    ) -> None:
        super().__init__(
            grid,
            domain,
            in_channels,
            out_channels,
            patch,
            n_basis,
            width,
            depth,
            activation,
            net_kwargs={},
        )

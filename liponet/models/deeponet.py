"""Lipschitz DeepONet (branch and trunk LipMLPs) with operator-level certificates, and its twin.

``G(u)(y)_c = sum_k b_{c,k}(u) t_{c,k}(y) + bias_c``: a branch network ``b`` reads the input
function at ``m`` fixed sensors, a trunk network ``t`` reads a query coordinate ``y``. Both are
:class:`~liponet.models.LipMLP` (or :class:`~liponet.models.MLP` for the twin), so every
expressivity variant of the MLPs carries over with its certificate.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import CertifiedModule
from .mlp import MLP, LipMLP, OutputScaleName, box_ball
from .registry import register_model

__all__ = ["DeepONet", "LipDeepONet", "PeriodicEmbedding"]

#: Relative slack on bounds that evaluate a network in float64 (its value at one point).
_EVAL_SLACK = 1.0 + 1e-12

Domain = tuple[Sequence[float], Sequence[float]]


class PeriodicEmbedding(CertifiedModule):
    """Fourier features of the first coordinate: ``y -> (cos(w_j y_0), sin(w_j y_0), y_1, ...)``.

    ``w_j = 2 pi j / period`` for ``j = 1..harmonics``; the other coordinates pass unchanged.
    With ``harmonics=0`` the embedding is the identity. Makes a trunk exactly periodic in ``y_0``
    (e.g. x of PDEBench's periodic 1-D problems) and lets it represent frequencies up to
    ``harmonics`` without a large network constant.

    Parameters
    ----------
    harmonics
        Number ``J`` of harmonics (0: identity).
    period
        Period of the first coordinate.
    coord_dim
        Number of coordinates.

    Lipschitz constant
    ------------------
    ``max(Omega, 1)`` (``Omega`` alone for one coordinate), ``Omega = sqrt(sum_j w_j**2)``, in the
    Euclidean norms: the Jacobian's ``y_0`` column has norm exactly ``Omega`` at every point,
    so the constant is exact (up to a 1e-12 relative margin for its float64 evaluation).

    Examples
    --------
    >>> import torch
    >>> emb = PeriodicEmbedding(2, period=1.0, coord_dim=2)
    >>> emb(torch.tensor([[0.25, 3.0]])).shape
    torch.Size([1, 5])
    """

    def __init__(self, harmonics: int, period: float, coord_dim: int) -> None:
        super().__init__()
        if not (isinstance(harmonics, int) and harmonics >= 0):
            raise ValueError(f"harmonics must be an integer >= 0, got {harmonics!r}")
        if harmonics > 0 and not (math.isfinite(period) and period > 0):
            raise ValueError(
                f"harmonics > 0 needs a positive period (domain length of the first "
                f"coordinate), got {period}"
            )
        self.harmonics = harmonics
        self.coord_dim = coord_dim
        self.out_features = coord_dim + 2 * harmonics - (1 if harmonics else 0)
        self.omega = 2 * math.pi / period if harmonics else 0.0
        self.index: Tensor  # the harmonics j = 1..J (integers, exact in any float dtype)
        self.register_buffer("index", torch.arange(1, harmonics + 1).float())

    def forward(self, y: Tensor) -> Tensor:
        """``(..., coord_dim) -> (..., out_features)``."""
        if self.harmonics == 0:
            return y
        theta = (y[..., :1] * self.omega) * self.index  # (..., 1) * (J,) -> (..., J)
        return torch.cat([torch.cos(theta), torch.sin(theta), y[..., 1:]], dim=-1)

    def lipschitz_bound(self) -> float:
        """``max(Omega, 1)`` (exact)."""
        if self.harmonics == 0:
            return 1.0
        omega = self.omega * math.sqrt(sum(j * j for j in range(1, self.harmonics + 1)))
        omega *= _EVAL_SLACK
        return omega if self.coord_dim == 1 else max(omega, 1.0)

    def image(self, lo: Tensor, hi: Tensor) -> tuple[Domain, Tensor, float]:
        """Where the box ``[lo, hi]`` lands: a bounding box, and a ball ``(centre, radius)``.

        Cosines and sines lie in ``[-1, 1]`` with ``cos**2 + sin**2 = 1`` per harmonic, so the
        periodic part lies on the sphere of radius ``sqrt(J)`` about 0.
        """
        if self.harmonics == 0:
            box = (lo.tolist(), hi.tolist())
            return (box, *box_ball(box, self.coord_dim))
        ones = [1.0] * (2 * self.harmonics)
        box = ([-x for x in ones] + lo[1:].tolist(), ones + hi[1:].tolist())
        rest = (hi[1:] - lo[1:]) / 2
        centre = torch.cat([torch.zeros(2 * self.harmonics, dtype=lo.dtype), (lo + hi)[1:] / 2])
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
        lo, hi = self.domain_lo.double(), self.domain_hi.double()
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
        plain = copy.deepcopy(self.trunk.export()).double().eval()
        with torch.no_grad():
            centre = self.centre.to(self.domain_lo.device)
            value = plain(centre.unsqueeze(0))[0].reshape(self.out_channels, self.n_basis)
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

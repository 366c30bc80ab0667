"""Shared property checks for every certified module (imported by the test modules).

The Lipschitz claim is tested as a property, not a training outcome: exact Jacobian norms,
random and gradient-ascent pairs, save/load, train -> eval, export.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from liponet.certify import estimate_lipschitz, jacobian_lipschitz
from liponet.layers import LipLinear

REL = 1e-6


def perturb(model: nn.Module, scale: float = 0.3, seed: int = 5) -> nn.Module:
    """Move every parameter away from its init (so scales and biases are not trivial)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def check_jacobian(model: nn.Module, x: Tensor, norm: str = "euclidean") -> float:
    """Exact local Jacobian norms at ``x`` never exceed the certificate; returns their max."""
    bound = model.lipschitz_bound()
    local = jacobian_lipschitz(model, x, norm)
    assert float(local.max()) <= bound * (1 + REL), (float(local.max()), bound)
    return float(local.max())


def check_attack(model: nn.Module, x: Tensor, norm: str = "euclidean", n_steps: int = 30) -> float:
    """Random and gradient-ascent pairs never exceed the certificate; returns the best ratio."""
    bound = model.lipschitz_bound()
    est = estimate_lipschitz(model, x, norm=norm, n_steps=n_steps)
    assert est <= bound * (1 + REL), (est, bound)
    return est


def check_persistence(make: Callable[[], nn.Module], model: nn.Module, x: Tensor) -> None:
    """Bound and outputs survive save/load into a fresh instance and train -> eval switches."""
    model.eval()
    bound = model.lipschitz_bound()
    out = model(x)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = make().to(dtype=x.dtype)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    fresh.eval()
    torch.testing.assert_close(fresh.lipschitz_bound(), bound, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(fresh(x), out, rtol=1e-10, atol=1e-12)
    model.train()
    model(x)  # a training forward (updates power-iteration state) must not move the certificate
    model.eval()
    torch.testing.assert_close(model.lipschitz_bound(), bound, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(model(x), out, rtol=1e-10, atol=1e-12)


def check_export(model: nn.Module, x: Tensor, atol: float = 1e-6) -> None:
    """``export()`` gives plain modules with the same eval outputs."""
    model.eval()
    plain = model.export()
    for module in plain.modules():  # no constraint machinery left
        assert not isinstance(module, LipLinear), type(module)
        assert not parametrize.is_parametrized(module), type(module)
    torch.testing.assert_close(plain(x), model(x), rtol=0.0, atol=atol)


def check_gradients(model: nn.Module, x: Tensor) -> None:
    """Every trainable parameter receives a finite, non-zero gradient in training mode."""
    model.train()
    model.zero_grad()
    model(x).pow(2).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert bool(torch.isfinite(param.grad).all()), name
        assert float(param.grad.abs().sum()) > 0, name


def check_all(make: Callable[[], nn.Module], x: Tensor, norm: str = "euclidean") -> None:
    """Every property check on a float64 model built by ``make``."""
    model = make().double()
    x = x.double()
    check_gradients(copy.deepcopy(model), x)
    model.eval()
    check_jacobian(model, x, norm)
    check_attack(model, x, norm)
    check_export(model, x)
    check_persistence(make, model, x)

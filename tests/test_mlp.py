import pytest
import torch
from certcheck import check_all, check_jacobian, perturb

from liponet.functional import TARGET_MARGIN
from liponet.models import MLP, LipMLP, available_models, build_model

DOMAIN = ([0.0, 0.0], [1.0, 1.0])

VARIANTS = {
    "a_k1": dict(k=1.0),
    "a_k3": dict(k=3.0),
    "b_free_last": dict(free_last_layer=True),
    "c_vector": dict(output_scale="vector"),
    "d_auxiliary": dict(output_scale="auxiliary", domain=DOMAIN),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lipmlp_variants_are_certified(variant):
    x = torch.rand(6, 2)

    def make():
        torch.manual_seed(0)
        return perturb(LipMLP(2, 2, width=8, depth=2, **VARIANTS[variant]))

    check_all(make, x)


def test_lipmlp_k_is_reached_and_tight_on_one_layer():
    torch.manual_seed(0)
    model = LipMLP(3, 2, width=4, depth=1, k=3.0).double().eval()
    # each of the two layers aims at its target times TARGET_MARGIN (just below it)
    assert model.lipschitz_bound() == pytest.approx(3.0 * TARGET_MARGIN**2, rel=1e-6)
    check_jacobian(model, torch.rand(5, 3, dtype=torch.float64))


def test_unconstrained_twin_is_certified_too():
    x = torch.rand(6, 2)

    def make():
        torch.manual_seed(0)
        return MLP(2, 1, width=8, depth=2)

    check_all(make, x)
    assert make().lipschitz_bound() > 1.0


def test_registry_and_errors():
    assert {"LipMLP", "MLP"} <= set(available_models())
    with pytest.raises(ValueError, match=r"unknown model 'fn0'; available: .*LipMLP"):
        build_model("fn0")
    with pytest.raises(ValueError, match="bad arguments for model 'LipMLP'"):
        build_model("LipMLP", in_features=2, out_features=1, widht=3)
    with pytest.raises(ValueError, match="not 1-Lipschitz"):
        LipMLP(2, 1, activation="gelu")
    with pytest.raises(ValueError, match="needs domain"):
        LipMLP(2, 1, output_scale="auxiliary")
    with pytest.raises(ValueError, match="output_scale"):
        LipMLP(2, 1, output_scale="aux")
    with pytest.raises(ValueError, match="lo <= hi"):
        LipMLP(2, 1, output_scale="auxiliary", domain=([1.0, 0.0], [0.0, 1.0]))
    with pytest.raises(ValueError, match="2 coordinates"):
        LipMLP(2, 1, output_scale="auxiliary", domain=([0.0], [1.0]))
    with pytest.raises(ValueError, match="depth"):
        LipMLP(2, 1, depth=0)

"""constrain(): a converted neuraloperator FNO under a certified budget, fine-tunable."""

import copy

import pytest
import torch
from certcheck import check_all, perturb
from test_interop import CONFIGS, MODES, make
from torch.utils.data import TensorDataset

from liponet.interop import ConstrainedFNO, constrain, from_neuralop, to_neuralop
from liponet.layers import ClippedLinear, FourierBlock

SIZES = {1: (20,), 2: (12, 10)}


def twin_of(dims=1, config="default", seed=0):
    options = dict(CONFIGS[config])
    if options.get("cls") == "TFNO":
        import neuralop.models

        options["cls"] = neuralop.models.TFNO
    return from_neuralop(make(dims, seed=seed, **options))


def fields(dims, n=4, seed=1):
    return torch.randn(n, 2, *SIZES[dims], generator=torch.Generator().manual_seed(seed))


CASES = [(1, c) for c in CONFIGS] + [(2, "default"), (2, "padding-no-grid"), (2, "gated-skip")]


@pytest.mark.parametrize(("dims", "config"), CASES)
def test_default_budget_is_the_twins_certificate_and_keeps_the_function(dims, config):
    twin = twin_of(dims, config)
    model = constrain(twin)
    assert isinstance(model, ConstrainedFNO) and not model.training
    own = twin.lipschitz_bound()
    assert model.k == pytest.approx(own, rel=1e-12)
    assert model.lipschitz_bound() <= own
    assert model.scale == pytest.approx(1.0, abs=2e-5)  # the budget margin only
    x = fields(dims)
    with torch.no_grad():
        want, got = twin(x), model(x)
    assert float((got - want).abs().max() / want.abs().max()) < 1e-4


@pytest.mark.parametrize(("dims", "config"), CASES)
@pytest.mark.parametrize("fraction", [0.3, 1e-3])
def test_budget_below_the_certificate_holds_and_binds(dims, config, fraction):
    twin = twin_of(dims, config)
    k = fraction * twin.lipschitz_bound()
    model = constrain(twin, k=k)
    bound = model.lipschitz_bound()
    assert bound <= k
    assert bound >= 0.99 * k  # every part shrank by the same factor: the budget binds
    assert 0 < model.scale < 1
    # the parts became constrained layers, and none of them keeps a norm above its budget
    for sub in model.modules():
        if isinstance(sub, ClippedLinear):
            n = sub.in_features - sub.free_columns
            norm = float(torch.linalg.matrix_norm(sub.effective_weight()[:, :n].double(), 2))
            assert norm <= sub.radius * (1 + 1e-6)
        if isinstance(sub, FourierBlock):
            assert sub.conv.k is not None and sub.conv.lipschitz_bound() <= sub.conv.k * 1.000001
    x = fields(dims)
    with torch.no_grad():
        assert not torch.allclose(model(x), twin(x), atol=1e-3)  # the projection changed it


def test_budget_above_the_certificate_changes_nothing():
    twin = twin_of(1)
    model = constrain(twin, k=10 * twin.lipschitz_bound())
    assert model.scale > 1
    x = fields(1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x), rtol=0, atol=1e-5)


def test_property_checks_of_a_constrained_twin():
    # exact Jacobians, attacks, export, save/load, train -> eval, gradients (float64)
    def build():
        twin = from_neuralop(make(1, n_layers=2, domain_padding=0.2))
        return constrain(twin, k=0.5)

    check_all(build, fields(1, n=3)[..., :16], norm="function")
    two_d = lambda: constrain(from_neuralop(make(2, n_layers=2)), k=2.0)  # noqa: E731
    check_all(two_d, fields(2, n=1)[..., :8, :6], norm="function")


def test_training_keeps_the_certificate_under_the_budget():
    twin = twin_of(1)
    k = 0.2 * twin.lipschitz_bound()
    model = constrain(twin, k=k).train()
    x, y = fields(1, n=8), 50 * fields(1, n=8, seed=2)[:, :1].repeat(1, 3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)  # large steps push every norm up
    for _ in range(20):
        opt.zero_grad()
        (model(x) - y).square().mean().backward()
        opt.step()
    model.eval()
    assert model.lipschitz_bound() <= k
    assert model.lipschitz_bound() >= 0.5 * k


def test_training_mode_starts_at_the_eval_function():
    # the power iterations start at the exact singular vectors: the first training forward
    # computes (almost) the certified eval function
    model = constrain(twin_of(2), k=1.0)
    x = fields(2)
    with torch.no_grad():
        ev = model.eval()(x)
        tr = model.train()(x)
    assert float((tr - ev).abs().max() / ev.abs().max()) < 1e-3


def test_auto_budget_from_data():
    twin = twin_of(1)
    x = fields(1, n=16)
    data = TensorDataset(x, 1.5 * x[:, :1].repeat(1, 3, 1))  # pair ratio 1.5 * sqrt(3) / ...
    model = constrain(twin, k="auto", data=data)
    from liponet.train import data_constant

    constant = data_constant(data)
    assert constant is not None
    assert model.k == pytest.approx(2.0 * constant.value)
    assert model.lipschitz_bound() <= model.k
    assert constrain(twin, k="auto", data=data, margin=1.0).k == pytest.approx(constant.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k": 0.0}, ValueError, "k must be a positive number"),
        ({"k": float("nan")}, ValueError, "k must be a positive number"),
        ({"k": "tight"}, ValueError, "k must be a positive number, None or 'auto'"),
        ({"k": "auto"}, ValueError, "k='auto' needs data"),
        ({"k": "auto", "data": TensorDataset(torch.ones(1, 2, 8), torch.ones(1, 3, 8))},
         ValueError, "could not be measured"),
        ({"k": "auto", "data": TensorDataset(torch.ones(4, 2, 8), torch.ones(4, 3, 8)),
          "margin": 0.5}, ValueError, "margin must be a finite factor >= 1"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        constrain(twin_of(1), **kwargs)


def test_refuses_other_models():
    from liponet.models import FNO, LipFNO

    with pytest.raises(TypeError, match="expects a twin from from_neuralop, got LipFNO"):
        constrain(LipFNO(2, 3, modes=MODES[1], width=4, depth=1))  # type: ignore[arg-type]
    model = constrain(FNO(2, 3, modes=MODES[1], width=4, depth=2))  # a native twin works too
    assert model.lipschitz_bound() <= model.k


def test_the_twin_is_not_modified():
    twin = twin_of(1)
    before = copy.deepcopy(twin.state_dict())
    perturb(constrain(twin, k=0.1))
    for name, value in twin.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_fine_tunes_with_the_trainer_and_reloads_from_its_checkpoint(tmp_path):
    import neuralop.models
    from trainfixtures import tiny_config

    from liponet.train import Trainer, build_dataset, config_from_dict, load_checkpoint

    torch.manual_seed(0)
    theirs = neuralop.models.FNO(
        n_modes=(6,), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2
    ).eval()
    model = constrain(from_neuralop(theirs), k=1.0)
    config = config_from_dict(
        tiny_config(
            tmp_path,
            model={"name": "FNO", "kwargs": {"in_channels": 1, "out_channels": 1, "modes": [4]}},
            data={"name": "toy-shift", "kwargs": {"n_train": 16, "n_val": 4, "grid": 16}},
        )
    )
    data = build_dataset(config.data)
    before = copy.deepcopy(model.state_dict())
    record = Trainer(config, data.train, data.val, model=model, progress=False).fit()
    assert record["step"] == 8
    model.eval()
    assert model.lipschitz_bound() <= 1.0
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # the checkpoint's weights load into the same construction
    ckpt = load_checkpoint(tmp_path / "last.pt")
    fresh = constrain(from_neuralop(theirs), k=1.0)
    fresh.load_state_dict(ckpt.model_state)
    fresh.eval()
    x = torch.randn(2, 1, 16)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=1e-6)
    assert fresh.lipschitz_bound() == model.lipschitz_bound()


def test_the_benchmark_script_runs_end_to_end(tmp_path):
    import csv

    from trainfixtures import ROOT, run_script

    args = ["--steps", "10", "--tune-steps", "5", "--samples", "24", "--attack-steps", "3"]
    args += ["--attack-samples", "2", "--datasets", "advection"]
    args += ["--out", str(tmp_path), "--cache", str(tmp_path / "data")]
    result = run_script(ROOT / "benchmarks" / "neuralop_finetune.py", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    with (tmp_path / "neuralop_finetune.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == [
        "neuraloperator FNO (trained)",
        "unconstrained twin, fine-tuned",
        "constrained, k = L_cert",
        "constrained, k = 10 L_data",
        "constrained, k = 2 L_data (auto)",
        "constrained, k = 1",
    ]
    for row in rows[2:]:  # every budget held, before and after fine-tuning
        assert float(row["cert_projected"]) <= float(row["k"])
        assert float(row["lower_tuned"]) <= float(row["cert_tuned"]) <= float(row["k"])
    assert (tmp_path / "neuralop_finetune.md").is_file()
    assert (tmp_path / "neuralop_finetune.png").is_file()


@pytest.mark.parametrize("dims", [1, 2])
def test_a_fine_tuned_constrained_model_goes_back_to_neuraloperator_with_its_certificate(dims):
    theirs = make(dims)
    model = constrain(from_neuralop(theirs), k=1.5).train()
    x = fields(dims)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        (model(x) - 1.0).square().mean().backward()
        opt.step()
    model.eval()
    back = to_neuralop(model, theirs).eval()
    with torch.no_grad():
        want = model(x)
        assert float((back(x) - want).abs().max() / want.abs().max()) < 2e-6
    # converting the written-back model again certifies the same constant, within the budget
    again = from_neuralop(back).lipschitz_bound()
    assert again == pytest.approx(model.lipschitz_bound(), rel=1e-5)
    assert again <= 1.5 * (1 + 1e-5)

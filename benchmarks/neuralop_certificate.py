"""Certificates for trained neuraloperator FNOs: liponet's fused bound vs attack vs layer product.

For each case a neuraloperator model (``neuralop.models.FNO`` / ``TFNO`` as a user builds it,
default options unless listed) is trained for a few hundred Adam steps on generated data, then
converted with ``liponet.interop.from_neuralop``. Reported per case:

- ``max_rel_diff``: max |twin - neuraloperator| / max |neuraloperator| on the test inputs;
- ``lower``: gradient-ascent lower bound of the neuraloperator model's own Lipschitz constant
  (``estimate_lipschitz``, function norm, 100 Adam steps on pairs of test inputs);
- ``certificate``: the twin's ``lipschitz_bound()`` (certified; exact fused multiplier norm
  ``max(max_k ||W + R_k||, ||W||)`` per Fourier layer, float64 SVDs);
- ``naive``: the same composition with each Fourier layer bounded by ``max_k ||R_k|| + ||W||``
  (per-layer norms composed, ``liponet.interop.naive_bound``);
- the ratios ``certificate / lower`` and ``naive / certificate``.

Run from the repository root: ``.venv/bin/python benchmarks/neuralop_certificate.py`` (about
2 minutes on one core). Writes ``benchmarks/results/neuralop_certificate.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from _plot import agg_pyplot
from fno_common import RESULTS, markdown_table, write_csv
from neuralop.models import FNO as NeuralopFNO
from neuralop.models import TFNO

from liponet.certify import estimate_lipschitz
from liponet.data import PDEBenchDataset, WellDataset, generate, generate_well
from liponet.interop import from_neuralop, naive_bound


def burgers(cache: Path) -> dict[str, torch.Tensor]:
    path = cache / "burgers_n256_nx128.hdf5"
    if not path.exists():
        generate("burgers", path, n_samples=256, nx=128, nt=11, seed=0, nu=0.01)
    out = {}
    for split in ("train", "test"):
        x, y = PDEBenchDataset(path, split=split, task="step", t_in=0, t_out=-1).to_tensors()
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


def well_advection(cache: Path) -> dict[str, torch.Tensor]:
    root = cache / "well_advection_2d"
    if not (root / "data").exists():
        generate_well(root, n_samples=120, nx=32, nt=6, dims=2, seed=0)
    out = {}
    for split, name in (("train", "train"), ("test", "test")):
        ds = WellDataset(root, split=name, initial_step=1)
        out[f"x_{split}"], out[f"y_{split}"] = ds.to_tensors()
    return out


CASES: list[dict[str, Any]] = [
    {
        "case": "FNO defaults, Burgers 1-D",
        "data": "burgers",
        "cls": NeuralopFNO,
        "kw": {"n_modes": (16,), "hidden_channels": 24, "n_layers": 4},
    },
    {
        "case": "TFNO (Tucker, rank 0.1), Burgers 1-D",
        "data": "burgers",
        "cls": TFNO,
        "kw": {"n_modes": (16,), "hidden_channels": 24, "n_layers": 4},
    },
    {
        "case": "FNO linear lift, no channel MLP, Burgers 1-D",
        "data": "burgers",
        "cls": NeuralopFNO,
        "kw": {
            "n_modes": (16,),
            "hidden_channels": 24,
            "n_layers": 4,
            "lifting_channel_ratio": 0,
            "use_channel_mlp": False,
        },
    },
    {
        "case": "FNO defaults, Well advection 2-D",
        "data": "well",
        "cls": NeuralopFNO,
        "kw": {"n_modes": (12, 12), "hidden_channels": 16, "n_layers": 4},
    },
]


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        loss = (model(x[idx]) - y[idx]).square().mean() / y[idx].square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach().sqrt())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--attack-steps", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path("runs/neuralop_certificate_data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = {"burgers": burgers(args.cache), "well": well_advection(args.cache)}
    rows = []
    for case in CASES:
        d = data[case["data"]]
        torch.manual_seed(0)
        model = case["cls"](
            in_channels=d["x_train"].shape[1], out_channels=d["y_train"].shape[1], **case["kw"]
        )
        t0 = time.process_time()
        rel = train(model, d["x_train"], d["y_train"], args.steps)
        seconds = time.process_time() - t0
        twin = from_neuralop(model)
        x_test = d["x_test"][:32]
        with torch.no_grad():
            theirs, ours = model(x_test), twin(x_test)
            diff = float((ours - theirs).abs().max() / theirs.abs().max())
            test_rel = float(
                (
                    (theirs - d["y_test"][:32]).square().mean() / d["y_test"][:32].square().mean()
                ).sqrt()
            )
        lower = estimate_lipschitz(model, x_test, norm="function", n_steps=args.attack_steps)
        cert = twin.lipschitz_bound()
        naive = naive_bound(twin)
        assert lower <= cert * (1 + 1e-6), (case["case"], lower, cert)
        rows.append(
            {
                "case": case["case"],
                "steps": args.steps,
                "train_rel_l2": rel,
                "test_rel_l2": test_rel,
                "train_cpu_s": seconds,
                "max_rel_diff": diff,
                "lower": lower,
                "certificate": cert,
                "naive": naive,
                "cert_over_lower": cert / lower,
                "naive_over_cert": naive / cert,
            }
        )
        print(rows[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_csv(RESULTS / "neuralop_certificate.csv", rows)
    columns = list(rows[0])
    text = [
        "# Certificates for trained neuraloperator FNOs",
        "",
        f"`benchmarks/neuralop_certificate.py`: neuraloperator 2.0.0 models trained "
        f"{args.steps} Adam steps (lr 1e-3, batch 32, relative MSE), converted by "
        "`liponet.interop.from_neuralop`. `lower`: gradient-ascent lower bound of the "
        f"neuraloperator model's constant ({args.attack_steps} steps, function norm); "
        "`certificate`: the twin's `lipschitz_bound()`; `naive`: per-layer norms composed "
        "(`max_k ||R_k|| + ||W||` per Fourier layer). Burgers: nu = 0.01, u(0) -> u(2), nx 128, "
        "256 trajectories; Well advection: `generate_well`, 2-D 32x32, one step, tracer + "
        "velocity + speed channels.",
        "",
        markdown_table(rows, columns),
        "",
    ]
    (RESULTS / "neuralop_certificate.md").write_text("\n".join(text))
    plt = agg_pyplot()

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.25
    for j, (key, label) in enumerate(
        (("lower", "attack lower bound"), ("certificate", "liponet certificate"),
         ("naive", "layer-product bound"))
    ):  # fmt: skip
        ax.bar([i + (j - 1) * width for i in range(len(rows))], [r[key] for r in rows], width,
               label=label)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["case"].replace(", ", "\n") for r in rows], fontsize=7)
    ax.set_ylabel("Lipschitz constant (function norm)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(RESULTS / "neuralop_certificate.png", dpi=120)


if __name__ == "__main__":
    main()

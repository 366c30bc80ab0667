"""What the warm polar basis (``"orthogonal"``'s training default) costs in checkpoint size.

Every constrained ``"orthogonal"`` :class:`~liponet.layers.LipSpectralConv` keeps the right
singular basis ``V0`` of its multipliers at the last exact training call as module state
(``<layer>.warm_polar._extra_state``: one complex ``(B, q, q)`` tensor, ``B`` independent
multipliers, ``q`` the smaller channel count), so that a resumed run is bitwise the uninterrupted
one. This measures it: a LipFNO of each configuration takes two Adam steps (the basis set, the
optimizer's moments allocated) and is written by :func:`liponet.train.save_checkpoint` with and
without the warm states; the table gives both file sizes, the bytes of the bases, and the model
weights' own bytes for scale.

Configurations: the advection model of ``fno_accuracy.py`` (1-D, 64 modes, width 32, depth 4,
both blocks) and the 2-D and 3-D models of ``performance.py``'s N-d parts (fused block).

Run from the repository root: ``.venv/bin/python benchmarks/warm_polar_state.py`` (a few
seconds). Writes ``benchmarks/results/warm_polar_state.{md,csv,png}``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from _plot import agg_pyplot
from fno_common import RESULTS, markdown_table, write_csv
from torch import Tensor

from liponet.models import LipFNO
from liponet.train import save_checkpoint

#: name -> (grid points per dimension, kept modes, width, LipFNO keyword arguments)
CONFIGS = {
    "1-D advection, default block": ((128,), (64,), 32, {}),
    "1-D advection, fused block": ((128,), (64,), 32, {"block": "fourier"}),
    "2-D (performance.py)": ((64, 64), (12, 12), 32, {"block": "fourier"}),
    "3-D (performance.py)": ((24, 24, 24), (6, 6, 6), 16, {"block": "fourier"}),
}
DEPTH = 4


def measure(name: str, folder: Path) -> dict:
    grid, modes, width, kw = CONFIGS[name]
    torch.manual_seed(0)
    model = LipFNO(1, 1, modes, width=width, depth=DEPTH, normalization="orthogonal", **kw)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(2, 1, *grid)
    model.train()
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    state = model.state_dict()
    warm_keys = [k for k in state if k.endswith("warm_polar._extra_state")]
    bases = [state[k]["v0"] for k in warm_keys]
    assert bases and all(isinstance(v, Tensor) for v in bases)
    basis_bytes = sum(v.numel() * v.element_size() for v in bases)
    weight_bytes = sum(
        t.numel() * t.element_size() for t in state.values() if isinstance(t, Tensor)
    )
    config = {"model": {"name": "LipFNO", "kwargs": {}}}
    with_path = save_checkpoint(folder / "with.pt", model, config=config, optimizer=opt)
    # the same checkpoint as one written before the warm state existed
    stripped = {k: v for k, v in state.items() if k not in warm_keys}
    original = model.state_dict
    model.state_dict = lambda *a, **k: stripped  # type: ignore[method-assign]
    try:
        without_path = save_checkpoint(folder / "without.pt", model, config=config, optimizer=opt)
    finally:
        model.state_dict = original  # type: ignore[method-assign]
    with_size, without_size = with_path.stat().st_size, without_path.stat().st_size
    return {
        "model": name,
        "layers": len(warm_keys),
        "basis_shape": "x".join(map(str, bases[0].shape)),
        "weights_MB": weight_bytes / 1e6,
        "bases_MB": basis_bytes / 1e6,
        "checkpoint_without_MB": without_size / 1e6,
        "checkpoint_with_MB": with_size / 1e6,
        "ratio": with_size / without_size,
    }


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(name, Path(tmp)) for name in CONFIGS]
    for row in rows:
        print(row, flush=True)
    stem = RESULTS / "warm_polar_state"
    write_csv(stem.with_suffix(".csv"), rows)
    text = [
        "# Checkpoint size of the warm polar bases (`orthogonal` training default)",
        "",
        'LipFNO, `normalization="orthogonal"`, depth 4, after two Adam steps; checkpoints by '
        "`liponet.train.save_checkpoint` with the model and Adam state, with and without the "
        "layers' `warm_polar._extra_state` (the basis V0 of each layer, complex64, one q x q "
        "matrix per independent multiplier: `basis_shape` B x q x q). `weights_MB`: the model's "
        "parameters and buffers. `ratio`: checkpoint with / without.",
        "",
        markdown_table(rows, list(rows[0])),
    ]
    stem.with_suffix(".md").write_text("\n".join(text) + "\n")
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = [r["model"] for r in rows]
    pos = range(len(rows))
    ax.barh(
        [p + 0.2 for p in pos], [r["checkpoint_without_MB"] for r in rows], 0.4, label="without"
    )
    ax.barh(
        [p - 0.2 for p in pos], [r["checkpoint_with_MB"] for r in rows], 0.4, label="with bases"
    )
    ax.set_yticks(list(pos), names)
    ax.set_xlabel("checkpoint size (MB, model + Adam state)")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()

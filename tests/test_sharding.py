"""Every sample exactly once per epoch, for any number of ranks and workers, every dataset kind.

The sharding is pure logic (no process group needed): the map-style sampler and the stream's
block split are checked for 1-4 ranks x split sizes x block sizes x workers; real streams are
iterated per rank and through DataLoader workers; one real torchrun (Gloo) run checks the
trainer's count of samples per epoch on an uneven streaming split.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from liponet.data import PDEBenchDataset, PDEBenchStream, generate
from liponet.data.stream import shard_blocks
from liponet.train import GlobalBatchSampler

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

SIZES = (1, 2, 3, 5, 7, 16, 36, 49, 81)
BLOCKS = (1, 3, 4, 16, 64)


def _blocks(n, block_size, seed=0):
    blocks = [range(a, min(a + block_size, n)) for a in range(0, n, block_size)]
    order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed)).tolist()
    return [blocks[i] for i in order]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_stream_block_split_covers_every_item_once(world, workers):
    for n in SIZES:
        for block_size in BLOCKS:
            blocks = _blocks(n, block_size)
            per_rank = []
            seen = []
            for rank in range(world):
                mine = []
                for worker in range(workers):
                    part = shard_blocks(blocks, world, rank, workers, worker)
                    assert all(len(b) for b in part)
                    mine += [i for b in part for i in b]
                per_rank.append(len(mine))
                seen += mine
            assert sorted(seen) == list(range(n)), (n, block_size)
            assert max(per_rank) - min(per_rank) <= 1, (n, block_size, per_rank)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_map_style_sampler_covers_every_sample_once_in_the_same_steps(world):
    for n in SIZES:
        for local in (1, 2, 5):
            batch = local * world
            if n < world:
                continue
            ranks = [
                GlobalBatchSampler(n, batch, rank=r, world_size=world, seed=3) for r in range(world)
            ]
            single = GlobalBatchSampler(n, batch, seed=3)
            for epoch in (0, 1):
                for s in [*ranks, single]:
                    s.set_epoch(epoch)
                parts = [list(s) for s in ranks]
                flat = [i for p in parts for b in p for i in b]
                assert sorted(flat) == list(range(n)), (n, batch)
                # step s of the world is step s of one process (same samples, rank-ordered)
                steps = list(single)
                assert len(steps) == single.steps == ranks[0].steps
                for step, expected in enumerate(steps):
                    got = [i for p in parts if step < len(p) for i in p[step]]
                    assert got == expected
                assert [len(s) for s in ranks] == [len(p) for p in parts]


@pytest.fixture(scope="module")
def adv_file(tmp_path_factory):
    # 45 samples -> PDEBench test split 4, val 4, train 37 (uneven for 2-4 ranks)
    folder = tmp_path_factory.mktemp("adv")
    return generate("advection", folder / "adv.hdf5", n_samples=45, nx=8, nt=3)


def _ids(stream_items, lookup):
    return [lookup[x.numpy().tobytes()] for x, _ in stream_items]


@pytest.mark.parametrize("block_size", [1, 4, 16])
def test_streams_of_every_rank_yield_the_split_once(adv_file, block_size):
    ds = PDEBenchDataset(adv_file, split="train")
    X, _ = ds.to_tensors()
    lookup = {X[i].numpy().tobytes(): i for i in range(len(ds))}
    assert len(lookup) == len(ds) == 37
    for world in (1, 2, 3, 4):
        counts = []
        seen = []
        for rank in range(world):
            stream = PDEBenchStream(
                adv_file, split="train", block_size=block_size, rank=rank, world_size=world
            )
            stream.set_epoch(1)
            ids = _ids(stream, lookup)
            counts.append(len(ids))
            seen += ids
        assert sorted(seen) == list(range(37)), (world, block_size, counts)


def test_streams_through_dataloader_workers_yield_the_split_once(adv_file):
    ds = PDEBenchDataset(adv_file, split="train")
    X, _ = ds.to_tensors()
    lookup = {X[i].numpy().tobytes(): i for i in range(len(ds))}
    seen = []
    for rank in range(3):
        stream = PDEBenchStream(adv_file, split="train", block_size=16, rank=rank, world_size=3)
        loader = DataLoader(stream, batch_size=4, num_workers=2)
        seen += [lookup[x.numpy().tobytes()] for xb, _ in loader for x in xb]
    assert sorted(seen) == list(range(37))


def test_torchrun_streaming_trains_on_every_sample_each_epoch(adv_file, tmp_path):
    n_train = len(PDEBenchDataset(adv_file, split="train"))
    cfg = {
        "model": {
            "name": "LipFNO",
            "kwargs": {"in_channels": 1, "out_channels": 1, "modes": [3], "width": 4, "depth": 1},
        },
        "data": {"name": "pdebench-stream", "path": str(adv_file), "kwargs": {"t_in": 0}},
        "epochs": 2,
        "batch_size": 6,  # 3 ranks x 2
        "device": "cpu",
        "out_dir": str(tmp_path / "run"),
        "dist_timeout_s": 60.0,
    }
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3",
         "-m", "liponet", "train", "--no-progress", "--config", str(tmp_path / "c.yaml")],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    # 37 samples over 3 ranks (13/12/12), local batch 2: 7 steps per epoch on the largest
    assert [r["train_samples"] for r in records] == [n_train, n_train] == [37, 37]
    assert [r["step"] for r in records] == [7, 14]

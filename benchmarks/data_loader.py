"""Loader benchmark: shuffled streaming vs a raw contiguous h5py read of the same bytes, and
peak memory while streaming a >= 2 GB file.

Creates a single-array PDEBench file (``tensor`` (N, nt, nx) float32, contiguous, like the
released 1-D files) under --dir (default /tmp), then alternates, --repeats times:
  raw    : h5py ``ds[a:b]`` over the train split in file order, --batch-size samples per read
  stream : PDEBenchStream(shuffle=True) over the same split, task autoregressive with
           initial_step = nt - 1, i.e. every item carries a whole trajectory (the same bytes),
           collated into batches of --batch-size
and the same pair for the "step" task (2 frames per sample) against raw reads of those frames.
Throughput = file bytes of the selection / seconds (best of the repeats). Peak resident memory
growth is sampled every 5 ms during the first full streaming pass. The file is deleted at the end.
Both sides read from the page cache after the file is written: this measures the loader's own
overhead, the quantity under our control. The machine is shared (2 cores, other jobs running):
single wall timings vary 2x or more, hence interleaved repeats, best-of, and CPU-time ratios.

Run: .venv/bin/python benchmarks/data_loader.py [--size-gb 2.1]; other files are added to the
results with --append, e.g. 100 KB samples (issue 15) stored three ways:
  benchmarks/data_loader.py --append --nx 128 --size-gb 0.5 --storage contiguous
  (the same with --storage chunked, one sample per chunk, and --storage gzip, level 1).
Chunked files (uncompressed, whole samples per chunk) are read by offset like contiguous ones;
gzip files through h5py on both sides; only the main rows are measured for them. Timing starts
once the new file is older than liponet.data.direct.QUIET_SECONDS (finite_check="once" marks
nothing on a file changed more recently).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import threading
import time
from pathlib import Path

import h5py
import numpy as np
from _plot import agg_pyplot

from liponet.data import PDEBenchDataset, PDEBenchStream, direct

RESULTS = Path(__file__).parent / "results"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    def __init__(self) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


#: How the file's ``tensor`` is stored (``--storage``): h5py ``create_dataset`` keywords.
STORAGE = {
    "contiguous": {},
    "chunked": {"chunks": True},  # one sample per chunk, see write_file
    "gzip": {"chunks": True, "compression": "gzip", "compression_opts": 1},
}


def write_file(path: Path, n: int, nt: int, nx: int, storage: str = "contiguous") -> None:
    rng = np.random.default_rng(0)
    create = dict(STORAGE[storage])
    if create.get("chunks"):
        create["chunks"] = (1, nt, nx)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("tensor", shape=(n, nt, nx), dtype="f4", **create)
        for a in range(0, n, 64):
            b = min(a + 64, n)
            ds[a:b] = rng.standard_normal((b - a, nt, nx), dtype=np.float32)
        f["x-coordinate"] = ((np.arange(nx) + 0.5) / nx).astype(np.float32)
        f["t-coordinate"] = (0.01 * np.arange(nt + 1)).astype(np.float32)


def raw_pass(path: Path, indices: range, block: int, frames: list[int] | None) -> int:
    nbytes = 0
    with h5py.File(path, "r") as f:
        ds = f["tensor"]
        for a in range(indices.start, indices.stop, block):
            b = min(a + block, indices.stop)
            if frames is None:
                nbytes += ds[a:b].nbytes
            else:
                nbytes += sum(ds[a:b, t].nbytes for t in frames)
    return nbytes


def stream_pass(stream: PDEBenchStream) -> int:
    nbytes = 0
    for x, y in stream:
        nbytes += x.numel() * 4 + y.numel() * 4
        del x, y  # a training step drops its batch before asking for the next
    return nbytes


def timed(fn, *args):
    """Result, wall seconds and CPU seconds (user + system, this process) of ``fn(*args)``."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t, time.process_time() - c


def plot(rows: list[dict], size: float, growth: float) -> None:
    plt = agg_pyplot()

    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.45 * len(rows)))
    pos = np.arange(len(rows))
    ax.barh(pos + 0.2, [float(r["raw_MB_per_cpu_s"]) for r in rows], 0.4, label="raw h5py read")
    ax.barh(pos - 0.2, [float(r["stream_MB_per_cpu_s"]) for r in rows], 0.4, label="PDEBenchStream")
    ax.set_yticks(
        pos,
        [
            f"{r['sample_KB']} KB {r['storage']}: {r['selection']}\nCPU ratio {r['cpu_ratio']}"
            for r in rows
        ],
        fontsize=7,
    )
    ax.invert_yaxis()
    ax.set_xlabel("MB per CPU second")
    ax.set_title(
        f"Loader throughput (peak RSS growth streaming {size / 1e9:.1f} GB: {growth:.0f} MB)",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(RESULTS / "data_loader.png", dpi=120)


def replot() -> None:
    rows = read_rows()
    with open(RESULTS / "data_loader_memory.csv") as f:
        mem = next(iter(csv.DictReader(f)))
    plot(rows, float(mem["file_GB"]) * 1e9, float(mem["rss_growth_MB"]))


def read_rows() -> list[dict]:
    """The committed rows (rows written before ``sample_KB``/``storage`` existed: 823 KB,
    contiguous, the only file measured then)."""
    path = RESULTS / "data_loader.csv"
    if not path.exists():
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [{"sample_KB": "823", "storage": "contiguous", **r} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.1)
    parser.add_argument("--nx", type=int, default=1024)
    parser.add_argument("--nt", type=int, default=201)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--buffer-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--storage", choices=list(STORAGE), default="contiguous")
    parser.add_argument(
        "--append",
        action="store_true",
        help="add this file's rows to the committed results (replacing rows of the same sample "
        "size and storage) instead of starting them anew; the memory figure is kept",
    )
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the CSVs")
    args = parser.parse_args()
    if args.replot:
        replot()
        return

    sample_bytes = args.nt * args.nx * 4
    n = int(args.size_gb * 1e9 / sample_bytes) + 1
    free = shutil.disk_usage(args.dir).free
    if free < 1.5 * n * sample_bytes:
        raise SystemExit(f"not enough free space in {args.dir}: {free / 1e9:.1f} GB")
    path = Path(args.dir) / f"liponet_bench_{os.getpid()}.hdf5"
    try:
        t0 = time.perf_counter()
        write_file(path, n, args.nt, args.nx, args.storage)
        write_s = time.perf_counter() - t0
        size = path.stat().st_size
        print(f"wrote {path} ({size / 1e9:.2f} GB, {n} samples) in {write_s:.1f} s")
        indices = PDEBenchDataset(path, split="train").indices
        common = dict(
            split="train",
            block_size=args.block_size,
            buffer_size=args.buffer_size,
            batch_size=args.batch_size,
            shuffle=True,
            seed=0,
        )
        whole = dict(task="autoregressive", initial_step=args.nt - 1)  # every frame is read
        full = PDEBenchStream(path, **whole, **common)
        items = PDEBenchStream(path, **whole, **{**common, "batch_size": None})
        step = PDEBenchStream(path, task="step", **common)
        ordered = PDEBenchStream(path, **whole, **{**common, "shuffle": False})
        uniform = PDEBenchStream(path, **whole, **{**common, "block_size": 1})
        every = PDEBenchStream(path, finite_check="every_read", **whole, **common)
        # the h5py read path (used for compressed or group-per-sample files) on the same file
        via_h5py = PDEBenchStream(path, **whole, **common)
        via_h5py.dataset._direct = None
        by_offset = args.storage != "gzip"
        assert full.dataset.reads_by_offset == by_offset and not via_h5py.dataset.reads_by_offset
        # finite_check="once" trusts nothing about a file changed within QUIET_SECONDS
        ctime = path.stat().st_ctime
        time.sleep(max(0.0, ctime + direct.QUIET_SECONDS + 0.1 - time.time()))

        rows = []
        base_rss = rss_bytes()
        with PeakRSS() as mon:  # an untimed pass for the memory figure
            stream_pass(full)
        peak = mon.peak
        batches = f"batches of {args.batch_size}"

        def fresh() -> PDEBenchStream:  # a new stream: nothing verified yet
            return PDEBenchStream(path, **whole, **common)

        cases = (
            (f"full trajectories, {batches}", full, None),
            (f"full trajectories, {batches}, first epoch (finite_check once verifies)", fresh,
             None),
            (f"full trajectories, {batches}, finite_check every_read", every, None),
            ("full trajectories, single items", items, None),
            (f"full trajectories, {batches}, NO shuffle", ordered, None),
            (f"full trajectories, {batches}, block_size 1 (uniform shuffle)", uniform, None),
            (f"step (frames 0 and -1), {batches}", step, [0, args.nt - 1]),
            (f"full trajectories, {batches}, h5py read path", via_h5py, None),
        )  # fmt: skip
        if args.storage == "chunked":  # read by offset like contiguous files: the main rows
            cases = cases[:3] + cases[6:7]
        elif args.storage == "gzip":  # read through h5py: the rows that differ
            cases = cases[:1] + cases[6:7]
        for name, source, frames in cases:
            raw_t, raw_c, stream_t, stream_c = [], [], [], []
            for r in range(args.repeats):
                raw_bytes, t, c = timed(raw_pass, path, indices, args.batch_size, frames)
                raw_t.append(t)
                raw_c.append(c)
                stream = source if isinstance(source, PDEBenchStream) else source()
                stream.set_epoch(r + 1)
                got, t, c = timed(stream_pass, stream)
                stream_t.append(t)
                stream_c.append(c)
                # the stream delivers exactly the bytes the raw pass read (x + y)
                assert got == raw_bytes, (got, raw_bytes)
                print(
                    f"{name}: wall raw {raw_bytes / raw_t[-1] / 1e6:.0f} MB/s, stream "
                    f"{raw_bytes / stream_t[-1] / 1e6:.0f} MB/s; CPU raw "
                    f"{raw_bytes / raw_c[-1] / 1e6:.0f} MB/s, "
                    f"stream {raw_bytes / stream_c[-1] / 1e6:.0f}"
                )
            raw_mbs = raw_bytes / min(raw_t) / 1e6
            stream_mbs = raw_bytes / min(stream_t) / 1e6
            raw_cpu = raw_bytes / min(raw_c) / 1e6
            stream_cpu = raw_bytes / min(stream_c) / 1e6
            rows.append(
                dict(
                    sample_KB=str(round(sample_bytes / 1000)),
                    storage=args.storage,
                    selection=name,
                    bytes=raw_bytes,
                    raw_MBps=round(raw_mbs, 1),
                    stream_MBps=round(stream_mbs, 1),
                    ratio=round(stream_mbs / raw_mbs, 3),
                    raw_MB_per_cpu_s=round(raw_cpu, 1),
                    stream_MB_per_cpu_s=round(stream_cpu, 1),
                    cpu_ratio=round(stream_cpu / raw_cpu, 3),
                )
            )
        growth = (peak - base_rss) / 1e6
    finally:
        path.unlink(missing_ok=True)

    RESULTS.mkdir(exist_ok=True)
    settings = (
        f"file {size / 1e9:.2f} GB ({n} samples x {args.nt} frames x {args.nx} points = "
        f"{sample_bytes / 1000:.0f} KB per sample, float32, {args.storage}) on {args.dir}; "
        f"block_size {args.block_size}, buffer_size {args.buffer_size}, batch_size "
        f"{args.batch_size}, shuffle on; best of {args.repeats}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"{os.cpu_count()} CPUs; both sides read from the page cache"
    )
    runs = [settings]
    if args.append:
        keep = {(r["sample_KB"], r["storage"]) for r in rows}
        rows = [r for r in read_rows() if (r["sample_KB"], r["storage"]) not in keep] + rows
        md = RESULTS / "data_loader.md"
        old = md.read_text().splitlines() if md.exists() else []
        runs = [
            line.removeprefix("Settings: ").removeprefix("- ").rstrip(".")
            for line in old
            if line.startswith(("Settings: ", "- file "))
        ]
        runs = [r for r in runs if f"{sample_bytes / 1000:.0f} KB per sample, float32, "
                f"{args.storage})" not in r] + [settings]  # fmt: skip
        with open(RESULTS / "data_loader_memory.csv") as f:
            mem = next(iter(csv.DictReader(f)))
        size, growth = float(mem["file_GB"]) * 1e9, float(mem["rss_growth_MB"])
    with open(RESULTS / "data_loader.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# Loader benchmark: shuffled stream vs raw h5py read",
        "",
        "Runs (one file each, rows tagged with its sample size and storage):",
        "",
        *[f"- {r}." for r in runs],
        "",
        "| sample KB | storage | selection | raw h5py (MB/s wall) | stream (MB/s wall) | "
        "wall ratio | raw (MB per CPU s) | stream (MB per CPU s) | CPU ratio |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['sample_KB']} | {r['storage']} | {r['selection']} | {r['raw_MBps']} | "
            f"{r['stream_MBps']} | {r['ratio']} | {r['raw_MB_per_cpu_s']} | "
            f"{r['stream_MB_per_cpu_s']} | {r['cpu_ratio']} |"
            for r in rows
        ],
        "",
        "Target: CPU ratio >= 0.833 (time <= 1.2x the raw read; issue 15, 100 KB samples). "
        "Wall ratio = throughput against the raw read in wall time; CPU ratio = the same in CPU "
        "seconds of this process (user + system, so the kernel's page-cache copies count), which "
        "is robust to the other jobs sharing the 2 cores. The raw read is h5py `ds[a:b]` of the "
        "same file in file order (for chunked/gzip files h5py reads the chunks and inflates them); "
        "it checks nothing. Each row is the best of the repeats, each repeat a new epoch.",
        "",
        "Reads: contiguous files, and uncompressed files chunked by whole samples, are read by "
        "file offset (`os.preadv` straight into the batch rows, one call per run of samples "
        "lying back to back in the file; `liponet/data/direct.py`). NaN/inf check: each ~512 KB "
        "just read is checked by one float sum while in cache (exact: a NaN/inf makes the sum "
        "NaN/inf; an overflowing finite sum is rechecked entry by entry). With "
        '`finite_check="once"` (the default) each (sample, frame) found finite is marked with a '
        "digest of the file's identity (device, inode, size, mtime, ctime) and not checked again "
        "while that identity is unchanged (what this assumes: the module docstring); the default "
        "rows are such epochs, the `first epoch` row a fresh stream's epoch (every frame "
        "checked), the `every_read` row the check on every read. The `h5py read path` rows force "
        "the path that compressed or group-per-sample files take (one h5py read per run of "
        "consecutive samples, then the finite check on every read); the gzip rows are such "
        "files, where inflating dominates both sides.",
        "",
        f"Shuffling: blocks of {args.block_size} consecutive samples in a uniformly random order "
        f"per epoch; pools of {-(-args.buffer_size // args.block_size)} consecutive blocks of that "
        f"order ({args.buffer_size} samples) are uniformly permuted; a batch of {args.batch_size} "
        "is a run of that order, so it draws from at most 2 pools. With block_size 1 the order "
        "is a uniform permutation of the whole epoch.",
        "",
        f"Peak resident memory growth while streaming the whole {size / 1e9:.2f} GB file once "
        f"(full trajectories, batches, shuffled): **{growth:.0f} MB** (target < 300 MB; "
        "resident set sampled every 5 ms).",
        "",
        f"Generated by `benchmarks/data_loader.py` (each file deleted after its run; the last "
        f"written in {write_s:.0f} s).",
    ]
    (RESULTS / "data_loader.md").write_text("\n".join(lines) + "\n")
    if not args.append:
        with open(RESULTS / "data_loader_memory.csv", "w", newline="") as f:
            csv.writer(f).writerows(
                [["file_GB", "rss_growth_MB"], [round(size / 1e9, 3), round(growth, 1)]]
            )

    plot(rows, size, growth)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""tune_cpu_allocator: freed CPU memory kept for reuse (glibc), its opt-outs and the CLI's call."""

import os
import subprocess
import sys

import pytest

from liponet.train import tune_cpu_allocator

GLIBC = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")

# Allocate, touch and free a 48 MB block 20 times; print the minor page faults it took.
LOOP = """
import resource, torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(12 * 2**20); del x  # the first allocation maps its pages anyway
before = faults()
for _ in range(20):
    x = torch.ones(12 * 2**20)
    del x
print(faults() - before)
"""


def _faults(prelude: str, **env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", prelude + LOOP],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_tuned_process_reuses_freed_blocks_without_page_faults():
    plain = _faults("")
    tuned = _faults("from liponet.train import tune_cpu_allocator\nassert tune_cpu_allocator()\n")
    # 20 x 48 MB freshly mapped: about 245000 faults of 4 KB pages (12288 per block); reused:
    # at most one block's pages, once
    assert plain > 100_000
    assert tuned <= 2 * 12288 < plain / 5


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_liponet_commands_tune_the_allocator_and_the_variable_turns_it_off():
    prelude = (
        "import contextlib, io\nfrom liponet.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['info'])\n"
    )
    assert _faults(prelude) <= 2 * 12288
    assert _faults(prelude, LIPONET_TUNE_ALLOCATOR="0") > 100_000


def test_opt_outs_change_nothing(monkeypatch):
    monkeypatch.setenv("LIPONET_TUNE_ALLOCATOR", "0")
    assert tune_cpu_allocator() is False
    monkeypatch.delenv("LIPONET_TUNE_ALLOCATOR")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")  # the user's own glibc setting wins
    assert tune_cpu_allocator() is False


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"mmap_threshold": 0}, "mmap_threshold"),
        ({"mmap_threshold": 2**31}, "mmap_threshold"),
        ({"trim_threshold": -1}, "trim_threshold"),
        ({"trim_threshold": 1.5}, "trim_threshold"),
        ({"mmap_threshold": True}, "mmap_threshold"),
    ],
)
def test_bad_thresholds_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        tune_cpu_allocator(**kwargs)

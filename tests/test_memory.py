"""A suite hands the memory a spec freed back to the system before the next spec (evaluation/memory.py)."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from clipos_lab.data import BenchmarkSpec
from clipos_lab.evaluation import suite
from clipos_lab.evaluation.memory import release_freed_memory


def _spec(name, tmp_path):
    return BenchmarkSpec.from_dict({
        "name": name, "id": {"type": "world", "shapes": ["circle", "star"], "n_per_class": 2, "image_size": 32},
        "ood": {"a": {"type": "world", "kind": "background", "n": 2, "image_size": 32}}}, base_dir=tmp_path)


def test_suite_releases_freed_memory_after_every_spec(tiny_backbone, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(suite, "release_freed_memory", lambda: calls.append(1) or True)
    suite.run_suite([_spec("one", tmp_path), _spec("two", tmp_path)], tiny_backbone, methods=["MCM"],
                    cache=tmp_path / "c", progress=False)
    assert len(calls) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"),
                    reason="malloc_trim is glibc's")
def test_release_freed_memory_calls_glibc():
    assert release_freed_memory() is True


LARGE_BLOCK_PROBE = """
import sys, numpy as np
from clipos_lab.evaluation.memory import map_large_blocks
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
if sys.argv[1] == "fixed":
    assert map_large_blocks()
big = np.ones(20 << 17); del big  # 20 MB mapped, then freed: glibc's dynamic threshold rises past 8 MB
block = np.ones(8 << 17); pin = np.ones(20_000)  # an 8 MB block, then a small one above it in the heap
before = rss_mb(); del block
print(before - rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"),
                    reason="mallopt is glibc's")
@pytest.mark.parametrize("mode, returned", [("dynamic", False), ("fixed", True)])
def test_large_blocks_are_returned_when_freed_only_with_the_threshold_fixed(mode, returned):
    """The cause of a suite's peak: a freed 8 MB tensor stays resident under glibc's dynamic threshold."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", LARGE_BLOCK_PROBE, mode], capture_output=True, text=True,
                         check=True).stdout
    assert (float(out) >= 7.5) is returned, out


def test_benchmark_cells_fix_the_threshold(tiny_backbone, tmp_path, monkeypatch):
    from clipos_lab.evaluation import job, runner

    calls = []
    monkeypatch.setattr(runner, "map_large_blocks", lambda: calls.append("run") or True)
    monkeypatch.setattr(job, "map_large_blocks", lambda: calls.append("cell") or True)
    runner.run_benchmark(_spec("one", tmp_path), tiny_backbone, methods=["MCM"], shots=[1], seeds=[1],
                         cache=tmp_path / "c", progress=False)
    assert calls[0] == "run" and "cell" in calls

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

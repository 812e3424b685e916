"""Shots first: the runner draws the few-shot set from the file list and encodes only the drawn images."""

from __future__ import annotations

import json

import numpy as np
from helpers import CountingBackbone
from PIL import Image

from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec
from clipos_lab.evaluation.runner import run_benchmark

SPEC = {
    "name": "pool-world",
    "id": {"type": "world", "kind": "object", "shapes": ["circle", "square"], "n_per_class": 4, "seed": 5},
    # a big training pool: 2 x 40 images, of which only the drawn shots may be encoded
    "id_train": {"type": "world", "kind": "object", "shapes": ["circle", "square"], "n_per_class": 40, "seed": 9},
    "ood": {"textures": {"type": "world", "kind": "background", "n": 4, "seed": 7}},
}


def test_only_drawn_shots_are_encoded_and_draws_share_cached_images(tiny_backbone, tmp_path):
    counting = CountingBackbone(tiny_backbone)
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    out = tmp_path / "out"
    run_benchmark(spec, counting, methods=["MCM", "CoOp"], shots=(1, 2), seeds=(1, 2),
                  prompt=PromptConfig(epochs=1, progress=False), out_dir=out, cache=tmp_path / "cache",
                  progress=False)
    drawn = set()
    for path in (out / "manifests").glob("*.json"):
        drawn |= {row["id"] for row in json.loads(path.read_text())}
    test_images = 2 * 4 + 4
    assert counting.images == test_images + len(drawn)  # the 80-image pool is never encoded as a whole
    assert len(drawn) < 1 * 2 * 2 + 2 * 2 * 2  # seeds and shot counts overlap: shared images encoded once
    counting.images = 0
    run_benchmark(spec, counting, methods=["CoOp"], shots=(2,), seeds=(3,),
                  prompt=PromptConfig(epochs=1, progress=False), cache=tmp_path / "cache", progress=False)
    assert counting.images <= 4  # a new seed encodes at most its own 4 shots, nothing else


def test_unreadable_drawn_image_is_redrawn_and_reported_in_metrics(tiny_backbone, tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        for split in ("train", "test"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    for i in range(3):  # every cat training image but one is broken, so any draw meets a broken one
        if i != 1:
            (root / "train" / "cat" / f"{i}.png").write_bytes(b"broken")
    spec = BenchmarkSpec.from_dict({"name": "broken", "id": {"type": "folder", "root": str(root / "test")},
                                    "id_train": {"type": "folder", "root": str(root / "train")},
                                    "ood": {"other": {"type": "folder", "root": str(root / "test")}}},
                                   base_dir=tmp_path)
    out = tmp_path / "out"
    for attempt in ("cold", "warm"):
        run_benchmark(spec, tiny_backbone, methods=["CoOp"], shots=(1,), seeds=(1, 2, 3),
                      prompt=PromptConfig(epochs=1, progress=False), out_dir=out, cache=tmp_path / "cache",
                      progress=False, overwrite=True)
        for seed in (1, 2, 3):
            manifest = json.loads((out / "manifests" / f"shots1-seed{seed}.json").read_text())
            assert [m["id"] for m in manifest if m["class"] == "cat"] == ["cat/1.png"]
        skipped = json.loads((out / "metrics.json").read_text())["skipped_images"]
        assert {s["id"] for s in skipped["id_train"]} <= {"cat/0.png", "cat/2.png"}, attempt
        assert skipped["id_train"], attempt  # also when every row comes from the cache


def test_zero_shot_only_runs_draw_and_encode_no_training_image(tiny_backbone, tmp_path):
    counting = CountingBackbone(tiny_backbone)
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    run_benchmark(spec, counting, methods=["MCM", "GL-MCM"], out_dir=tmp_path / "out", cache=tmp_path / "cache",
                  progress=False)  # what `python -m clipos_lab evaluate` runs: default shots and seeds
    assert counting.images == 2 * 4 + 4  # the ID test set and the OOD set, nothing of the pool
    assert not list((tmp_path / "out" / "manifests").glob("*.json"))

"""Small builders the test files share (imported as ``from helpers import ...``; pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(root: Path, n: int = 3, classes=("cat", "dog"), size: int = 24) -> Path:
    """An image folder: ``n`` seeded noise PNGs of ``size`` px per class sub-folder."""
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


class CountingBackbone:
    """Wraps a backbone and counts its image encoder's calls and the images it saw."""

    def __init__(self, inner):
        self.inner, self.calls, self.images = inner, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_images(self, images, **kwargs):
        self.calls += 1
        self.images += len(images)
        return self.inner.encode_images(images, **kwargs)


def clipn_full_and_resumed(backbone, tmp_path):
    """A 4-step CLIPN no-tower run in one sitting and the same run split in two sittings (one thread: bit-identical
    float sums); returns both encoders and the config."""
    import torch

    from clipos_lab.clipn import train as T

    cfg = T.ClipnConfig(steps=4, batch_size=16, pool_size=40, val_size=20, eval_every=2, checkpoint_every=2,
                        warmup_steps=1, threads=1)
    threads = torch.get_num_threads()
    try:
        full = T.train(backbone, tmp_path / "full", cfg, progress=False, cache=tmp_path / "cache")
        T.train(backbone, tmp_path / "split", cfg, progress=False, max_steps_this_sitting=2, cache=tmp_path / "cache")
        resumed = T.train(backbone, tmp_path / "split", None, progress=False, cache=tmp_path / "cache")
    finally:
        torch.set_num_threads(threads)
    return full, resumed, cfg


GRID_SHAPES = ["circle", "square", "star", "ring", "arrow", "cross"]
GRID_ANOMALY = {"type": "world", "products": ["circle", "star"], "defects": ["stain", "hole"], "n_train": 3,
                "n_good": 4, "n_per_defect": 2, "seed": 9}


def grid_options():
    """A small benchmark grid for comparing executors: MCM, CoOp and CLIP-OS, 1 and 2 shots, seeds 1 and 2."""
    from clipos_lab.clipos.prompts import PromptConfig

    return {"methods": ["MCM", "CoOp", "CLIP-OS"], "shots": (1, 2), "seeds": (1, 2),
            "prompt": PromptConfig(n_ctx=4, epochs=3, progress=False)}


def split_specs(tmp_path, n=2):
    """A reduced split suite: ``n`` class splits of six shapes, three ID and three near-OOD each."""
    from clipos_lab.data import BenchmarkSpec

    specs = []
    for k in range(n):
        ids, ood = GRID_SHAPES[k: k + 3], [s for s in GRID_SHAPES if s not in GRID_SHAPES[k: k + 3]]
        specs.append(BenchmarkSpec.from_dict({
            "name": f"split{k + 1}",
            "id": {"type": "world", "kind": "object", "shapes": ids, "n_per_class": 4, "seed": 5 + k},
            "id_train": {"type": "world", "kind": "object", "shapes": ids, "n_per_class": 4, "seed": 50 + k},
            "ood": {"near-ood": {"type": "world", "kind": "object", "shapes": ood, "n_per_class": 3, "seed": 9}}},
            base_dir=tmp_path))
    return specs


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file of a run, byte for byte, except what records when it ran: run.json's time stamp and the
    timings in metrics.json (compared without them)."""
    import json

    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "run.json":
            data = p.read_bytes()
            if p.name == "metrics.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "timings"}).encode()
            out[p.relative_to(folder).as_posix()] = data
    return out


def local_grid_run(backbone, tmp_path, anomaly: dict | None = None):
    """The reference for executor comparisons: :func:`split_specs`' suite (and with ``anomaly``, an anomaly run of
    :data:`GRID_ANOMALY` with those options) run here on one thread, with a freshly loaded backbone as every
    worker starts with (CLIP-OS's loss reads the hand-written class embeddings, and one first encoded in a batch
    of another size, by an earlier test, differs in the last bit: docs/cluster.md). Returns the specs and the
    suite's files."""
    import torch

    from clipos_lab.backbone import Backbone
    from clipos_lab.evaluation.suite import run_suite

    specs = split_specs(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fresh = Backbone.load(**backbone.load_args)
        run_suite(specs, fresh, out_dir=tmp_path / "local", cache=tmp_path / "cache", progress=False,
                  **grid_options())
        if anomaly is not None:
            from clipos_lab.anomaly import run_anomaly
            from clipos_lab.anomaly.data import AnomalySpec

            run_anomaly(AnomalySpec("tiny-anomaly", GRID_ANOMALY), Backbone.load(**backbone.load_args),
                        out_dir=tmp_path / "anomaly-local", **anomaly)
    finally:
        torch.set_num_threads(before)
    return specs, files_of(tmp_path / "local")

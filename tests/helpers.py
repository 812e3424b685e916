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

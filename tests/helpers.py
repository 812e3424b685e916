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

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


# ---------------------------------------------------------------------------------------------------- notebooks
POCKET2_TOWER = Path(__file__).resolve().parent.parent / "assets" / "clipn" / "pocket2-clipn.safetensors"


def without_the_pocket2_tower(stem: str, params: dict) -> dict:
    """Test-only, while pocket v2's CLIPN no tower (``POCKET2_TOWER``) is not shipped: the notebook parameters that
    keep CLIPN off pocket v2 (06 on v1, CLIPN out of ``METHODS``); nothing once the tower is there or when the run
    is on v1 anyway. Remove it (and its uses in test_notebooks.py, test_browser.py) once the tower is committed."""
    if POCKET2_TOWER.is_file() or params.get("MODEL") == "pocket":
        return {}
    if stem == "06_saying_no":
        return {"MODEL": "pocket"}
    methods = [m.strip() for m in str(params.get("METHODS", "")).split(",") if m.strip()]
    return {"METHODS": ",".join(m for m in methods if m != "CLIPN")} if "CLIPN" in methods else {}

"""Pocket v2's defect world as anomaly categories: one held-out drawing per category, drawn like a part under an
inspection camera (:func:`clipos_lab.pocket.products2.render_drawn_product`), with world v2's defects (stained,
scratched, torn, punctured) and exact masks.

A category is a class noun of the drawings pack; its product is the first of the class's drawings in ``split``
(by file) on which every asked defect can be drawn visibly. Normal training images (the pool few-shot runs draw
from) and the test set use disjoint render indices of the same stream.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image

from ..data.datasets import Sample
from ..data.errors import DataError
from ..pocket import products2 as P2
from ..pocket.pack import DRAWINGS_DIR, DrawingsPack
from ..pocket.world2 import STATES, WORLD2_VERSION
from .dataset import GOOD, AnomalyCategory, AnomalyDataset

_STRIDE = 100_000


@lru_cache(maxsize=2)
def _pack(folder: str) -> DrawingsPack:
    return DrawingsPack(folder)


def product_drawing(pack: DrawingsPack, noun: str, split: str = "eval", defects: Sequence[str] = STATES) -> dict:
    """The drawing a category shows: the first of the class in ``split`` (by file) that takes every defect."""
    records = sorted((r for r in pack.select(split) if r["class"] == noun), key=lambda r: r["file"])
    if not records:
        raise DataError(f"no drawing of class {noun!r} in split {split!r} of the drawings pack")
    for record in records:
        try:
            for state in defects:
                P2.render_drawn_product(pack, record, 0, 0, state)
        except ValueError:
            continue
        return record
    raise DataError(f"no drawing of class {noun!r} in split {split!r} shows every defect {list(defects)} visibly")


class DrawnProductDataset(AnomalyDataset):
    """``n_good`` normal pictures of one drawn product and ``n_per_defect`` of each defect; image ``j`` of group
    ``g`` (0 = good, then the defects in order) is render index ``offset + g * 1e5 + j`` of ``seed``."""

    def __init__(self, noun: str, record: dict, pack: DrawingsPack, n_good: int, n_per_defect: int = 0,
                 defects: Sequence[str] = STATES, seed: int = 0, image_size: int = 112, offset: int = 0,
                 name: str | None = None):
        for key, value in (("n_good", n_good), ("n_per_defect", n_per_defect)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _STRIDE:
                raise DataError(f"{key}={value!r}: give an integer from 0 to {_STRIDE - 1}")
        self.category, self.record, self.pack = noun, record, pack
        self.seed, self.image_size = int(seed), int(image_size)
        defects = list(defects) if n_per_defect else []
        self._render_args: dict[str, tuple[str | None, int]] = {}
        samples = []
        for g, (defect, n) in enumerate([(None, n_good)] + [(d, n_per_defect) for d in defects]):
            for j in range(n):
                sid = f"{defect or GOOD}/{offset + j:06d}"
                self._render_args[sid] = (defect, offset + g * _STRIDE + j)
                samples.append(Sample(sid, g))
        super().__init__(name or f"drawn-{noun}-seed{seed}", [GOOD, *defects], samples)

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        defect, index = self._render_args[self.samples[i].id]
        return P2.render_drawn_product(self.pack, self.record, self.seed, index, defect, self.image_size)

    def _load_sample(self, sample: Sample) -> Image.Image:
        defect, index = self._render_args[sample.id]
        return Image.fromarray(P2.render_drawn_product(self.pack, self.record, self.seed, index, defect,
                                                       self.image_size)[0])

    def _fingerprint_sample(self, sample: Sample) -> str:
        defect, index = self._render_args[sample.id]
        return (f"{sample.id}|drawn-products-{WORLD2_VERSION}|drawing={self.record['sprite_sha256']}"
                f"|defect={defect}|seed={self.seed}|size={self.image_size}|index={index}")

    def _has_mask(self, sample: Sample) -> bool:
        return True

    def _load_mask(self, i: int) -> np.ndarray:
        return self.render(i)[1]

    def _image_shape(self, i: int) -> tuple[int, int]:
        return (self.image_size, self.image_size)


def drawn_category(noun: str, n_train: int = 16, n_good: int = 40, n_per_defect: int = 15,
                   defects: Sequence[str] = STATES, seed: int = 0, image_size: int = 112, split: str = "eval",
                   pack: str = str(DRAWINGS_DIR)) -> AnomalyCategory:
    """One drawn product: ``n_train`` normal training images and a test set (disjoint render indices)."""
    bad = [d for d in defects if d not in STATES]
    if bad or len(set(defects)) != len(defects) or not defects:
        raise DataError(f"bad defects {list(defects)}: give distinct names from {list(STATES)}")
    p = _pack(pack)
    record = product_drawing(p, noun, split, defects)
    train = DrawnProductDataset(noun, record, p, n_train, 0, defects, seed, image_size, offset=0,
                                name=f"drawn-{noun}-seed{seed}-train")
    test = DrawnProductDataset(noun, record, p, n_good, n_per_defect, defects, seed, image_size, offset=50_000,
                               name=f"drawn-{noun}-seed{seed}-test")
    return AnomalyCategory(noun, train, test)


__all__ = ["DrawnProductDataset", "drawn_category", "product_drawing"]

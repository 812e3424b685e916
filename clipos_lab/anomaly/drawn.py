"""Pocket v2's defect world as anomaly categories: one held-out drawing per category, drawn like a part under an
inspection camera (:func:`clipos_lab.pocket.products2.render_drawn_product`), with world v2's defects (stained,
scratched, torn, punctured) and exact masks.

A category is a class noun of the drawings pack; its product is the first of the class's drawings in ``split``
(by file) on which every asked defect can be drawn visibly. Normal training images (the pool few-shot runs draw
from) and the test set use disjoint render indices of the same stream.
"""

from __future__ import annotations

from typing import Sequence

from ..data.errors import DataError
from ..pocket import products2 as P2
from ..pocket.pack import DRAWINGS_DIR, DrawingsPack, load_pack
from ..pocket.world2 import STATES, WORLD2_VERSION
from .dataset import AnomalyCategory, RenderedDefects


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


class DrawnProductDataset(RenderedDefects):
    """``n_good`` normal pictures of one drawn product and ``n_per_defect`` of each defect (render indices:
    :class:`~.dataset.RenderedDefects`)."""

    def __init__(self, noun: str, record: dict, pack: DrawingsPack, n_good: int, n_per_defect: int = 0,
                 defects: Sequence[str] = STATES, seed: int = 0, image_size: int = 112, offset: int = 0,
                 name: str | None = None):
        self.record, self.pack = record, pack
        super().__init__(noun, n_good, n_per_defect, defects, seed, image_size, offset,
                         name or f"drawn-{noun}-seed{seed}")

    def _draw(self, defect: str | None, index: int):
        return P2.render_drawn_product(self.pack, self.record, self.seed, index, defect, self.image_size)

    def _fingerprint_parts(self) -> str:
        return f"drawn-products-{WORLD2_VERSION}|drawing={self.record['sprite_sha256']}"


def drawn_category(noun: str, n_train: int = 16, n_good: int = 40, n_per_defect: int = 15,
                   defects: Sequence[str] = STATES, seed: int = 0, image_size: int = 112, split: str = "eval",
                   pack: str = str(DRAWINGS_DIR)) -> AnomalyCategory:
    """One drawn product: ``n_train`` normal training images and a test set (disjoint render indices)."""
    bad = [d for d in defects if d not in STATES]
    if bad or len(set(defects)) != len(defects) or not defects:
        raise DataError(f"bad defects {list(defects)}: give distinct names from {list(STATES)}")
    p = load_pack(pack)
    record = product_drawing(p, noun, split, defects)
    train = DrawnProductDataset(noun, record, p, n_train, 0, defects, seed, image_size, offset=0,
                                name=f"drawn-{noun}-seed{seed}-train")
    test = DrawnProductDataset(noun, record, p, n_good, n_per_defect, defects, seed, image_size, offset=50_000,
                               name=f"drawn-{noun}-seed{seed}-test")
    return AnomalyCategory(noun, train, test)


__all__ = ["DrawnProductDataset", "drawn_category", "product_drawing"]

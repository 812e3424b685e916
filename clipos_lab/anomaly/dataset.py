"""The shape every anomaly source gives: per product, normal training images and a labelled test set with masks.

:class:`AnomalyDataset` labels images ``0 = good`` and ``1..`` per defect type and gives each defective image's
pixel mask as the model sees it; :class:`AnomalyCategory` pairs a product's training pool with its test set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ..data.datasets import ImageDataset, Sample
from ..data.errors import DataError
from .masks import fit_mask

GOOD = "good"


class AnomalyDataset(ImageDataset):
    """Images labelled ``0`` (good) or ``1..`` (a defect type, ``classnames[label]``), with optional masks.

    :meth:`mask` gives a defect's pixel mask as the model sees the image (resized and centre-cropped like the
    backbone's preprocessing, see :func:`fit_mask`); good images have an empty mask.
    """

    category: str = ""

    @property
    def is_anomalous(self) -> np.ndarray:
        return self.labels > 0

    @property
    def defect_types(self) -> list[str]:
        return [c for c in self.classnames if c != GOOD]

    @property
    def has_masks(self) -> bool:
        """True when every defective image has a mask (pixel metrics need all of them)."""
        return all(self._has_mask(s) for s in self.samples if s.label > 0)

    def mask(self, i: int, size: int | None = None) -> np.ndarray | None:
        """Boolean mask of image ``i`` (``size`` x ``size`` when given), or ``None`` when it has none."""
        sample = self.samples[i]
        if sample.label == 0:
            full = np.zeros(self._image_shape(i), dtype=bool)
        else:
            if not self._has_mask(sample):
                return None
            full = self._load_mask(i)
        return full if size is None else fit_mask(full, size)

    def masks(self, size: int) -> np.ndarray | None:
        """``(N, size, size)`` masks of every image, or ``None`` unless every defective image has one."""
        if not self.has_masks:
            return None
        return np.stack([self.mask(i, size) for i in range(len(self))])

    def select(self, ids) -> "AnomalyDataset":
        """A copy holding the samples ``ids``, in that order (as a token bank's ``select_ids``)."""
        where = {s.id: s for s in self.samples}
        out = copy.copy(self)
        out.samples = [where[i] for i in ids]
        return out

    def without(self, ids) -> "AnomalyDataset":
        """A copy without the samples ``ids`` (e.g. images that could not be read); masks stay with their images."""
        drop = set(ids)
        out = copy.copy(self)
        out.samples = [s for s in self.samples if s.id not in drop]
        return out

    # subclasses
    def _has_mask(self, sample: Sample) -> bool:
        raise NotImplementedError

    def _load_mask(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def _image_shape(self, i: int) -> tuple[int, int]:
        raise NotImplementedError


RENDER_STRIDE = 100_000


class RenderedDefects(AnomalyDataset):
    """Generated pictures of one product: ``n_good`` normal ones and ``n_per_defect`` of each defect, each a pure
    function of ``(seed, index)``, with its exact mask. Image ``j`` of group ``g`` (0 = good, then the defects in
    order) is render index ``offset + g * 1e5 + j``, so a set never changes when another grows; train and test
    sets use different offsets. Subclasses draw (:meth:`_draw`) and say what a picture depends on
    (:meth:`_fingerprint_parts`)."""

    def __init__(self, category: str, n_good: int, n_per_defect: int, defects: Sequence[str], seed: int,
                 image_size: int, offset: int, name: str):
        for key, value in (("n_good", n_good), ("n_per_defect", n_per_defect)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < RENDER_STRIDE:
                raise DataError(f"{key}={value!r}: give an integer from 0 to {RENDER_STRIDE - 1}")
        self.category, self.seed, self.image_size, self.offset = category, int(seed), int(image_size), int(offset)
        defects = list(defects) if n_per_defect else []
        self._render_args: dict[str, tuple[str | None, int]] = {}
        samples = []
        for g, (defect, n) in enumerate([(None, n_good)] + [(d, n_per_defect) for d in defects]):
            for j in range(n):
                sid = f"{defect or GOOD}/{offset + j:06d}"
                self._render_args[sid] = (defect, offset + g * RENDER_STRIDE + j)
                samples.append(Sample(sid, g))
        super().__init__(name, [GOOD, *defects], samples)

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``i`` as ``(image (S, S, 3) uint8, defect mask (S, S) bool)``."""
        return self._draw(*self._render_args[self.samples[i].id])

    def _draw(self, defect: str | None, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _fingerprint_parts(self) -> str:
        raise NotImplementedError

    def _load_sample(self, sample: Sample) -> Image.Image:
        return Image.fromarray(self._draw(*self._render_args[sample.id])[0])

    def _fingerprint_sample(self, sample: Sample) -> str:
        defect, index = self._render_args[sample.id]
        return (f"{sample.id}|{self._fingerprint_parts()}|defect={defect}|seed={self.seed}|size={self.image_size}"
                f"|index={index}")

    def _has_mask(self, sample: Sample) -> bool:
        return True

    def _load_mask(self, i: int) -> np.ndarray:
        return self.render(i)[1]

    def _image_shape(self, i: int) -> tuple[int, int]:
        return (self.image_size, self.image_size)


@dataclass
class AnomalyCategory:
    """One product: its normal training pool and its test set."""

    name: str
    train: AnomalyDataset
    test: AnomalyDataset

"""The shape every anomaly source gives: per product, normal training images and a labelled test set with masks.

:class:`AnomalyDataset` labels images ``0 = good`` and ``1..`` per defect type and gives each defective image's
pixel mask as the model sees it; :class:`AnomalyCategory` pairs a product's training pool with its test set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..data.datasets import ImageDataset, Sample
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


@dataclass
class AnomalyCategory:
    """One product: its normal training pool and its test set."""

    name: str
    train: AnomalyDataset
    test: AnomalyDataset

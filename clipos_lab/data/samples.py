"""The dataset contract: a named list of labelled samples that loads images on demand.

Every dataset is a list of :class:`Sample` (a stable id and a label) plus a way to load sample ``i`` as an RGB
PIL image. Ids are what few-shot manifests record, so a run can be replayed on exactly the same images, and
:meth:`ImageDataset.fingerprint` is what the feature cache hashes, so editing an image invalidates its features.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from .errors import DataError
from .images import LOADER_VERSION, load_image


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: ``id`` is unique within the dataset and stable across runs."""

    id: str
    label: int
    path: str | None = None


class ImageDataset:
    """A named list of labelled samples that loads images on demand.

    The base class serves samples that have a ``path``; subclasses override :meth:`_load_sample` (and
    :meth:`_fingerprint_sample`) for images that are generated or come out of an archive.
    """

    def __init__(self, name: str, classnames: Sequence[str], samples: Sequence[Sample]):
        self.name, self.classnames, self.samples = name, list(classnames), list(samples)
        ids = [s.id for s in self.samples]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise DataError(f"dataset '{name}' has duplicate sample ids {dupes}: ids must be unique")
        bad = [s.id for s in self.samples if not 0 <= s.label < len(self.classnames)][:5]
        if bad:
            raise DataError(f"dataset '{name}': samples {bad} have labels outside 0..{len(self.classnames) - 1}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return self.load(i), self.samples[i].label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={len(self.classnames)})"

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def load(self, i: int) -> Image.Image:
        return self._load_sample(self.samples[i])

    def object_region(self, i: int):
        """Where image ``i``'s object is, for localisation checks: a pixel box ``(x0, y0, x1, y1)`` or an ``(H, W)``
        coverage mask in [0, 1] where a generated dataset knows it (the pocket worlds), else None (no ground truth)."""
        return None

    def fingerprint(self) -> list[str]:
        """One string per sample that changes when its content may have changed (the feature cache hashes it)."""
        return [self._fingerprint_sample(s) for s in self.samples]

    def subset(self, indices: Iterable[int], name: str | None = None) -> ImageDataset:
        """The samples at ``indices`` (in that order), same classes and loader, as a dataset of the same type."""
        picked = [self.samples[int(i)] for i in indices]
        new = copy.copy(self)
        ImageDataset.__init__(new, name or self.name, self.classnames, picked)  # re-checks unique ids
        return new

    def _load_sample(self, sample: Sample) -> Image.Image:
        if sample.path is None:
            raise NotImplementedError(f"{type(self).__name__} must load samples without a path itself")
        return load_image(sample.path)

    def _fingerprint_sample(self, sample: Sample) -> str:
        if sample.path is None:
            raise NotImplementedError(f"{type(self).__name__} must fingerprint samples without a path itself")
        try:
            st = os.stat(sample.path)
        except OSError as err:  # dangling link, symlink loop, unreadable: loading will skip and count it
            return f"{sample.id}|unreadable|{err.errno}"
        return f"{sample.id}|{st.st_size}|{st.st_mtime_ns}|{LOADER_VERSION}"

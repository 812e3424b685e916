"""Datasets: a named list of labelled samples that loads images on demand; the procedural pocket world here.

The contract (:class:`Sample`, :class:`ImageDataset`) lives in :mod:`.samples`, image folders and lists in
:mod:`.folders`, torchvision sets in :mod:`.torchvision_sets`; all are importable from here, as before.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image

from ..pocket import world as W
from .errors import DataError
from .folders import FolderDataset, ListDataset, image_files, parse_classnames, walk_image_files, write_folder
from .samples import ImageDataset, Sample
from .torchvision_sets import TORCHVISION_DATASETS, TorchvisionDataset

ID_SHAPES: tuple[str, ...] = W.SHAPES[:6]
NEAR_OOD_SHAPES: tuple[str, ...] = W.SHAPES[6:]


def world_version() -> str:
    """The pocket world's picture version (:data:`clipos_lab.pocket.world.WORLD_VERSION`): cached features of
    generated images go stale when the generator's pictures change, not when its file's comments do."""
    return W.WORLD_VERSION


_STREAM_STRIDE = 1_000_000


class WorldDataset(ImageDataset):
    """The procedural world as a dataset, rendered on demand.

    ``kind="object"``: ``n_per_class`` images of each shape, labelled by its position in ``shapes``.
    ``kind="background"`` / ``"clutter"``: ``n_per_class`` images in a single class named after the kind (OOD
    sets need no labels); clutter scatters small copies of ``shapes``.
    Object image ``j`` of a shape is stream index ``SHAPES.index(shape) * 1e6 + j`` of ``seed``, so an image does
    not change when other shapes or ``n_per_class`` do, and two shapes never share colours or positions.
    """

    def __init__(self, kind: str = "object", shapes: Sequence[str] = ID_SHAPES, n_per_class: int = 50,
                 seed: int = 0, image_size: int = 64, name: str | None = None):
        if kind not in W.SCENES:
            raise DataError(f"unknown world kind {kind!r}; choose from {list(W.SCENES)}")
        shapes = [shapes] if isinstance(shapes, str) else shapes
        if (not isinstance(shapes, (list, tuple)) or not shapes or len(set(shapes)) != len(shapes)
                or not set(shapes) <= set(W.SHAPES)):
            raise DataError(f"bad world shapes {shapes!r}: give a list of distinct names from the known shapes "
                            f"{list(W.SHAPES)}")
        if not 1 <= n_per_class < _STREAM_STRIDE:
            raise DataError(f"n_per_class={n_per_class}: use 1 to {_STREAM_STRIDE - 1} images")
        try:
            self._world = W.World(image_size, shapes=shapes)
        except ValueError as e:
            raise DataError(str(e)) from e
        self.kind, self.shapes, self.seed, self.image_size = kind, tuple(shapes), int(seed), image_size
        self._streams: dict[str, tuple[str | None, int]] = {}  # sample id -> (shape, stream index)
        samples = []
        for label, shape in enumerate(shapes if kind == "object" else [None]):
            for j in range(n_per_class):
                sid = f"{shape or kind}/{j:05d}"
                self._streams[sid] = (shape, j if shape is None else W.SHAPES.index(shape) * _STREAM_STRIDE + j)
                samples.append(Sample(sid, label))
        super().__init__(name or f"world-{kind}-seed{seed}", shapes if kind == "object" else [kind], samples)

    def scene(self, i: int) -> W.Scene:
        """What image ``i`` shows, including object boxes (ground truth for localisation checks)."""
        return self._render(self.samples[i])[1]

    def object_region(self, i: int):
        """The object's box (v1 knows boxes; localisation checks count patches whose centre lies inside it)."""
        s = self.scene(i)
        return s.objects[0].box if s.kind == "object" and s.objects else None

    def _render(self, sample: Sample):
        shape, index = self._streams[sample.id]
        return self._world.render(self.seed, index, kind=self.kind, shape=shape)

    def _load_sample(self, sample: Sample) -> Image.Image:
        return Image.fromarray(self._render(sample)[0])

    def _fingerprint_sample(self, sample: Sample) -> str:
        shape, index = self._streams[sample.id]
        return (f"{sample.id}|world-{world_version()}|kind={self.kind}|shape={shape}|shapes={','.join(self.shapes)}"
                f"|seed={self.seed}|size={self.image_size}|index={index}")



__all__ = ["ID_SHAPES", "NEAR_OOD_SHAPES", "TORCHVISION_DATASETS", "FolderDataset", "ImageDataset", "ListDataset",
           "Sample", "TorchvisionDataset", "WorldDataset", "image_files", "parse_classnames", "walk_image_files",
           "world_version", "write_folder"]

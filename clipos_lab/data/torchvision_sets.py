"""torchvision datasets already on disk (the paper's benchmarks), read lazily and never downloaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

from .errors import DataError
from .folders import parse_classnames
from .images import load_image
from .samples import ImageDataset, Sample

# ----------------------------------------------------------------------------------------------------------------
# torchvision datasets (the paper's benchmarks), never downloaded here

# name -> (torchvision class, splits, default split)
TORCHVISION_DATASETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "cifar10": ("CIFAR10", ("train", "test"), "test"),
    "cifar100": ("CIFAR100", ("train", "test"), "test"),
    "dtd": ("DTD", ("train", "val", "test"), "test"),
    "places365": ("Places365", ("train-standard", "val"), "val"),
}


class TorchvisionDataset(ImageDataset):
    """A torchvision dataset already on disk under ``root``, wrapped so images are read only when asked for.

    Nothing is ever downloaded: the machines this runs on have no internet, and a silent multi-GB download in
    the middle of a benchmark is worse than a clear error. Places365 uses the 256px images (``small=True``),
    which is more than a CLIP input needs.
    """

    def __init__(self, dataset: str, root: str | os.PathLike, split: str | None = None, name: str | None = None,
                 classnames_file: str | os.PathLike | None = None):
        if dataset not in TORCHVISION_DATASETS:
            raise DataError(f"unknown torchvision dataset {dataset!r}; known: {list(TORCHVISION_DATASETS)}")
        cls_name, splits, default_split = TORCHVISION_DATASETS[dataset]
        split = split or default_split
        if split not in splits:
            raise DataError(f"unknown split {split!r} for {dataset}; choose from {list(splits)}")
        self.dataset, self.root, self.split = dataset, Path(root).expanduser(), split
        import torchvision.datasets as tvd  # imported here: torchvision is slow to import and often not needed

        kwargs = {"train": split == "train"} if dataset.startswith("cifar") else {"split": split}
        if dataset == "places365":
            kwargs["small"] = True
        try:
            self._tv = getattr(tvd, cls_name)(str(self.root), download=False, **kwargs)
            if dataset == "places365" and not os.path.isdir(self._tv.images_dir):
                raise FileNotFoundError(f"no image folder {self._tv.images_dir}")
        except (RuntimeError, OSError) as e:
            call = ", ".join([repr(str(self.root))] + [f"{k}={v!r}" for k, v in kwargs.items()])
            raise DataError(f"dataset '{dataset}' not found at {self.root}: download it with "
                            f"torchvision.datasets.{cls_name}({call}, download=True) on a machine with internet, "
                            f"or point `root` at an existing copy ({e})") from e
        labels = getattr(self._tv, "targets", None)
        if labels is None:
            labels = self._tv._labels  # DTD keeps its labels and files private
        if hasattr(self._tv, "imgs"):
            paths = [str(p) for p, _ in self._tv.imgs]
        elif hasattr(self._tv, "_image_files"):
            paths = [str(p) for p in self._tv._image_files]
        else:
            paths = [None] * len(labels)
        prefix = f"{dataset}/{split}"
        self._index = {f"{prefix}/{i:06d}": i for i in range(len(labels))}
        samples = [Sample(f"{prefix}/{i:06d}", int(y), p) for i, (y, p) in enumerate(zip(labels, paths))]
        # archive-backed sets (CIFAR) have no file per image: fingerprint them by their archive files
        self._archive_token = "" if paths[:1] != [None] else _folder_token(self.root / self._tv.base_folder)
        mapping = {}
        if classnames_file is not None:
            path = Path(classnames_file).expanduser()
            if not path.is_file():
                raise DataError(f"classnames file {path} does not exist: fix `classnames_file` or remove it")
            mapping = parse_classnames(path)
            unknown = sorted(set(mapping) - set(self._tv.classes))
            if unknown:
                raise DataError(f"classnames file {path} names classes that {dataset} does not have: {unknown[:5]}")
        names = [mapping.get(c, _pretty_class(c)) for c in self._tv.classes]
        super().__init__(name or prefix.replace("/", "-"), names, samples)

    def _load_sample(self, sample: Sample) -> Image.Image:
        if sample.path is not None:
            return load_image(sample.path)
        return Image.fromarray(self._tv.data[self._index[sample.id]]).convert("RGB")

    def _fingerprint_sample(self, sample: Sample) -> str:
        if sample.path is not None:
            return super()._fingerprint_sample(sample)
        return f"{sample.id}|{self._archive_token}"


def _pretty_class(name: str) -> str:
    """'maple_tree' -> 'maple tree', Places365's '/a/apartment_building/outdoor' -> 'apartment building outdoor'."""
    if name.startswith("/"):
        name = " ".join(name.split("/")[2:])
    return name.replace("_", " ")


def _folder_token(folder: Path) -> str:
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()]
    return hashlib.sha1(repr(stats).encode()).hexdigest()[:16]

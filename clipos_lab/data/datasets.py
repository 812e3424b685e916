"""Datasets: a named list of labelled samples that loads images on demand.

Every dataset is a list of :class:`Sample` (a stable id and a label) plus a way to load sample ``i`` as an RGB
PIL image. Ids are what few-shot manifests record, so a run can be replayed on exactly the same images, and
:meth:`ImageDataset.fingerprint` is what the feature cache hashes, so editing an image invalidates its features.
Three sources: image folders, the procedural pocket world, and torchvision sets already on disk.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from ..files import atomic_path
from ..pocket import world as W
from .errors import DataError, UnreadableFolderWarning
from .images import IMAGE_EXTENSIONS, LOADER_VERSION, load_image

ID_SHAPES: tuple[str, ...] = W.SHAPES[:6]
NEAR_OOD_SHAPES: tuple[str, ...] = W.SHAPES[6:]


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


class FolderDataset(ImageDataset):
    """An ImageFolder tree ``root/<class>/<images>`` (nested folders allowed), classes in sorted folder order.

    Folder names are often not what a text prompt should say ("n01440764", "maple_tree"), so an optional
    classnames file maps folders to pretty names: JSON ``{"folder": "pretty name"}`` or text lines
    ``folder pretty name``. Without ``classnames_file``, ``root/classnames.json`` or ``root/classnames.txt``
    is used when present; unmapped folders keep their folder name.
    """

    def __init__(self, root: str | os.PathLike, name: str | None = None,
                 classnames_file: str | os.PathLike | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"dataset folder {self.root} {what}: point `root` at a folder of class folders")
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DataError(f"no class folders in {self.root}: expected the layout root/<class>/<image files>")
        mapping = self._read_classnames(classnames_file, folders)
        samples = []
        self.unreadable_folders: list[str] = []  # sub-folders that could not be listed (their images are missing)
        for label, folder in enumerate(folders):
            files, problems = _walk_image_files(self.root / folder)
            if (self.root / folder).as_posix() in problems:
                raise DataError(f"cannot read class folder {self.root / folder} "
                                f"({problems[(self.root / folder).as_posix()]}): fix its permissions or remove it")
            self.unreadable_folders += [f"{p} ({why})" for p, why in problems.items()]
            if not files:
                raise DataError(f"empty class '{folder}' at {self.root / folder}: add images or remove the folder")
            samples += [Sample(f.relative_to(self.root).as_posix(), label, str(f)) for f in files]
        if self.unreadable_folders:
            warnings.warn(f"dataset {self.root}: {len(self.unreadable_folders)} sub-folders were not read, so any "
                          f"images in them are left out: {'; '.join(self.unreadable_folders[:5])}",
                          UnreadableFolderWarning, stacklevel=2)
        super().__init__(name or self.root.resolve().name, [mapping.get(f, f) for f in folders], samples)

    def _read_classnames(self, classnames_file, folders: list[str]) -> dict[str, str]:
        if classnames_file is None:
            found = [p for p in (self.root / "classnames.json", self.root / "classnames.txt") if p.is_file()]
            if len(found) > 1:
                raise DataError(f"both {found[0]} and {found[1]} exist: keep one, or pass classnames_file")
            if not found:
                return {}
            classnames_file = found[0]
        path = Path(classnames_file).expanduser()
        if not path.is_file():
            raise DataError(f"classnames file {path} does not exist: fix `classnames_file` or remove it")
        mapping = _parse_classnames(path)
        unknown = sorted(set(mapping) - set(folders))
        if unknown:
            raise DataError(f"classnames file {path} names folders that are not in {self.root}: {unknown}; "
                            f"the class folders are {folders}")
        return mapping


class ListDataset(ImageDataset):
    """Images named by a list file of ``<path relative to root> [<label>]`` lines, as OpenOOD ships its benchmarks.

    Labels index ``classnames_file`` (``<key> <pretty name>`` lines, in label order); without labels every image
    is in one class named after the dataset (OOD sets need no labels).
    """

    def __init__(self, root: str | os.PathLike, list_file: str | os.PathLike, name: str | None = None,
                 classnames_file: str | os.PathLike | None = None):
        self.root, list_path = Path(root).expanduser(), Path(list_file).expanduser()
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist: point `root` at the folder the list's paths "
                            "are relative to")
        if not list_path.is_file():
            raise DataError(f"image list {list_path} does not exist: point `list` at a file of '<path> <label>' lines")
        rows = [line.split() for line in list_path.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        classnames = list(_parse_classnames(Path(classnames_file).expanduser()).values()) if classnames_file \
            else [name or list_path.stem]
        samples = []
        for k, parts in enumerate(rows):
            label = int(parts[1]) if len(parts) > 1 and classnames_file else 0
            rel = Path(parts[0])
            if rel.is_absolute() or ".." in rel.parts:
                raise DataError(f"{list_path}:{k + 1}: path {parts[0]!r} must stay inside {self.root}")
            samples.append(Sample(rel.as_posix(), label, str(self.root / rel)))
        if not samples:
            raise DataError(f"image list {list_path} names no image")
        super().__init__(name or list_path.stem, classnames, samples)


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``; sub-folders that could not be read are reported (UnreadableFolderWarning)."""
    files, problems = _walk_image_files(folder)
    if problems:
        warnings.warn(f"{len(problems)} folders under {folder} were not read, so any images in them are left out: "
                      + "; ".join(f"{p} ({why})" for p, why in list(problems.items())[:5]), UnreadableFolderWarning,
                      stacklevel=2)
    return files


def _walk_image_files(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """Image files under ``folder`` (sorted, hidden entries left out, linked folders followed once) and the
    sub-folders that could not be listed, with why: nothing is left out without being reported."""
    files, problems = [], {}
    seen = set()

    def onerror(err: OSError) -> None:
        problems[Path(err.filename).as_posix()] = err.strerror or type(err).__name__

    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a linked folder that leads back to one already read: a loop or a duplicate
            problems[Path(dirpath).as_posix()] = f"a link back to {real}, already read"
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames)
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return files, problems


def _parse_classnames(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"classnames file {path} is not valid JSON: {e}") from e
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise DataError(f'classnames file {path} must be a JSON object {{"folder": "pretty name", ...}}')
        return mapping
    mapping = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected 'folder pretty name', got {line.strip()!r}")
        mapping[parts[0]] = parts[1].strip()
    return mapping


@functools.cache
def _world_version() -> str:
    """A hash of ``world.py``: cached features of generated images go stale when the generator changes."""
    return hashlib.sha1(Path(W.__file__).read_bytes()).hexdigest()[:12]


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

    def _render(self, sample: Sample):
        shape, index = self._streams[sample.id]
        return self._world.render(self.seed, index, kind=self.kind, shape=shape)

    def _load_sample(self, sample: Sample) -> Image.Image:
        return Image.fromarray(self._render(sample)[0])

    def _fingerprint_sample(self, sample: Sample) -> str:
        shape, index = self._streams[sample.id]
        return (f"{sample.id}|world-{_world_version()}|kind={self.kind}|shape={shape}|shapes={','.join(self.shapes)}"
                f"|seed={self.seed}|size={self.image_size}|index={index}")


def write_folder(dataset: ImageDataset, root: str | os.PathLike) -> Path:
    """Write ``dataset`` as an ImageFolder of PNGs that :class:`FolderDataset` reads back with the same classes.

    Class folders are ``<label>_<name>`` (zero-padded label) so sorted folder order is label order, and a
    ``classnames.json`` restores the exact class names.
    """
    root = Path(root).expanduser()
    if root.exists() and any(root.iterdir()):
        raise DataError(f"write_folder: {root} is not empty; choose a new folder or delete the old one")
    counts = np.bincount(dataset.labels, minlength=len(dataset.classnames))
    if (counts == 0).any():
        empty = [dataset.classnames[k] for k in np.flatnonzero(counts == 0)]
        raise DataError(f"write_folder: classes {empty} of '{dataset.name}' have no samples, and an image folder "
                        f"cannot hold an empty class; take a subset of the classes first")
    width = len(str(len(dataset.classnames) - 1))
    folders = [f"{k:0{width}d}_{_safe_name(c)}" for k, c in enumerate(dataset.classnames)]
    written = set()
    for i, sample in enumerate(dataset.samples):
        folder = folders[sample.label]
        stem = sample.id.removeprefix(f"{dataset.classnames[sample.label]}/")
        stem = _safe_name(os.path.splitext(stem)[0] if stem.lower().endswith(IMAGE_EXTENSIONS) else stem)
        target = root / folder / f"{stem}.png"
        if target in written:
            raise DataError(f"write_folder: sample ids of '{dataset.name}' collide as file name {target}")
        written.add(target)
        with atomic_path(target) as tmp:
            dataset.load(i).save(tmp, format="PNG")
    with atomic_path(root / "classnames.json") as tmp:
        tmp.write_text(json.dumps(dict(zip(folders, dataset.classnames)), indent=1), encoding="utf-8")
    return root


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.replace("/", "__")).strip(".") or "_"


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
            mapping = _parse_classnames(path)
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



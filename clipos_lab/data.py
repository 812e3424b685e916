"""Datasets for few-shot OOD benchmarks: image folders, the procedural world, torchvision sets, YAML specs.

Every dataset is a list of :class:`Sample` (a stable id and a label) plus a way to load sample ``i`` as an RGB
PIL image. Ids are what few-shot manifests record, so a run can be replayed on exactly the same images, and
:meth:`ImageDataset.fingerprint` is what the feature cache hashes, so editing an image invalidates its features.

Benchmarks are YAML files naming one ID set and several OOD sets (see ``assets/benchmarks/world-default.yaml``).
:meth:`BenchmarkSpec.validate` builds every entry up front, so a typo or a missing folder fails in a second
instead of after the ID set has been encoded.
"""

from __future__ import annotations

import copy
import csv
import functools
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import yaml
from PIL import Image

from . import world as W
from .atomic import atomic_path
from .paths import ASSETS, _expand

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ID_SHAPES: tuple[str, ...] = W.SHAPES[:6]
NEAR_OOD_SHAPES: tuple[str, ...] = W.SHAPES[6:]


class DataError(ValueError):
    """A dataset, file or benchmark spec that cannot be used as given; the message says what to change."""


class ImageLoadError(DataError):
    """An image file that cannot be decoded; ``path`` names it so a caller can skip or report it."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):  # keeps the exception picklable across DataLoader workers
        return type(self), (self.path, self.reason)


# ----------------------------------------------------------------------------------------------------------------
# Images

# what Pillow raises for files that are corrupt, truncated or not images (plugins are not consistent about it)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return it as RGB.

    Decoding happens here (not lazily on first pixel access) so a broken file fails with its name, at load time.
    Transparent pixels become white, the usual background of product and clip-art images.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(img)
    except Image.DecompressionBombError as e:
        raise ImageLoadError(path, f"{e} (limit PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); downscale "
                                   f"the image, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it") from e
    except FileNotFoundError as e:
        raise ImageLoadError(path, "no such file") from e
    except _DECODE_ERRORS as e:
        raise ImageLoadError(path, f"{e} ({type(e).__name__}); the file is corrupt, truncated or not an "
                                   f"image: replace or remove it") from e


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I") or img.mode == "F":  # Pillow's own convert clips these to 0..255 instead of scaling
        return Image.fromarray(_high_depth_to_uint8(np.asarray(img), img.mode)).convert("RGB")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16/32-bit integer and float pixels to 0..255.

    16-bit data is scaled by its full range (divide by 257), so a dark image stays dark. Mode ``I`` holds 16-bit
    data in practice (TIFF, older Pillow PNGs); values outside 0..65535, like floats outside 0..1, have no
    canonical range and are min-max scaled.
    """
    a = np.nan_to_num(a.astype(np.float64))
    if mode.startswith("I;16") or (mode == "I" and a.min() >= 0 and a.max() <= 65535):
        a = a / 257.0
    elif mode == "F" and a.min() >= 0 and a.max() <= 1:
        a = a * 255.0
    else:
        lo, hi = a.min(), a.max()
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Datasets


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
        st = os.stat(sample.path)
        return f"{sample.id}|{st.st_size}|{st.st_mtime_ns}"


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
        for label, folder in enumerate(folders):
            files = _image_files(self.root / folder)
            if not files:
                raise DataError(f"empty class '{folder}' at {self.root / folder}: add images or remove the folder")
            samples += [Sample(f.relative_to(self.root).as_posix(), label, str(f)) for f in files]
        super().__init__(name or self.root.name, [mapping.get(f, f) for f in folders], samples)

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


def _image_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames)
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return files


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

    def __init__(self, dataset: str, root: str | os.PathLike, split: str | None = None, name: str | None = None):
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
        super().__init__(name or prefix.replace("/", "-"), [_pretty_class(c) for c in self._tv.classes], samples)

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


# ----------------------------------------------------------------------------------------------------------------
# Few-shot sampling and manifests


def few_shot(dataset: ImageDataset, shots: int, seed: int) -> tuple[ImageDataset, list[dict]]:
    """Pick ``shots`` samples per class with ``numpy.random.default_rng(seed)``, classes in label order.

    Returns the subset and a manifest of the picks (``class``, ``label``, ``id``), which
    :func:`replay_manifest` turns back into the same subset even after the dataset has grown.
    """
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise DataError(f"shots must be a whole number >= 1, got {shots!r}")
    rng = np.random.default_rng(seed)
    labels = dataset.labels
    picks = []
    for label, classname in enumerate(dataset.classnames):
        members = np.flatnonzero(labels == label)
        if len(members) < shots:
            raise DataError(f"class '{classname}' has {len(members)} images but shots={shots}: lower shots or add "
                            f"images to that class of '{dataset.name}'")
        picks += sorted(rng.choice(members, size=shots, replace=False).tolist())
    subset = dataset.subset(picks, name=f"{dataset.name}-{shots}shot-seed{seed}")
    manifest = [{"class": dataset.classnames[s.label], "label": s.label, "id": s.id} for s in subset.samples]
    return subset, manifest


_MANIFEST_FIELDS = ("class", "label", "id")


def write_manifest(manifest: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write a few-shot manifest as ``.json`` or ``.csv`` (chosen by the suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise DataError(f"manifest {path}: use a .json or .csv file name")
    rows = [{k: row[k] for k in _MANIFEST_FIELDS} for row in manifest]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            if suffix == ".json":
                json.dump(rows, fh, indent=1)
            else:
                writer = csv.DictWriter(fh, fieldnames=_MANIFEST_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
    return path


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read a manifest written by :func:`write_manifest`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist")
    with open(path, encoding="utf-8", newline="") as fh:
        try:
            rows = json.load(fh) if path.suffix.lower() == ".json" else list(csv.DictReader(fh))
        except json.JSONDecodeError as e:
            raise DataError(f"manifest {path} is not valid JSON: {e}") from e
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(_MANIFEST_FIELDS) <= set(r) for r in rows):
        raise DataError(f"manifest {path} must be a list of rows with the fields {list(_MANIFEST_FIELDS)}")
    try:
        return [{"class": str(r["class"]), "label": int(r["label"]), "id": str(r["id"])} for r in rows]
    except ValueError as e:
        raise DataError(f"manifest {path}: labels must be integers ({e})") from e


def replay_manifest(dataset: ImageDataset, manifest_or_path: Sequence[dict] | str | os.PathLike) -> ImageDataset:
    """The subset of ``dataset`` a manifest names, in manifest order."""
    manifest = (read_manifest(manifest_or_path) if isinstance(manifest_or_path, (str, os.PathLike))
                else manifest_or_path)
    where = {s.id: i for i, s in enumerate(dataset.samples)}
    indices = []
    for row in manifest:
        i = where.get(row["id"])
        if i is None:
            raise DataError(f"manifest id '{row['id']}' is not in dataset '{dataset.name}': is it the dataset the "
                            f"manifest was written for?")
        if int(row["label"]) != dataset.samples[i].label:
            raise DataError(f"manifest id '{row['id']}' has label {row['label']} but dataset '{dataset.name}' "
                            f"says {dataset.samples[i].label}: the class order has changed")
        indices.append(i)
    return dataset.subset(indices, name=f"{dataset.name}-replay")


# ----------------------------------------------------------------------------------------------------------------
# Benchmark specs

DATASET_TYPES = ("folder", "torchvision", "world")
_ENTRY_KEYS = {
    "folder": {"type", "root", "classnames_file", "name"},
    "torchvision": {"type", "name", "root", "split"},
    "world": {"type", "kind", "shapes", "n_per_class", "n", "seed", "image_size", "name"},
}
for _keys in _ENTRY_KEYS.values():
    _keys.add("get")  # optional: how to obtain the data, appended to "not found" errors
_REQUIRED_KEYS = {"folder": ("root",), "torchvision": ("name", "root"), "world": ()}


def build_dataset(entry: dict, base_dir: str | os.PathLike = ".", name: str | None = None) -> ImageDataset:
    """Build one benchmark entry; relative paths resolve against ``base_dir`` (the YAML file's folder).

    ``name`` names the dataset when the entry does not (a folder or world entry's own ``name`` wins).
    """
    if not isinstance(entry, dict) or entry.get("type") not in DATASET_TYPES:
        got = entry.get("type") if isinstance(entry, dict) else entry
        raise DataError(f"unknown dataset type {got!r}; known types: {', '.join(DATASET_TYPES)}")
    kind = entry["type"]
    unknown = sorted(set(entry) - _ENTRY_KEYS[kind])
    if unknown:
        raise DataError(f"{kind} entry has unknown keys {unknown}; allowed: {sorted(_ENTRY_KEYS[kind])}")
    missing = [k for k in _REQUIRED_KEYS[kind] if k not in entry]
    if missing:
        raise DataError(f"{kind} entry needs the keys {missing}")
    try:
        return _build(entry, kind, Path(base_dir), name)
    except DataError as err:
        if entry.get("get"):
            raise DataError(f"{err}. How to get it: {entry['get']}") from err
        raise


def _build(entry: dict, kind: str, base_dir: Path, name: str | None) -> ImageDataset:
    if kind == "folder":
        names_file = entry.get("classnames_file")
        return FolderDataset(_resolve(entry["root"], base_dir), name=entry.get("name", name),
                             classnames_file=_resolve(names_file, base_dir) if names_file else None)
    if kind == "torchvision":
        return TorchvisionDataset(entry["name"], _resolve(entry["root"], base_dir), split=entry.get("split"),
                                  name=name)
    world_kind = entry.get("kind", "object")
    if "n" in entry and (world_kind == "object" or "n_per_class" in entry):
        raise DataError("world entry: `n` (total images) is for kinds background and clutter, and cannot be "
                        "combined with `n_per_class`; use `n_per_class` for kind object")
    n = _int(entry, "n", None) if "n" in entry else _int(entry, "n_per_class", 50)
    return WorldDataset(world_kind, shapes=entry.get("shapes", ID_SHAPES), n_per_class=n,
                        seed=_int(entry, "seed", 0), image_size=_int(entry, "image_size", 64),
                        name=entry.get("name", name))


def _int(entry: dict, key: str, default):
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"`{key}` must be an integer, got {value!r}")
    return value


def _resolve(path: str | os.PathLike, base_dir: Path) -> Path:
    p = _expand(path)
    if "$" in str(p):
        raise DataError(f"path {str(path)!r} uses an environment variable that is not set")
    return p if p.is_absolute() else base_dir / p


def default_benchmark_path() -> Path:
    """The shipped pocket-world benchmark: 6 ID shapes vs 6 unseen shapes, bare textures and clutter."""
    return ASSETS / "benchmarks" / "world-default.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects duplicate keys (plain YAML keeps the last one: a silently lost OOD set)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DataError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep)


@dataclass
class BenchmarkSpec:
    """One ID set, its few-shot training pool and named OOD sets, as dataset entries (see :func:`build_dataset`).

    Without ``id_train``, few-shot images come from the ID entry itself with a disjoint source: world entries
    use ``seed + 1000``, torchvision entries split ``train``; folder entries must name ``id_train``.
    """

    name: str
    id: dict
    ood: dict[str, dict]
    id_train: dict | None = None
    path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    _built: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> BenchmarkSpec:
        path = Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"benchmark file {path} does not exist")
        try:
            d = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
        except (yaml.YAMLError, DataError) as e:
            raise DataError(f"cannot parse benchmark {path}: {e}") from e
        spec = cls.from_dict(d, path.parent, default_name=path.stem)
        spec.path = path
        return spec

    @classmethod
    def from_dict(cls, d: dict, base_dir: str | os.PathLike = ".", default_name: str = "benchmark") -> BenchmarkSpec:
        if not isinstance(d, dict):
            raise DataError("a benchmark spec must be a mapping with keys name, id, ood (and optionally id_train)")
        unknown = sorted(set(d) - {"name", "id", "ood", "id_train"})
        if unknown:
            raise DataError(f"benchmark spec has unknown keys {unknown}; allowed: name, id, id_train, ood")
        if "id" not in d:
            raise DataError("benchmark spec needs an `id` entry (the in-distribution dataset)")
        if not isinstance(d.get("ood"), dict) or not d["ood"]:
            raise DataError("benchmark spec needs at least one OOD set: `ood: {<name>: <dataset entry>, ...}`")
        return cls(name=str(d.get("name", default_name)), id=d["id"], ood=dict(d["ood"]),
                   id_train=d.get("id_train"), base_dir=Path(base_dir).expanduser().resolve())

    def validate(self, need_train: bool = True) -> None:
        """Build every entry now and report all problems at once, before anything is encoded.

        ``need_train=False`` skips the few-shot pool, for zero-shot methods on folder benchmarks without one.
        """
        problems = []
        folded = [k.lower() for k in self.ood]
        clashes = sorted({k for k in self.ood if folded.count(k.lower()) > 1})
        if clashes:
            problems.append(f"OOD names {clashes} differ only in case; output files would collide")
        keys = ["id", *(["id_train"] if need_train else []), *(("ood", k) for k in self.ood)]
        for key in keys:
            try:
                self._dataset(key)
            except DataError as e:
                problems.append(f"{_label(key)}: {e}")
        if need_train and "id" in self._built and "id_train" in self._built:
            id_classes, train_classes = self._built["id"].classnames, self._built["id_train"].classnames
            if id_classes != train_classes:
                problems.append(f"id_train classes {train_classes} differ from the ID classes {id_classes}")
        if problems:
            where = self.path or self.base_dir
            raise DataError(f"benchmark '{self.name}' ({where}) is invalid:\n  - " + "\n  - ".join(problems))

    def id_dataset(self) -> ImageDataset:
        return self._dataset("id")

    def id_train_dataset(self) -> ImageDataset:
        return self._dataset("id_train")

    def ood_datasets(self) -> dict[str, ImageDataset]:
        return {k: self._dataset(("ood", k)) for k in self.ood}

    def _dataset(self, key) -> ImageDataset:
        if key not in self._built:
            if key == "id":
                entry, name = self.id, self.name
            elif key == "id_train":
                entry, name = self._train_entry(), f"{self.name}-train"
            else:
                entry, name = self.ood[key[1]], key[1]
            self._built[key] = build_dataset(entry, self.base_dir, name=name)
        return self._built[key]

    def _train_entry(self) -> dict:
        if self.id_train is not None:
            return self.id_train
        kind = self.id.get("type") if isinstance(self.id, dict) else None
        if kind == "world":
            entry = {k: v for k, v in self.id.items() if k != "name"}
            return {**entry, "seed": _int(entry, "seed", 0) + 1000}
        if kind == "torchvision":
            return {**self.id, "split": "train"}
        raise DataError(f"the ID set is a {kind} dataset, so few-shot images need an explicit `id_train` entry "
                        f"(e.g. a folder of training images with the same class folders)")


def _label(key) -> str:
    return f"ood '{key[1]}'" if isinstance(key, tuple) else key

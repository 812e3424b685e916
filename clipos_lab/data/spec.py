"""Benchmark specs: a YAML file naming one ID set, an optional few-shot training pool, and several OOD sets.

:meth:`BenchmarkSpec.validate` builds every entry up front, so a typo or a missing folder fails in a second
instead of after the ID set has been encoded. Entries may carry ``get``: how to obtain data that is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..files import UnsafeNameError, check_name
from ..files import expand_path as _expand
from ..pocket.pack import DRAWINGS_DIR
from ..resources import ASSETS
from .datasets import (
    ID_SHAPES,
    FolderDataset,
    ImageDataset,
    ListDataset,
    TorchvisionDataset,
    WorldDataset,
)
from .drawings_set import DrawingsDataset, pack_classes
from .errors import DataError

# what a spec may ask the runner to report (FPR95_OOD_POS: OpenOOD's convention, OOD positive)
SPEC_METRICS = ("AUROC", "FPR95", "FPR95_OOD_POS", "AUPR_IN", "AUPR_OUT")
DATASET_TYPES = ("folder", "torchvision", "world", "list", "drawings")
_ENTRY_KEYS = {
    "folder": {"type", "root", "classnames_file", "name"},
    "torchvision": {"type", "name", "root", "split", "classnames_file"},
    "list": {"type", "root", "list", "classnames_file", "name"},
    "world": {"type", "kind", "shapes", "n_per_class", "n", "seed", "image_size", "name"},
    "drawings": {"type", "kind", "classes", "superclasses", "split", "n_per_class", "seed", "image_size", "pack",
                 "name"},
}
for _keys in _ENTRY_KEYS.values():
    _keys.add("get")  # optional: how to obtain the data, appended to "not found" errors
_REQUIRED_KEYS = {"folder": ("root",), "torchvision": ("name", "root"), "world": (), "list": ("root", "list"),
                  "drawings": ()}


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
    names_file = entry.get("classnames_file")
    names_file = _resolve(names_file, base_dir) if names_file else None
    if kind == "torchvision":
        return TorchvisionDataset(entry["name"], _resolve(entry["root"], base_dir), split=entry.get("split"),
                                  name=name, classnames_file=names_file)
    if kind == "list":
        return ListDataset(_resolve(entry["root"], base_dir), _resolve(entry["list"], base_dir),
                           name=entry.get("name", name), classnames_file=names_file)
    if kind == "drawings":
        return _drawings(entry, base_dir, name)
    world_kind = entry.get("kind", "object")
    if "n" in entry and (world_kind == "object" or "n_per_class" in entry):
        raise DataError("world entry: `n` (total images) is for kinds background and clutter, and cannot be "
                        "combined with `n_per_class`; use `n_per_class` for kind object")
    n = _int(entry, "n", None) if "n" in entry else _int(entry, "n_per_class", 50)
    return WorldDataset(world_kind, shapes=entry.get("shapes", ID_SHAPES), n_per_class=n,
                        seed=_int(entry, "seed", 0), image_size=_int(entry, "image_size", 64),
                        name=entry.get("name", name))


def _drawings(entry: dict, base_dir: Path, name: str | None) -> DrawingsDataset:
    """A drawings entry: ``classes`` (nouns of the pack) or ``superclasses`` (category folders: every class under
    them with drawings in ``split``); ``kind: background`` needs neither."""
    split = entry.get("split", "eval")
    pack = _resolve(entry["pack"], base_dir) if "pack" in entry else DRAWINGS_DIR
    classes = entry.get("classes")
    if entry.get("kind", "object") == "object" and classes is None:
        supers = entry.get("superclasses")
        if not supers:
            raise DataError("drawings entry of kind object needs `classes` (class nouns of the pack) or "
                            "`superclasses` (category folders such as food/fruit)")
        classes = pack_classes(split, [supers] if isinstance(supers, str) else supers, pack)
        if not classes:
            raise DataError(f"drawings entry: no class under superclasses {supers!r} has drawings in split {split!r}")
    return DrawingsDataset(entry.get("kind", "object"), classes or (), split=split,
                           n_per_class=_int(entry, "n_per_class", 20), seed=_int(entry, "seed", 0),
                           image_size=_int(entry, "image_size", 112), pack=pack, name=entry.get("name", name))


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
    use ``seed + 1000``, torchvision entries split ``train``, drawings entries the ``val`` drawings for an ``eval``
    ID set (other drawings of the same classes; for a ``val`` or ``unseen`` ID set the same split's drawings in
    other scenes, ``seed + 1000``); folder entries must name ``id_train``.
    """

    name: str
    id: dict
    ood: dict[str, dict]
    id_train: dict | None = None
    path: Path | None = None
    metrics: list[str] | None = None  # OOD metrics to report (default: the runner's); e.g. both FPR95 conventions
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
        unknown = sorted(set(d) - {"name", "id", "ood", "id_train", "metrics"})
        if unknown:
            raise DataError(f"benchmark spec has unknown keys {unknown}; allowed: name, id, id_train, ood, metrics")
        metrics = d.get("metrics")
        if metrics is not None and (not isinstance(metrics, list) or not set(metrics) <= set(SPEC_METRICS)):
            raise DataError(f"benchmark spec `metrics` must be a list drawn from {list(SPEC_METRICS)}, got {metrics!r}")
        if "id" not in d:
            raise DataError("benchmark spec needs an `id` entry (the in-distribution dataset)")
        if not isinstance(d.get("ood"), dict) or not d["ood"]:
            raise DataError("benchmark spec needs at least one OOD set: `ood: {<name>: <dataset entry>, ...}`")
        name = str(d.get("name", default_name))
        ood = {str(k): v for k, v in d["ood"].items()}  # YAML keys such as 2020 are ints
        try:  # names become file and folder names (cache files, suite folders): refuse any that could escape
            check_name(name, "benchmark name")
            for key in ood:
                check_name(key, "OOD set name")
            for where, entry in (("id", d["id"]), ("id_train", d.get("id_train")),
                                 *((f"ood '{k}'", v) for k, v in ood.items())):
                if isinstance(entry, dict) and "name" in entry:
                    check_name(str(entry["name"]), f"{where} entry's name")
        except UnsafeNameError as err:
            raise DataError(str(err)) from None
        return cls(name=name, id=d["id"], ood=ood,
                   id_train=d.get("id_train"), base_dir=Path(base_dir).expanduser().resolve(), metrics=metrics)

    def validate(self, need_train: bool = True) -> None:
        """Build every entry now and report all problems at once, before anything is encoded.

        ``need_train=False`` skips the few-shot pool, for zero-shot methods on folder benchmarks without one.
        """
        problems = []
        for what, name in (("benchmark name", self.name), *(("OOD set name", k) for k in self.ood)):
            try:
                check_name(name, what)
            except UnsafeNameError as err:
                problems.append(str(err))
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
        if kind == "drawings":  # shots from other drawings than the test images: val for an eval ID set
            entry = {k: v for k, v in self.id.items() if k != "name"}
            split = entry.get("split", "eval")
            return {**entry, "split": "val" if split == "eval" else split, "seed": _int(entry, "seed", 0) + 1000}
        raise DataError(f"the ID set is a {kind} dataset, so few-shot images need an explicit `id_train` entry "
                        f"(e.g. a folder of training images with the same class folders)")


def _label(key) -> str:
    return f"ood '{key[1]}'" if isinstance(key, tuple) else key


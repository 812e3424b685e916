"""Anomaly-detection data: per product category, normal training images and a test set with defect masks.

Three sources, one shape (:class:`AnomalyCategory`: ``train`` holds normal images only, ``test`` normal and
defective ones, labelled ``0 = good`` and ``1..`` per defect type, with a pixel mask per defective image):

* :class:`WorldDefectDataset`: pocket-world products (:func:`clipos_lab.pocket.products.render_product`), masks exact;
* :func:`mvtec_category`: an MVTec-AD-style folder ``<root>/<category>/{train/good, test/<type>,
  ground_truth/<type>/<stem>_mask.png}``. Masks are optional: without them only image-level metrics exist;
* :func:`clipos_lab.anomaly.visa.visa_category`: VisA's folders and split file.

An anomaly spec (YAML, :class:`AnomalySpec`) names one source and its categories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from ..data.datasets import ID_SHAPES, Sample, image_files, world_version
from ..data.errors import DataError
from ..files import expand_path
from ..pocket import products as P
from ..pocket.world2 import STATES
from .dataset import GOOD, AnomalyCategory, AnomalyDataset, RenderedDefects
from .drawn import drawn_category
from .masks import read_mask, upright_shape
from .visa import read_split, visa_category

# ---------------------------------------------------------------------------------------------- pocket world


class WorldDefectDataset(RenderedDefects):
    """Pocket-world pictures of one product (:func:`clipos_lab.pocket.products.render_product`): ``n_good`` normal
    ones and ``n_per_defect`` of each defect (render indices: :class:`~.dataset.RenderedDefects`)."""

    def __init__(self, shape: str, n_good: int, n_per_defect: int = 0, defects: Sequence[str] = P.DEFECTS,
                 seed: int = 0, image_size: int = 64, offset: int = 0, name: str | None = None):
        if shape not in P.PRODUCT_STYLES:
            raise DataError(f"unknown product {shape!r}; the world has {list(P.PRODUCT_STYLES)}")
        bad = [d for d in defects if d not in P.DEFECTS]
        if bad or len(set(defects)) != len(defects):
            raise DataError(f"bad defects {list(defects)}: give distinct names from {list(P.DEFECTS)}")
        if image_size < 32:
            raise DataError(f"image_size={image_size}: products need 32 px or more")
        self.shape = shape
        super().__init__(shape, n_good, n_per_defect, defects, seed, image_size, offset,
                         name or f"products-{shape}-seed{seed}")

    def _draw(self, defect: str | None, index: int):
        return P.render_product(self.seed, index, self.shape, defect, image_size=self.image_size)

    def _fingerprint_parts(self) -> str:
        return f"world-{world_version()}|product={self.shape}"


def world_category(shape: str, n_train: int = 16, n_good: int = 40, n_per_defect: int = 15,
                   defects: Sequence[str] = P.DEFECTS, seed: int = 0, image_size: int = 64) -> AnomalyCategory:
    """A pocket-world product: ``n_train`` normal training images and a test set (disjoint render indices)."""
    train = WorldDefectDataset(shape, n_train, 0, defects, seed, image_size, offset=0,
                               name=f"products-{shape}-seed{seed}-train")
    test = WorldDefectDataset(shape, n_good, n_per_defect, defects, seed, image_size, offset=50_000,
                              name=f"products-{shape}-seed{seed}-test")
    return AnomalyCategory(shape, train, test)


# ------------------------------------------------------------------------------------------- MVTec-style folder
class MVTecDataset(AnomalyDataset):
    """Images of one MVTec-AD-style split folder: ``<split>/<type>/*`` with masks in ``ground_truth/<type>/``.

    A defect type without a ``ground_truth/<type>`` folder has no masks (fine for image-level metrics); a mask
    that exists must have its image's size.
    """

    def __init__(self, category_dir: Path, split: str, name: str):
        self.category_dir, self.category = category_dir, category_dir.name
        split_dir = category_dir / split
        if not split_dir.is_dir():
            raise DataError(f"{split_dir} does not exist: an MVTec-style category needs train/good and test/<type> "
                            "folders")
        types = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if GOOD not in types:
            why = ("the normal training images go there" if split == "train" else
                   "the test set needs normal images: every metric compares them with the defective ones")
            raise DataError(f"{split_dir / GOOD} does not exist: {why}")
        classnames = [GOOD] + [t for t in types if t != GOOD]
        self._masks: dict[str, Path | None] = {}
        samples = []
        for label, t in enumerate(classnames):
            if not (split_dir / t).is_dir():
                continue
            files = image_files(split_dir / t)
            if not files:
                raise DataError(f"empty folder {split_dir / t}: add images or remove it")
            for f in files:
                sid = f"{t}/{f.relative_to(split_dir / t).as_posix()}"
                if label > 0:
                    self._masks[sid] = self._find_mask(t, f, split_dir / t)
                samples.append(Sample(sid, label, str(f)))
        if split == "test" and not any(s.label > 0 for s in samples):
            raise DataError(f"{split_dir} holds no defective images (only {split_dir / GOOD}): every metric compares "
                            "defective images with good ones, so this category would have no result; add a "
                            "test/<defect type> folder or leave the category out of the spec")
        super().__init__(name, classnames, samples)

    def _find_mask(self, defect: str, image: Path, folder: Path) -> Path | None:
        gt = self.category_dir / "ground_truth" / defect
        if not gt.is_dir():
            return None
        rel = image.relative_to(folder)
        for candidate in (gt / rel.parent / f"{rel.stem}_mask.png", gt / rel.parent / f"{rel.stem}.png"):
            if candidate.is_file():
                return candidate
        raise DataError(f"no mask for {image}: expected {gt / rel.parent / f'{rel.stem}_mask.png'} (the folder "
                        f"{gt} exists, so every {defect} image needs one; remove the folder to go without masks)")

    def _has_mask(self, sample: Sample) -> bool:
        return self._masks.get(sample.id) is not None

    def _load_mask(self, i: int) -> np.ndarray:
        sample = self.samples[i]
        return read_mask(self._masks[sample.id], sample.path, self._image_shape(i))

    def _image_shape(self, i: int) -> tuple[int, int]:
        return upright_shape(self.samples[i].path)


def mvtec_category(root: str | os.PathLike, category: str) -> AnomalyCategory:
    """One category of an MVTec-AD-style tree under ``root``."""
    root = expand_path(root)
    if "/" in category or "\\" in category or category in ("", ".", ".."):
        raise DataError(f"category {category!r} must be a plain folder name under {root}")
    folder = root / category
    if not folder.is_dir():
        raise DataError(f"category folder {folder} does not exist")
    return AnomalyCategory(category, MVTecDataset(folder, "train", f"mvtec-{category}-train"),
                           MVTecDataset(folder, "test", f"mvtec-{category}-test"))


# ------------------------------------------------------------------------------------------------------ specs
SHIPPED_SPECS = ("world-anomaly", "world-anomaly-validation", "drawings-anomaly", "drawings-anomaly-validation",
                 "paper-mvtec", "paper-visa")


def shipped_spec(name: str) -> Path | None:
    """The path of a shipped anomaly spec by name (``world-anomaly``, ...), else ``None``."""
    from ..resources import BENCHMARKS

    return BENCHMARKS / f"{name}.yaml" if name in SHIPPED_SPECS else None


_SPEC_KEYS = {
    "world": {"type", "products", "defects", "n_train", "n_good", "n_per_defect", "seed", "image_size"},
    "drawings": {"type", "products", "defects", "n_train", "n_good", "n_per_defect", "seed", "image_size", "split"},
    "mvtec": {"type", "root", "categories", "get"},
    "visa": {"type", "root", "categories", "split_csv", "get"},
}


@dataclass
class AnomalySpec:
    """An anomaly benchmark: ``name`` and one ``data`` entry (``type: world``, ``mvtec`` or ``visa``).

    World entries: ``products`` (shapes), ``defects``, ``n_train`` (normal pool the shots are drawn from),
    ``n_good`` / ``n_per_defect`` (test set), ``seed``, ``image_size``. MVTec entries: ``root``, ``categories``
    (default: every folder under root) and ``get`` (how to obtain the data, added to "not found" errors). VisA
    entries: ``root``, ``categories`` (default: every object of the split file), ``split_csv`` (default
    ``split_csv/1cls.csv`` under root) and ``get``.
    """

    name: str
    data: dict
    path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "AnomalySpec":
        path = expand_path(path)
        if not path.is_file():
            raise DataError(f"anomaly spec {path} does not exist")
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise DataError(f"cannot parse anomaly spec {path}: {err}") from err
        if not isinstance(d, dict) or set(d) - {"name", "data"} or not isinstance(d.get("data"), dict):
            raise DataError(f"anomaly spec {path} must be a mapping with keys `name` and `data` "
                            "(data: {type: world | mvtec, ...})")
        spec = cls(str(d.get("name", path.stem)), d["data"], path, path.parent.resolve())
        spec._check_keys()
        return spec

    def _check_keys(self) -> None:
        kind = self.data.get("type")
        if kind not in _SPEC_KEYS:
            raise DataError(f"anomaly spec '{self.name}': data type {kind!r} is unknown; use world, drawings, mvtec "
                            "or visa")
        unknown = sorted(set(self.data) - _SPEC_KEYS[kind])
        if unknown:
            raise DataError(f"anomaly spec '{self.name}': unknown keys {unknown}; allowed {sorted(_SPEC_KEYS[kind])}")

    def restricted(self, categories: Sequence[str] | None = None, n_good: int = 0, n_per_defect: int = 0,
                   n_train: int = 0) -> "AnomalySpec":
        """A copy with only ``categories`` and (world specs) other test / pool sizes; 0 keeps the spec's."""
        data = dict(self.data)
        if categories:
            data["products" if data.get("type") in ("world", "drawings") else "categories"] = list(categories)
        if data.get("type") in ("world", "drawings"):
            for key, value in (("n_good", n_good), ("n_per_defect", n_per_defect), ("n_train", n_train)):
                if value:
                    data[key] = int(value)
        return AnomalySpec(self.name, data, self.path, self.base_dir)

    def categories(self) -> list[AnomalyCategory]:
        """Build every category now (a missing folder fails before anything is encoded)."""
        self._check_keys()
        d = self.data
        if d["type"] in ("world", "drawings"):
            products = d.get("products", list(ID_SHAPES) if d["type"] == "world" else None)
            ints = {k: d[k] for k in ("n_train", "n_good", "n_per_defect", "seed", "image_size") if k in d}
            bad = [k for k, v in ints.items() if isinstance(v, bool) or not isinstance(v, int)]
            if bad:
                raise DataError(f"anomaly spec '{self.name}': {bad} must be integers")
            what = "shapes" if d["type"] == "world" else "class nouns of the drawings pack"
            if not isinstance(products, list) or not products:
                raise DataError(f"anomaly spec '{self.name}': `products` must be a list of {what}")
            defects = d.get("defects", list(P.DEFECTS if d["type"] == "world" else STATES))
            if ints.get("n_per_defect", 1) == 0 or not defects:
                raise DataError(f"anomaly spec '{self.name}': the test sets would hold no defective image "
                                "(n_per_defect 0 or no defects); every metric needs some")
            if d["type"] == "drawings":
                return [drawn_category(p, defects=defects, split=d.get("split", "eval"), **ints) for p in products]
            return [world_category(p, defects=defects, **ints) for p in products]
        root = expand_path(d.get("root", ""))
        root = root if root.is_absolute() else self.base_dir / root
        try:
            if not root.is_dir():
                raise DataError(f"{'VisA' if d['type'] == 'visa' else 'MVTec-style'} root {root} does not exist")
            if d["type"] == "visa":
                table = read_split(root, d.get("split_csv"))
                names = d.get("categories") or sorted(table["object"].unique())
                return [visa_category(root, c, table) for c in names]
            names = d.get("categories") or sorted(p.name for p in root.iterdir() if p.is_dir())
            return [mvtec_category(root, c) for c in names]
        except DataError as err:
            raise DataError(f"{err}. How to get it: {d['get']}" if d.get("get") else str(err)) from err

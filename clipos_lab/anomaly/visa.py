"""VisA (Zou et al., ECCV 2022), the other benchmark every zero- / few-shot anomaly paper reports.

VisA ships as ``<root>/<object>/Data/Images/{Normal,Anomaly}/*.JPG`` with masks in
``<object>/Data/Masks/Anomaly/*.png``; which image is training and which is test comes from a split file,
``split_csv/1cls.csv`` of the ``amazon-science/spot-diff`` repository (columns ``object, split, label, image,
mask``; ``label`` is ``normal`` or ``anomaly``; paths relative to ``root``). That is the split WinCLIP, APRIL-GAN
and MuSc report. VisA names no defect types in it, so the test set has one: ``anomaly``. Its masks mark defects
with small label values (1, 2, ...), which :func:`clipos_lab.anomaly.masks.read_mask` reads as defect.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..data.datasets import Sample
from ..data.errors import DataError
from ..files import expand_path
from .dataset import GOOD, AnomalyCategory, AnomalyDataset
from .masks import read_mask, upright_shape

SPLIT_FILE = "split_csv/1cls.csv"
COLUMNS = ["object", "split", "label", "image", "mask"]
DEFECT = "anomaly"


class VisADataset(AnomalyDataset):
    """One object's training or test images as the split file lists them."""

    def __init__(self, root: Path, category: str, rows: pd.DataFrame, name: str):
        self.root, self.category = root, category
        self._masks: dict[str, Path | None] = {}
        samples, missing = [], []
        for image, label, mask in zip(rows["image"], rows["label"], rows["mask"]):
            path = root / image
            if not path.is_file():
                missing.append(str(path))
                continue
            anomalous = label == DEFECT
            if anomalous:
                self._masks[image] = root / mask if isinstance(mask, str) and mask.strip() else None
                if self._masks[image] is not None and not self._masks[image].is_file():
                    missing.append(str(self._masks[image]))
            samples.append(Sample(image, int(anomalous), str(path)))
        if missing:
            raise DataError(f"{len(missing)} files the VisA split file lists are missing, e.g. {missing[:3]}: unpack "
                            f"VisA so that {root}/<object>/Data/Images exists (or fix `root`)")
        super().__init__(name, [GOOD, DEFECT] if any(s.label for s in samples) else [GOOD], samples)

    def _has_mask(self, sample: Sample) -> bool:
        return self._masks.get(sample.id) is not None

    def _load_mask(self, i: int) -> "object":
        sample = self.samples[i]
        return read_mask(self._masks[sample.id], sample.path, self._image_shape(i))

    def _image_shape(self, i: int) -> tuple[int, int]:
        return upright_shape(self.samples[i].path)


def read_split(root: str | os.PathLike, split_file: str | os.PathLike | None = None) -> pd.DataFrame:
    """The split table (default ``<root>/split_csv/1cls.csv``), checked for VisA's columns and values."""
    root = expand_path(root)
    path = expand_path(split_file) if split_file else root / SPLIT_FILE
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise DataError(f"VisA split file {path} does not exist: take split_csv/1cls.csv from "
                        "https://github.com/amazon-science/spot-diff and put it there (or set `split_csv`)")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read VisA split file {path}: {err}") from err
    if list(table.columns)[:5] != COLUMNS:
        raise DataError(f"VisA split file {path} has columns {list(table.columns)}; expected {COLUMNS}")
    bad = table[~table["split"].isin(["train", "test"]) | ~table["label"].isin(["normal", DEFECT])]
    if len(bad):
        raise DataError(f"VisA split file {path}, line {bad.index[0] + 2}: split must be train/test and label "
                        f"normal/anomaly, got {bad.iloc[0][['split', 'label']].tolist()}")
    return table


def visa_category(root: str | os.PathLike, category: str, table: pd.DataFrame | None = None) -> AnomalyCategory:
    """One VisA object: training images = the split's normal ``train`` rows, test = its ``test`` rows."""
    root = expand_path(root)
    table = read_split(root) if table is None else table
    rows = table[table["object"] == category]
    if rows.empty:
        raise DataError(f"VisA category {category!r} is not in the split file; it lists "
                        f"{sorted(table['object'].unique())}")
    train_rows = rows[(rows["split"] == "train") & (rows["label"] == "normal")]
    test_rows = rows[rows["split"] == "test"]
    train = VisADataset(root, category, train_rows, f"visa-{category}-train")
    test = VisADataset(root, category, test_rows, f"visa-{category}-test")
    if not len(train):
        raise DataError(f"VisA category {category!r} has no normal training images in the split file")
    if not (test.labels == 0).any() or not (test.labels > 0).any():
        raise DataError(f"VisA category {category!r}: its test rows need normal and anomalous images")
    return AnomalyCategory(category, train, test)

"""Few-shot sampling and manifests: which images were the shots, written so a run can be replayed exactly."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..files import atomic_path, write_csv
from .datasets import ImageDataset
from .errors import DataError


def few_shot(dataset: ImageDataset, shots: int, seed: int) -> tuple[ImageDataset, list[dict]]:
    """Pick ``shots`` samples per class with ``numpy.random.default_rng(seed)``, classes in label order.

    Returns the subset and a manifest of the picks (``class``, ``label``, ``id``), which
    :func:`replay_manifest` turns back into the same subset even after the dataset has grown.
    """
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise DataError(f"shots must be a whole number >= 1, got {shots!r}")
    rng = np.random.default_rng(seed)
    labels = dataset.labels
    # each class's members in ascending order, grouped once (a stable sort), not one scan of the pool per class
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(len(dataset.classnames) + 1))
    picks = []
    for label, classname in enumerate(dataset.classnames):
        members = order[bounds[label]: bounds[label + 1]]
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
    if suffix == ".csv":
        return write_csv(rows, path, columns=_MANIFEST_FIELDS)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read a manifest written by :func:`write_manifest`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
        else:
            rows = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    except json.JSONDecodeError as e:
        raise DataError(f"manifest {path} is not valid JSON: {e}") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"manifest {path} is not a readable CSV file: {e}") from e
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



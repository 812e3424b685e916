"""The features one benchmark needs: the ID test set and every OOD set encoded (or read from the cache), and the
few-shot training pool, listed but encoded only where shots are drawn (:class:`TrainPool`).

:func:`check_banks` refuses non-finite features and warns when an OOD set or the pool repeats ID test images.
:func:`shard_cells` splits the encoding of a spec's sets into cells of rows that workers write into the shared
feature cache side by side (the store locks and checksums each row), before the banks are read from it.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch

from ..data import BenchmarkSpec, DataError, few_shot
from ..features import CachedDataset, FeatureBank


class TrainPool:
    """The few-shot training pool: its file list, encoded only where shots are drawn.

    :meth:`draw` samples the shots from the file list first (seeded, as :func:`~clipos_lab.data.few_shot`
    does) and encodes just those images; every seed and shot count shares the pool's cache rows, so an image
    drawn twice is encoded once. A drawn image that turns out unreadable is recorded as skipped and the draw is
    repeated without it (without only the unreadable images that draw met, so a draw does not depend on what
    other draws found).
    """

    def __init__(self, dataset, backbone, batch_size: int = 64, cache=True, progress: bool = True,
                 num_workers: int = 0):
        self.dataset, self.backbone = dataset, backbone
        self._encode_options = {"batch_size": batch_size, "cache": cache, "progress": progress,
                                "num_workers": num_workers}
        self._row = {s.id: i for i, s in enumerate(dataset.samples)}
        self.skipped: dict[str, str] = {}
        self._cached: CachedDataset | None = None  # the pool's cache entry: its files stat'ed at the first draw

    @property
    def classnames(self) -> list[str]:
        return list(self.dataset.classnames)

    def __len__(self) -> int:
        return len(self.dataset)

    def select_ids(self, ids) -> FeatureBank:
        """The bank of these sample ids, in this order, encoding only those not cached yet."""
        unknown = [i for i in ids if i not in self._row]
        if unknown:
            raise KeyError(f"{len(unknown)} ids are not in the pool {self.dataset.name!r}, e.g. {unknown[:3]}")
        if self._cached is None:
            self._cached = CachedDataset(self.dataset, self.backbone, **self._encode_options)
        bank = self._cached.bank([self._row[i] for i in ids])
        self.skipped.update({s["id"]: s["error"] for s in bank.skipped})
        return bank

    def draw(self, shots: int, seed: int) -> tuple[FeatureBank, list[dict]]:
        """``(bank, manifest)`` of ``shots`` readable images per class drawn with ``seed``."""
        unreadable: set[str] = set()
        while True:
            pool = self.dataset if not unreadable else self.dataset.subset(
                [i for i, s in enumerate(self.dataset.samples) if s.id not in unreadable])
            _, manifest = few_shot(pool, int(shots), int(seed))
            ids = [m["id"] for m in manifest]
            bank = self.select_ids(ids)
            missing = set(ids) - set(bank.ids)
            if not missing:
                return bank, manifest
            unreadable |= missing


@dataclass
class Banks:
    """The encoded features one benchmark needs (the training pool is encoded only where shots are drawn)."""

    id_test: FeatureBank
    id_train: TrainPool
    ood: dict[str, FeatureBank]
    train_dataset: object
    encode_seconds: float = 0.0

    def skipped(self) -> dict[str, list[dict]]:
        """Unreadable images per set (``id_test``, ``id_train``, ``ood/<name>``), for metrics.json."""
        out = {"id_test": self.id_test.skipped, **{f"ood/{k}": b.skipped for k, b in self.ood.items()},
               "id_train": [{"id": i, "error": e} for i, e in self.id_train.skipped.items()]}
        return {k: v for k, v in out.items() if v}


def encode_banks(spec: BenchmarkSpec, backbone, batch_size: int = 64, cache=True, progress: bool = True,
                 num_workers: int = 0) -> Banks:
    """Validate the spec, then encode (or load from cache) the ID test set and every OOD set; the training
    pool is only listed here (its shots are encoded when drawn)."""
    spec.validate()
    start = time.perf_counter()
    id_ds, train_ds, ood_ds = spec.id_dataset(), spec.id_train_dataset(), spec.ood_datasets()
    options = {"batch_size": batch_size, "cache": cache, "progress": progress, "num_workers": num_workers}
    enc = lambda ds: FeatureBank.encode(ds, backbone, **options)  # noqa: E731
    pool = TrainPool(train_ds, backbone, **options)
    banks = Banks(enc(id_ds), pool, {name: enc(ds) for name, ds in ood_ds.items()}, train_ds)
    banks.encode_seconds = time.perf_counter() - start
    check_banks(banks, id_ds)
    return banks


class OverlapWarning(UserWarning):
    """An OOD set shares images with the ID test set, so its AUROC is pulled towards 50."""


def check_banks(banks: Banks, id_dataset=None) -> None:
    """Refuse features that are not finite (naming the cache file); warn when an OOD set or the few-shot pool
    repeats ID test images (the pool, never encoded as a whole, is compared by its files' fingerprints)."""
    named = {"ID test": banks.id_test, **{f"OOD set '{k}'": b for k, b in banks.ood.items()}}
    for what, bank in named.items():
        bad = ~torch.isfinite(bank.global_.float()).all(dim=-1)
        if bool(bad.any()):
            where = bank.meta.get("cache_path") or "not cached"
            raise DataError(f"{what} has {int(bad.sum())} of {len(bank)} feature vectors with NaN or inf (e.g. "
                            f"{bank.ids[int(bad.nonzero()[0])]!r}; cache file: {where}): delete that file to encode "
                            f"again, and check the model weights if it comes back")
    id_rows = {row.numpy().tobytes() for row in banks.id_test.global_}
    for name, bank in banks.ood.items():
        shared = sum(row.numpy().tobytes() in id_rows for row in bank.global_)
        if shared == len(bank) and len(bank) == len(banks.id_test):
            warnings.warn(f"OOD set '{name}' is identical to the ID test set ({shared} images): its AUROC will be "
                          f"about 50; check the spec", OverlapWarning, stacklevel=3)
        elif shared:
            warnings.warn(f"{shared} of {len(bank)} images of OOD set '{name}' are also ID test images: they count "
                          f"as OOD and as ID; check the spec", OverlapWarning, stacklevel=3)
    if id_dataset is None:
        return
    id_prints = set(id_dataset.fingerprint())
    shared = sum(f in id_prints for f in banks.train_dataset.fingerprint())
    if shared:
        warnings.warn(f"{shared} of {len(banks.id_train)} images of the few-shot pool are also ID test images: "
                      f"few-shot methods may train on test images; give `id_train` its own images", OverlapWarning,
                      stacklevel=3)


def shard_cells(spec: BenchmarkSpec, load_args: dict, cache, batch_size: int = 64, rows_per_cell: int = 1024):
    """Cells (:class:`~clipos_lab.evaluation.executor.Cell`) that encode the ID test set and every OOD set of
    ``spec``, ``rows_per_cell`` rows each, into the feature cache ``cache`` (which every worker must reach)."""
    from .executor import Cell

    content = {"name": spec.name, "id": spec.id, "ood": spec.ood, "id_train": spec.id_train}
    sets = {"id": spec.id_dataset(), **{f"ood/{k}": ds for k, ds in spec.ood_datasets().items()}}
    return [Cell(encode_shard, (content, str(spec.base_dir), name, start, min(start + rows_per_cell, len(ds)),
                                load_args, cache, batch_size), f"encode {name} {start}")
            for name, ds in sets.items() for start in range(0, len(ds), rows_per_cell)]


def encode_shard(content: dict, base_dir: str, set_name: str, start: int, stop: int, load_args: dict, cache,
                 batch_size: int) -> int:
    """Encode rows ``start:stop`` of one set of a spec into the cache; returns how many rows the bank has."""
    from .executor import worker_backbone

    spec = BenchmarkSpec.from_dict({k: v for k, v in content.items() if v is not None}, base_dir=base_dir)
    ds = spec.id_dataset() if set_name == "id" else spec.ood_datasets()[set_name.split("/", 1)[1]]
    bank = FeatureBank.encode(ds, worker_backbone(load_args), indices=list(range(start, stop)),
                              batch_size=batch_size, cache=cache, progress=False)
    return len(bank)

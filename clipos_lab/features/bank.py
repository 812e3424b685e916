"""FeatureBank: the encoded features of one dataset, as every method reads them.

A bank of a whole cache entry is a memory map of its files (no copy). A bank of some rows of it (a few-shot
draw from a large pool) reads each token kind only when a method first touches it: CoOp reads the global
features and nothing else, LoCoOp adds the local features, CLIP-OS the local and surgery tokens, and the
final-layer ``patches`` that no default method uses are never copied into memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..files import ensure_writable_dir
from .keys import default_cache_dir
from .store import DONE, SKIPPED, FeatureStore

MAIN_KINDS = ("global", "patches", "surgery")

Lazy = Callable[[], torch.Tensor]  # a token kind read on first use


class FeatureBank:
    """Features of one dataset: global ``(N, D)``, patches and surgery tokens ``(N, P, D)``, labels, ids.

    ``extra`` holds further token kinds of the backbone by name (e.g. ``local``, ``layer6``), also reachable as
    attributes (``bank.local``). A kind may be given as a tensor or as a function that reads it (called once, on
    first use). ``meta["skipped"]`` lists the images that could not be read (id and error).
    """

    def __init__(self, global_, patches, surgery, labels: torch.Tensor, ids: Sequence[str],
                 classnames: Sequence[str], grid, meta: dict | None = None, extra: dict | None = None):
        self._kinds: dict[str, torch.Tensor | Lazy] = {}
        for name, value in {"global": global_, "patches": patches, "surgery": surgery, **(extra or {})}.items():
            if value is not None:
                self._kinds[name] = value
        self.labels, self.ids, self.classnames = labels, list(ids), list(classnames)
        self.grid, self.meta = tuple(grid), dict(meta or {})

    # ------------------------------------------------------------------------------------------ token kinds
    def kind(self, name: str) -> torch.Tensor | None:
        """The tokens of kind ``name`` (read now if they were not yet), or None when the bank has none."""
        value = self._kinds.get(name)
        if value is not None and not torch.is_tensor(value) and callable(value):
            value = self._kinds[name] = value()
        return value

    def kind_names(self) -> list[str]:
        """The token kinds this bank has, read or not."""
        return list(self._kinds)

    def loaded_kinds(self) -> list[str]:
        """The token kinds read into tensors so far (a drawn bank reads each on first use)."""
        return [k for k, v in self._kinds.items() if torch.is_tensor(v)]

    def _set(self, name: str, value) -> None:
        if value is None:
            self._kinds.pop(name, None)
        else:
            self._kinds[name] = value

    global_ = property(lambda self: self.kind("global"), lambda self, v: self._set("global", v))
    patches = property(lambda self: self.kind("patches"), lambda self, v: self._set("patches", v))
    surgery = property(lambda self: self.kind("surgery"), lambda self, v: self._set("surgery", v))

    @property
    def extra(self) -> dict[str, torch.Tensor]:
        return {k: self.kind(k) for k in self._kinds if k not in MAIN_KINDS}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self.__dict__.get("_kinds", {}):
            return self.kind(name)
        raise AttributeError(f"{type(self).__name__} has no attribute or token kind {name!r}")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"FeatureBank({len(self)} images, kinds {self.kind_names()}, grid {self.grid})"

    @property
    def skipped(self) -> list[dict]:
        """Images of this bank's dataset that could not be read: ``[{"id", "error"}]``."""
        return list(self.meta.get("skipped", []))

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every token kind this bank holds, by name (``global``, ``patches``, ``surgery``, extras), all read."""
        return {k: self.kind(k) for k in self._kinds}

    def _mapped(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> dict:
        """Every kind with ``fn`` applied: now to those read, on first use to those not read yet (read through
        this bank, so it is read once however many banks are made from this one)."""
        out = {}
        for k, v in self._kinds.items():
            out[k] = fn(v) if torch.is_tensor(v) else (lambda k=k: fn(self.kind(k)))
        return out

    @classmethod
    def from_tensors(cls, tensors: dict, labels, ids, classnames, grid, meta=None) -> "FeatureBank":
        extra = {k: v for k, v in tensors.items() if k not in MAIN_KINDS}
        return cls(tensors["global"], tensors.get("patches"), tensors.get("surgery"), labels, list(ids),
                   list(classnames), tuple(grid), dict(meta or {}), extra)

    def to(self, device: str | torch.device, non_blocking: bool = False) -> "FeatureBank":
        """The same bank with every tensor (features and labels) on ``device`` (kinds not read yet move when
        they are read)."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return FeatureBank.from_tensors(self._mapped(move), move(self.labels), self.ids, self.classnames,
                                        self.grid, self.meta)

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> "FeatureBank":
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.global_.device)
        return FeatureBank.from_tensors(self._mapped(lambda t: t[idx.to(t.device)]), self.labels.to(idx.device)[idx],
                                        [self.ids[i] for i in idx.tolist()], self.classnames, self.grid, self.meta)

    def select_ids(self, ids: Sequence[str]) -> "FeatureBank":
        """The rows of the given sample ids, in that order (e.g. a few-shot manifest)."""
        where = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in where]
        if missing:
            raise KeyError(f"{len(missing)} ids are not in this bank, e.g. {missing[:3]}")
        return self.subset([where[i] for i in ids])

    # ------------------------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write this bank as a store folder that :meth:`load` memory-maps back."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; remove it first or choose another folder")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.tensors().items()}
        store = FeatureStore(path, key=self.meta.get("key", "saved"), ids=self.ids,
                             labels=self.labels.tolist(), classnames=self.classnames,
                             info={k: v for k, v in self.meta.items() if k not in ("skipped", "n_skipped",
                                                                                   "cache_path")})
        with store.lock:
            store.prepare()
            store.write_rows(np.arange(len(self)), tensors, self.grid)
            store.record_skipped({s["id"]: s["error"] for s in self.skipped})

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True) -> "FeatureBank":
        """Open a store folder written by :meth:`save` or :meth:`encode` (every readable row, memory-mapped).

        ``verify``: rows whose state byte no writer gives are reported, and, when the files changed since they
        were last checked, every row is checked against its checksum (a ValueError names the folder)."""
        store = FeatureStore.open(path)
        with store.lock:
            if verify:
                store.check(repair=False)
        return cls.from_store(store, np.arange(store.n))

    @classmethod
    def from_store(cls, store: FeatureStore, rows: np.ndarray) -> "FeatureBank":
        """The bank of the given rows that were encoded (unreadable ones left out): a memory map of the files
        when that is every row, else each kind read (those rows only) on first use."""
        rows = np.asarray(rows, dtype=np.int64)
        state = store.state()
        keep = rows[state[rows] == DONE]
        in_rows = {store.ids[i] for i in rows[state[rows] == SKIPPED]}
        skipped_rows = [{"id": i, "error": e} for i, e in store.skipped().items() if i in in_rows]
        if not len(keep):
            raise ValueError(f"no readable image in dataset {store.info.get('dataset', '')!r} "
                             f"({len(skipped_rows)} skipped)")
        whole = len(keep) == store.n and np.array_equal(keep, np.arange(store.n))
        kinds = {}
        for name, spec in store.kinds.items():
            read = _reader(store.kind_path(name), spec, store.n, None if whole else keep)
            kinds[name] = read() if whole else read  # a whole map costs nothing; rows are copied on first use
        labels = torch.tensor([store.labels[i] for i in keep], dtype=torch.long)
        meta = {**store.info, "key": store.key, "n_skipped": len(skipped_rows), "skipped": skipped_rows,
                "cache_path": str(store.folder)}
        return cls.from_tensors(kinds, labels, [store.ids[i] for i in keep], store.classnames, store.grid, meta)

    # ---------------------------------------------------------------------------------------------- encoding
    @classmethod
    def encode(cls, dataset, backbone, batch_size: int = 32, surgery: bool = True, cache: bool | str | Path = True,
               progress: bool = True, patch_dtype: torch.dtype = torch.float16,
               indices: Sequence[int] | None = None, num_workers: int = 0,
               layers: Sequence[int] = ()) -> "FeatureBank":
        """Encode ``dataset`` with ``backbone`` (only rows not cached yet), then return its bank.

        ``indices`` restricts the work and the bank to those samples (e.g. the drawn few-shot images of a large
        training pool); ``num_workers`` decode and preprocess images in DataLoader worker processes; ``layers``
        (1-based block numbers) also stores those blocks' patch tokens as kinds ``layer<k>`` (a cache entry of
        its own).
        """
        return CachedDataset(dataset, backbone, batch_size, surgery, cache, progress, patch_dtype, num_workers,
                             layers).bank(indices)


class CachedDataset:
    """A dataset's cache entry, opened once (its files listed and stat'ed once): :meth:`bank` gives the bank of
    any rows, encoding only those not cached yet. A training pool's draws reuse it, so a draw costs the rows it
    reads, not a listing of the whole pool."""

    def __init__(self, dataset, backbone, batch_size: int = 32, surgery: bool = True,
                 cache: bool | str | Path = True, progress: bool = True, patch_dtype: torch.dtype = torch.float16,
                 num_workers: int = 0, layers: Sequence[int] = ()):
        self.dataset, self.backbone, self.layers = dataset, backbone, tuple(sorted(int(k) for k in layers))
        self.options = (batch_size, surgery, progress, patch_dtype, num_workers)
        self.cache, self.store = cache, None
        if cache is not False:
            folder = default_cache_dir() if cache is True else Path(cache)
            ensure_writable_dir(folder, "feature cache")  # before any encoding work, not after it
            self.store = FeatureStore.for_dataset(dataset, backbone, surgery, patch_dtype, folder, layers=self.layers)

    def bank(self, indices: Sequence[int] | None = None) -> FeatureBank:
        batch_size, surgery, progress, patch_dtype, num_workers = self.options
        if self.store is not None:
            rows = self.store.ensure(self.dataset, self.backbone, indices, batch_size, surgery, progress,
                                     patch_dtype, num_workers, self.layers)
            return FeatureBank.from_store(self.store, rows)
        folder = Path(tempfile.mkdtemp(prefix="clipos-bank-"))
        try:
            store = FeatureStore.for_dataset(self.dataset, self.backbone, surgery, patch_dtype, folder,
                                             temporary=True, layers=self.layers)
            rows = store.ensure(self.dataset, self.backbone, indices, batch_size, surgery, progress, patch_dtype,
                                num_workers, self.layers)
            bank = FeatureBank.from_store(store, rows)
            bank = FeatureBank.from_tensors(bank.tensors(), bank.labels, bank.ids, bank.classnames, bank.grid,
                                            bank.meta)  # read now: the folder goes
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # maps of the files stay valid until released
        bank.meta.pop("cache_path", None)
        return bank


def _reader(path: Path, spec: dict, n: int, rows: np.ndarray | None) -> Lazy:
    """A function that maps a kind's file (``rows`` None) or copies those rows out of it."""
    def read() -> torch.Tensor:
        mm = np.memmap(path, dtype=np.dtype(spec["dtype"]), mode="c", shape=(n, *spec["shape"]))
        tensor = torch.from_numpy(mm if rows is None else np.ascontiguousarray(mm[rows]))
        return tensor.view(torch.bfloat16) if spec.get("torch_dtype") == "torch.bfloat16" else tensor
    return read

"""FeatureBank: every image encoded once, streamed to disk, memory-mapped, and reused by every method.

The image encoder is frozen in all methods, so each token kind the backbone gives (global features, patch tokens,
value-value "surgery" tokens and any other tensor field of :class:`~clipos_lab.backbone.ImageFeatures`) is
computed once and cached under a key made of everything that could change it: the model, its weights, the
preprocessing, the surgery depth, the storage dtype and every file's identity (path, size, modification time) or
generator parameters. Training and scoring then never run the image encoder.

A cache entry is a :class:`FeatureStore`, a folder with one preallocated row-major file per token kind (row ``i``
= sample ``i`` of the dataset), a per-row state (to do / encoded / unreadable) and a CRC-32 per row and kind:

* encoding writes each batch straight to its rows, so peak memory depends on the batch, not on the dataset size;
* an interrupted encode resumes from the rows it wrote (a row counts once its data and checksum are written);
* only the rows asked for are encoded: a few-shot draw encodes its shots and nothing else of a 1.28 M image
  pool, and later draws reuse every row already there (files are sparse, so unwritten rows take no disk);
* a file lock serialises writers, so two processes encoding the same data neither corrupt nor duplicate work;
* checksums are verified (once per process) before rows are trusted, so a file that is readable but corrupted
  is detected and its rows re-encoded; a store that cannot be parsed at all is rebuilt;
* the finished bank is a memory map of those files (no copy) when all its rows are readable.

Location: ``$CLIPOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/clipos_lab``, else ``~/.cache/clipos_lab``;
``cache=False`` encodes into a temporary folder that is removed at once (the maps stay valid on POSIX).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from filelock import FileLock
from tqdm.auto import tqdm

from .files import atomic_path, check_name, ensure_writable_dir

FORMAT_VERSION = 2

_TODO, _DONE, _SKIPPED = 0, 1, 2
# rows whose checksums this process has checked, per store folder, valid while its files keep their stamp
_VERIFIED: dict[str, tuple[tuple, np.ndarray]] = {}


class CacheWarning(UserWarning):
    """A cache entry was unreadable or corrupted and is being rebuilt."""


class SkippedImageWarning(UserWarning):
    """An image could not be read and was left out of the bank."""


def default_cache_dir() -> Path:
    if os.environ.get("CLIPOS_CACHE_DIR"):
        return Path(os.environ["CLIPOS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "clipos_lab"


_MAIN_KINDS = ("global", "patches", "surgery")


@dataclass
class FeatureBank:
    """Features of one dataset: global ``(N, D)``, patches and surgery tokens ``(N, P, D)``, labels, ids.

    ``extra`` holds further token kinds of the backbone by name (e.g. ``local``), also reachable as attributes
    (``bank.local``). ``meta["skipped"]`` lists the images that could not be read (id and error).
    """

    global_: torch.Tensor
    patches: torch.Tensor | None
    surgery: torch.Tensor | None
    labels: torch.Tensor
    ids: list[str]
    classnames: list[str]
    grid: tuple[int, int]
    meta: dict = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "extra":
            raise AttributeError(name)
        extra = self.__dict__.get("extra") or {}
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or token kind {name!r}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def skipped(self) -> list[dict]:
        """Images of this bank's dataset that could not be read: ``[{"id", "error"}]``."""
        return list(self.meta.get("skipped", []))

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every token kind this bank holds, by name (``global``, ``patches``, ``surgery``, extras)."""
        out = {"global": self.global_, "patches": self.patches, "surgery": self.surgery, **self.extra}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], labels, ids, classnames, grid, meta=None):
        extra = {k: v for k, v in tensors.items() if k not in _MAIN_KINDS}
        return cls(tensors["global"], tensors.get("patches"), tensors.get("surgery"), labels, list(ids),
                   list(classnames), tuple(grid), dict(meta or {}), extra)

    def to(self, device: str | torch.device, non_blocking: bool = False) -> "FeatureBank":
        """The same bank with every tensor (features and labels) on ``device``."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return FeatureBank.from_tensors({k: move(v) for k, v in self.tensors().items()}, move(self.labels),
                                        self.ids, self.classnames, self.grid, self.meta)

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> "FeatureBank":
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.global_.device)
        tensors = {k: v[idx] for k, v in self.tensors().items()}
        return FeatureBank.from_tensors(tensors, self.labels.to(idx.device)[idx], [self.ids[i] for i in idx.tolist()],
                                        self.classnames, self.grid, self.meta)

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
        """Open a store folder written by :meth:`save` or :meth:`encode` (every readable row, memory-mapped)."""
        store = FeatureStore.open(path)
        with store.lock:
            rows = np.flatnonzero(store.state() == _DONE)
            if verify:
                bad = store.verify(rows)
                if len(bad):
                    raise ValueError(f"{path}: {len(bad)} rows fail their checksum; the cache is corrupted")
        return store.bank(np.arange(store.n))

    # ---------------------------------------------------------------------------------------------- encoding
    @classmethod
    def encode(cls, dataset, backbone, batch_size: int = 32, surgery: bool = True, cache: bool | str | Path = True,
               progress: bool = True, patch_dtype: torch.dtype = torch.float16,
               indices: Sequence[int] | None = None, num_workers: int = 0) -> "FeatureBank":
        """Encode ``dataset`` with ``backbone`` (only rows not cached yet), then return its bank.

        ``indices`` restricts the work and the bank to those samples (e.g. the drawn few-shot images of a large
        training pool); ``num_workers`` decode and preprocess images in DataLoader worker processes.
        """
        if cache is False:
            folder = Path(tempfile.mkdtemp(prefix="clipos-bank-"))
            try:
                store = FeatureStore.for_dataset(dataset, backbone, surgery, patch_dtype, folder, temporary=True)
                bank = store.ensure(dataset, backbone, indices, batch_size, surgery, progress, patch_dtype,
                                    num_workers)
            finally:
                shutil.rmtree(folder, ignore_errors=True)  # maps of the files stay valid until released
            bank.meta.pop("cache_path", None)
            return bank
        folder = default_cache_dir() if cache is True else Path(cache)
        ensure_writable_dir(folder, "feature cache")  # before any encoding work, not after it
        store = FeatureStore.for_dataset(dataset, backbone, surgery, patch_dtype, folder)
        return store.ensure(dataset, backbone, indices, batch_size, surgery, progress, patch_dtype, num_workers)


# ------------------------------------------------------------------------------------------------- the store
class FeatureStore:
    """One dataset's cache folder: per token kind a ``(N, *row)`` file, row states, CRC-32 per row and kind."""

    def __init__(self, folder: str | os.PathLike, key: str, ids: Sequence[str], labels: Sequence[int],
                 classnames: Sequence[str], info: dict | None = None):
        self.folder = Path(folder)
        self.key, self.ids, self.labels = key, list(ids), [int(x) for x in labels]
        self.classnames, self.info = list(classnames), dict(info or {})
        self.n = len(self.ids)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(self.folder / ".lock"))
        self.kinds: dict[str, dict] = {}
        self.grid: tuple[int, int] | None = None
        self._verified = np.zeros(self.n, dtype=bool)

    def _stamp(self) -> tuple:
        files = [self._kind_path(k) for k in self.kinds] + [self.folder / "crc.u32"]
        return tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.exists())

    def _recall_verified(self) -> None:
        stamp, rows = _VERIFIED.get(str(self.folder), ((), None))
        if rows is not None and len(rows) == self.n and stamp == self._stamp():
            self._verified = rows.copy()

    def _remember_verified(self) -> None:
        _VERIFIED[str(self.folder)] = (self._stamp(), self._verified.copy())

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def for_dataset(cls, dataset, backbone, surgery, patch_dtype, folder: Path, temporary: bool = False):
        key = cache_key(dataset, backbone, surgery, patch_dtype)
        name = check_name(str(getattr(dataset, "name", "dataset")), "dataset name")  # never a path outside
        store_folder = folder if temporary else folder / f"{name}-{key[:20]}"
        info = {"model": backbone.name, "weights": backbone.weights_id, "dataset": getattr(dataset, "name", ""),
                "surgery_blocks": backbone.surgery_blocks if surgery else 0, "patch_dtype": str(patch_dtype)}
        return cls(store_folder, key, [s.id for s in dataset.samples], [int(s.label) for s in dataset.samples],
                   dataset.classnames, info)

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "FeatureStore":
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            index = json.loads((folder / "index.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{folder} is not a clipos_lab feature store ({err})") from err
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder} is not a clipos_lab feature store of format {FORMAT_VERSION}")
        store = cls(folder, meta["key"], index["ids"], index["labels"], meta["classnames"], meta.get("info"))
        store._read_meta()
        store._recall_verified()
        return store

    def _paths(self):
        return self.folder / "meta.json", self.folder / "index.json", self.folder / "state.u8"

    def prepare(self) -> None:
        """Under the lock: check the folder belongs to this key and is whole, else (re)build its skeleton."""
        meta_path, index_path, state_path = self._paths()
        if meta_path.exists():
            try:
                self._read_meta()
                self._recall_verified()
                return
            except Exception as err:  # truncated, foreign or half-deleted: never trust it
                warnings.warn(f"feature cache {self.folder} is unreadable ({type(err).__name__}: {err}); "
                              "rebuilding it", CacheWarning)
                for p in self.folder.iterdir():
                    if p.name != ".lock":
                        p.unlink() if p.is_file() else shutil.rmtree(p, ignore_errors=True)
        self.kinds, self.grid = {}, None
        self._verified[:] = False
        _VERIFIED.pop(str(self.folder), None)
        with atomic_path(index_path) as tmp:
            tmp.write_text(json.dumps({"ids": self.ids, "labels": self.labels}))
        _allocate(state_path, self.n)
        self._write_meta()

    def _write_meta(self) -> None:
        meta = {"format": FORMAT_VERSION, "key": self.key, "n": self.n, "classnames": self.classnames,
                "grid": list(self.grid) if self.grid else None, "kinds": self.kinds, "info": self.info}
        with atomic_path(self.folder / "meta.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))

    def _read_meta(self) -> None:
        meta_path, index_path, state_path = self._paths()
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_VERSION or meta.get("key") != self.key or meta.get("n") != self.n:
            raise ValueError("written for another key, format or dataset size")
        self.kinds, self.grid = meta["kinds"], tuple(meta["grid"]) if meta.get("grid") else None
        if state_path.stat().st_size != self.n:
            raise ValueError(f"{state_path.name} has {state_path.stat().st_size} bytes for {self.n} rows")
        for name, spec in self.kinds.items():
            size = self._kind_path(name).stat().st_size
            if size != self.n * spec["row_bytes"]:
                raise ValueError(f"{name} file has {size} bytes, expected {self.n * spec['row_bytes']}")
        if self.kinds and (self.folder / "crc.u32").stat().st_size != self.n * 4 * len(self.kinds):
            raise ValueError("checksum file has the wrong size")

    def _kind_path(self, name: str) -> Path:
        return self.folder / f"{name}.bin"

    # ------------------------------------------------------------------------------------------------ state
    def state(self) -> np.ndarray:
        return np.fromfile(self.folder / "state.u8", dtype=np.uint8, count=self.n)

    def skipped(self) -> dict[str, str]:
        path = self.folder / "skipped.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def record_skipped(self, errors: dict[str, str]) -> None:
        if not errors:
            return
        known = {**self.skipped(), **errors}
        with atomic_path(self.folder / "skipped.json") as tmp:
            tmp.write_text(json.dumps(known, indent=1))
        where = {i: k for k, i in enumerate(self.ids)}
        _put_rows(self.folder / "state.u8", [where[i] for i in errors], np.full((len(errors), 1), _SKIPPED,
                                                                                 dtype=np.uint8))

    # ------------------------------------------------------------------------------------------------ writing
    def write_rows(self, rows: np.ndarray, tensors: dict[str, torch.Tensor], grid) -> None:
        """Write encoded rows (data, then checksums, then state: a row counts only once all three are there)."""
        arrays = {k: _to_numpy(v) for k, v in tensors.items()}
        if not self.kinds:
            for name, arr in arrays.items():
                self.kinds[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape[1:]),
                                    "row_bytes": int(arr[0].nbytes), "torch_dtype": str(tensors[name].dtype)}
                _allocate(self._kind_path(name), self.n * arr[0].nbytes)
            _allocate(self.folder / "crc.u32", self.n * 4 * len(self.kinds))
            self.grid = tuple(int(g) for g in grid)
            self._write_meta()
        elif set(arrays) != set(self.kinds):
            raise ValueError(f"backbone gave token kinds {sorted(arrays)}, the cache holds {sorted(self.kinds)}")
        crcs = np.empty((len(rows), len(self.kinds)), dtype=np.uint32)
        for j, (name, spec) in enumerate(self.kinds.items()):
            arr = np.ascontiguousarray(arrays[name].astype(np.dtype(spec["dtype"]), copy=False))
            if list(arr.shape[1:]) != spec["shape"]:
                raise ValueError(f"{name} rows have shape {arr.shape[1:]}, the cache holds {spec['shape']}")
            _put_rows(self._kind_path(name), rows, arr)
            crcs[:, j] = [zlib.crc32(r.tobytes()) for r in arr]
        _put_rows(self.folder / "crc.u32", rows, crcs)
        _put_rows(self.folder / "state.u8", rows, np.full((len(rows), 1), _DONE, dtype=np.uint8))
        self._verified[rows] = True
        self._remember_verified()

    # --------------------------------------------------------------------------------------------- checking
    def verify(self, rows: np.ndarray) -> np.ndarray:
        """Rows (of those given) whose stored bytes do not match their CRC-32; reads without mapping files."""
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[~self._verified[rows]]
        if not len(rows) or not self.kinds:
            return np.empty(0, dtype=np.int64)
        crcs = np.fromfile(self.folder / "crc.u32", dtype=np.uint32).reshape(self.n, len(self.kinds))
        bad = np.zeros(len(rows), dtype=bool)
        for j, (name, spec) in enumerate(self.kinds.items()):
            row_bytes = spec["row_bytes"]
            with open(self._kind_path(name), "rb") as fh:
                for k, row in enumerate(rows):
                    if not bad[k]:
                        data = os.pread(fh.fileno(), row_bytes, int(row) * row_bytes)
                        bad[k] = zlib.crc32(data) != crcs[row, j]
        self._verified[rows[~bad]] = True
        self._remember_verified()
        return rows[bad]

    # ---------------------------------------------------------------------------------------------- reading
    def bank(self, rows: np.ndarray) -> FeatureBank:
        """The bank of the given rows that were encoded (unreadable ones left out), memory-mapped if whole."""
        rows = np.asarray(rows, dtype=np.int64)
        state = self.state()
        keep = rows[state[rows] == _DONE]
        skipped = self.skipped()
        in_rows = {self.ids[i] for i in rows[state[rows] == _SKIPPED]}
        skipped_rows = [{"id": i, "error": e} for i, e in skipped.items() if i in in_rows]
        if not len(keep):
            raise ValueError(f"no readable image in dataset {self.info.get('dataset', '')!r} "
                             f"({len(skipped_rows)} skipped)")
        whole = len(keep) == self.n and np.array_equal(keep, np.arange(self.n))
        tensors = {}
        for name, spec in self.kinds.items():
            mm = np.memmap(self._kind_path(name), dtype=np.dtype(spec["dtype"]), mode="c",
                           shape=(self.n, *spec["shape"]))
            tensors[name] = torch.from_numpy(mm if whole else np.ascontiguousarray(mm[keep]))
            if spec.get("torch_dtype") == "torch.bfloat16":
                tensors[name] = tensors[name].view(torch.bfloat16)
        labels = torch.tensor([self.labels[i] for i in keep], dtype=torch.long)
        meta = {**self.info, "key": self.key, "n_skipped": len(skipped_rows), "skipped": skipped_rows,
                "cache_path": str(self.folder)}
        return FeatureBank.from_tensors(tensors, labels, [self.ids[i] for i in keep], self.classnames,
                                        self.grid, meta)

    # --------------------------------------------------------------------------------------------- encoding
    def ensure(self, dataset, backbone, indices, batch_size, surgery, progress, patch_dtype,
               num_workers=0) -> FeatureBank:
        """Under the lock: verify what is cached, encode the missing rows of ``indices``, return their bank."""
        rows = np.arange(self.n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n):
            raise IndexError(f"indices must lie in [0, {self.n}) for dataset {getattr(dataset, 'name', '')!r}")
        with self.lock:
            self.prepare()
            state = self.state()
            bad = self.verify(rows[state[rows] == _DONE])
            if len(bad):
                warnings.warn(f"feature cache {self.folder}: {len(bad)} rows fail their checksum (corrupted "
                              "file); re-encoding them", CacheWarning)
                _put_rows(self.folder / "state.u8", bad, np.zeros((len(bad), 1), dtype=np.uint8))
                state[bad] = _TODO
            todo = np.unique(rows[state[rows] == _TODO])
            if len(todo):
                for batch_rows, feats, errors in encode_batches(dataset, backbone, todo, batch_size, surgery,
                                                                progress, num_workers):
                    self.record_skipped(errors)
                    if feats is not None:
                        self.write_rows(batch_rows, feature_tensors(feats, patch_dtype), feats.grid)
            return self.bank(rows)


# ---------------------------------------------------------------------------------------------- input pipeline
class _Images(torch.utils.data.Dataset):
    """Rows of a dataset, decoded and preprocessed (in DataLoader workers when there are any)."""

    def __init__(self, dataset, rows, preprocess):
        self.dataset, self.rows, self.preprocess = dataset, [int(r) for r in rows], preprocess

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, k):
        from .data import ImageLoadError

        row = self.rows[k]
        try:
            return row, self.preprocess(self.dataset.load(row)), None
        except ImageLoadError as err:
            return row, None, (str(err.path), str(err))


def _collate(items):
    good = [(row, x) for row, x, err in items if err is None]
    errors = [(row, err) for row, x, err in items if err is not None]
    rows = np.array([row for row, _ in good], dtype=np.int64)
    return rows, (torch.stack([x for _, x in good]) if good else None), errors


def encode_batches(dataset, backbone, rows, batch_size: int, surgery: bool = True, progress: bool = False,
                   num_workers: int = 0) -> Iterator[tuple[np.ndarray, object, dict[str, str]]]:
    """``(rows, ImageFeatures or None, {id: error})`` per batch: decoding in a DataLoader (worker processes if
    ``num_workers``), pinned memory and non-blocking copies when the backbone is on CUDA."""
    device = torch.device(getattr(backbone, "device", "cpu"))
    cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(_Images(dataset, rows, backbone.preprocess), batch_size=batch_size,
                                         shuffle=False, num_workers=num_workers, collate_fn=_collate,
                                         pin_memory=cuda, persistent_workers=False)
    bar = tqdm(total=len(rows), disable=not progress, desc=f"encode {getattr(dataset, 'name', '')}", unit="img")
    for batch_rows, images, errors in loader:
        skipped = {}
        for row, (path, message) in errors:
            warnings.warn(f"skipping unreadable image {path}: {message}", SkippedImageWarning)
            skipped[dataset.samples[row].id] = message
        feats = None
        if images is not None:
            if cuda:
                images = images.to(device, non_blocking=True)
            feats = backbone.encode_images(images, surgery=surgery)
        bar.update(len(batch_rows) + len(errors))
        yield batch_rows, feats, skipped
    bar.close()


def feature_tensors(feats, patch_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor field of an ``ImageFeatures`` by kind name (``global_`` -> ``global``), on the CPU in its
    storage dtype: float32 for global features, ``patch_dtype`` for token kinds."""
    out = {}
    for f in dataclasses.fields(feats):
        value = getattr(feats, f.name)
        if torch.is_tensor(value):
            name = f.name.rstrip("_")
            out[name] = value.detach().to("cpu", torch.float32 if name == "global" else patch_dtype)
    return out


# ------------------------------------------------------------------------------------------------- file helpers
def _allocate(path: Path, size: int) -> None:
    """A file of ``size`` bytes of zeros; sparse where the file system allows, so unwritten rows cost no disk."""
    with open(path, "wb") as fh:
        fh.truncate(size)


def _put_rows(path: Path, rows, arr: np.ndarray) -> None:
    """Write ``arr[k]`` at row ``rows[k]`` of a row-major file (runs of consecutive rows in one call)."""
    arr = np.ascontiguousarray(arr)
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return
    row_bytes = arr[0].nbytes
    fd = os.open(path, os.O_WRONLY)
    try:
        start = 0
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for end in [*breaks.tolist(), len(rows)]:
            data = arr[start:end].tobytes()
            offset, written = int(rows[start]) * row_bytes, 0
            while written < len(data):
                written += os.pwrite(fd, data[written:], offset + written)
            start = end
    finally:
        os.close(fd)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: keep the bits
        return t.view(torch.int16).numpy()
    return t.numpy()


def cache_key(dataset, backbone, surgery: bool, patch_dtype: torch.dtype, local: bool = True) -> str:
    """sha256 over everything that changes the features: model, weights, preprocessing, files."""
    spec = {
        "format": FORMAT_VERSION, "model": backbone.name, "weights": backbone.weights_id,
        "preprocess": backbone.preprocess_id(), "surgery_blocks": backbone.surgery_blocks if surgery else 0,
        "patch_dtype": str(patch_dtype), "classnames": list(dataset.classnames),
        "precision": getattr(backbone, "precision", "fp32"),
    }
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for item in dataset.fingerprint():
        h.update(item.encode())
        h.update(b"\n")
    return h.hexdigest()

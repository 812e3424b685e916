"""FeatureStore: one dataset's cache folder, written row by row, checked once after every change it did not make.

Per token kind a preallocated row-major file (row ``i`` = sample ``i``), a per-row state (to do / encoded /
unreadable), a CRC-32 per row and kind, and ``verified.json``: the stamp (size, modification and change time,
inode) the files had when every encoded row was last known good. Rows are checked when written (their checksum is
computed from the encoder's output) and, when the files' stamp is not the recorded one (another program wrote
them, a copy, a crash between a write and its record), every encoded row is read and checked once, its checksum
and that its numbers are finite; the stamp is then recorded again. Opening an unchanged store of N rows therefore
reads a few small files, not N rows.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from filelock import FileLock

from ..files import atomic_path, check_name
from .encode import encode_batches, feature_tensors
from .keys import FORMAT_VERSION, CacheWarning, cache_key
from .rows import allocate, file_stamp, finite_rows, put_rows, row_crcs, to_numpy

TODO, DONE, SKIPPED = 0, 1, 2


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
        self._trusted = False  # every encoded row known good and the stamp recorded

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def for_dataset(cls, dataset, backbone, surgery, patch_dtype, folder: Path, temporary: bool = False,
                    layers: Sequence[int] = ()):
        # a temporary folder is nobody's cache: no key, so no stat of every file
        key = "temporary" if temporary else cache_key(dataset, backbone, surgery, patch_dtype, layers=layers)
        name = check_name(str(getattr(dataset, "name", "dataset")), "dataset name")  # never a path outside
        store_folder = folder if temporary else folder / f"{name}-{key[:20]}"
        info = {"model": backbone.name, "weights": backbone.weights_id, "dataset": getattr(dataset, "name", ""),
                "surgery_blocks": backbone.surgery_blocks if surgery else 0, "patch_dtype": str(patch_dtype)}
        if layers:
            info["layers"] = sorted(int(k) for k in layers)
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
        return store

    def _paths(self):
        return self.folder / "meta.json", self.folder / "index.json", self.folder / "state.u8"

    def prepare(self) -> None:
        """Under the lock: check the folder belongs to this key and is whole, else (re)build its skeleton."""
        meta_path, index_path, state_path = self._paths()
        if meta_path.exists():
            try:
                self._read_meta()
                return
            except Exception as err:  # truncated, foreign or half-deleted: never trust it
                warnings.warn(f"feature cache {self.folder} is unreadable ({type(err).__name__}: {err}); "
                              "rebuilding it", CacheWarning)
                for p in self.folder.iterdir():
                    if p.name != ".lock":
                        p.unlink() if p.is_file() else shutil.rmtree(p, ignore_errors=True)
        self.kinds, self.grid = {}, None
        (self.folder / "verified.json").unlink(missing_ok=True)
        with atomic_path(index_path) as tmp:
            tmp.write_text(json.dumps({"ids": self.ids, "labels": self.labels}))
        allocate(state_path, self.n)
        self._write_meta()
        self._trusted = True  # nothing encoded yet: nothing to doubt
        self._record_stamp()

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
            size = self.kind_path(name).stat().st_size
            if size != self.n * spec["row_bytes"]:
                raise ValueError(f"{name} file has {size} bytes, expected {self.n * spec['row_bytes']}")
        if self.kinds and (self.folder / "crc.u32").stat().st_size != self.n * 4 * len(self.kinds):
            raise ValueError("checksum file has the wrong size")

    def kind_path(self, name: str) -> Path:
        return self.folder / f"{name}.bin"

    # ------------------------------------------------------------------------------------------------ stamp
    def _stamp(self) -> list:
        names = [self.kind_path(k) for k in self.kinds] + [self.folder / "crc.u32", self.folder / "state.u8"]
        return file_stamp(names)

    def stamp_matches(self) -> bool:
        """Whether the files are exactly as this package last left them with every encoded row good."""
        try:
            return json.loads((self.folder / "verified.json").read_text()).get("stamp") == self._stamp()
        except (OSError, ValueError, AttributeError):
            return False

    def _record_stamp(self) -> None:
        if not self._trusted:
            return
        try:
            with atomic_path(self.folder / "verified.json") as tmp:
                tmp.write_text(json.dumps({"stamp": self._stamp()}))
        except OSError:  # a read-only cache: the rows are checked again next time, nothing is wrong
            pass

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
        put_rows(self.folder / "state.u8", [where[i] for i in errors], np.full((len(errors), 1), SKIPPED,
                                                                               dtype=np.uint8))
        self._record_stamp()

    def doubtful_states(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Rows whose state byte no writer of this package gives: a value other than to do / encoded /
        unreadable, or "unreadable" for an image ``skipped.json`` does not name."""
        invalid = np.flatnonzero(state > SKIPPED)
        marked = np.flatnonzero(state == SKIPPED)
        if len(marked):
            named = self.skipped()
            marked = marked[[self.ids[i] not in named for i in marked]]
        return {"an unknown state byte": invalid, "'unreadable' without a recorded error": marked}

    # ------------------------------------------------------------------------------------------------ writing
    def write_rows(self, rows: np.ndarray, tensors: dict[str, torch.Tensor], grid) -> None:
        """Write encoded rows (data, then checksums, then state: a row counts only once all three are there)."""
        arrays = {k: to_numpy(v) for k, v in tensors.items()}
        if not self.kinds:
            for name, arr in arrays.items():
                self.kinds[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape[1:]),
                                    "row_bytes": int(arr[0].nbytes), "torch_dtype": str(tensors[name].dtype)}
                allocate(self.kind_path(name), self.n * arr[0].nbytes)
            allocate(self.folder / "crc.u32", self.n * 4 * len(self.kinds))
            self.grid = tuple(int(g) for g in grid)
            self._write_meta()
        elif set(arrays) != set(self.kinds):
            raise ValueError(f"backbone gave token kinds {sorted(arrays)}, the cache holds {sorted(self.kinds)}")
        self._check_finite(rows, arrays)
        crcs = np.empty((len(rows), len(self.kinds)), dtype=np.uint32)
        for j, (name, spec) in enumerate(self.kinds.items()):
            arr = np.ascontiguousarray(arrays[name].astype(np.dtype(spec["dtype"]), copy=False))
            if list(arr.shape[1:]) != spec["shape"]:
                raise ValueError(f"{name} rows have shape {arr.shape[1:]}, the cache holds {spec['shape']}")
            put_rows(self.kind_path(name), rows, arr)
            crcs[:, j] = row_crcs(arr)
        put_rows(self.folder / "crc.u32", rows, crcs)
        put_rows(self.folder / "state.u8", rows, np.full((len(rows), 1), DONE, dtype=np.uint8))
        self._record_stamp()

    def _check_finite(self, rows, arrays: dict[str, np.ndarray]) -> None:
        from ..data.errors import DataError

        for name, arr in arrays.items():
            good = finite_rows(arr, self.kinds[name].get("torch_dtype"))
            if not good.all():
                first = self.ids[int(np.asarray(rows)[~good][0])]
                raise DataError(f"the model gave NaN or inf {name} features for {int((~good).sum())} images of "
                                f"dataset {self.info.get('dataset', '')!r} (e.g. {first!r}; cache folder "
                                f"{self.folder}): check the model weights and --precision; nothing was cached "
                                "for them")

    # --------------------------------------------------------------------------------------------- checking
    def verify(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows failing their CRC-32, rows holding NaN or inf)`` of those given; reads without mapping."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows) or not self.kinds:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        crcs = np.fromfile(self.folder / "crc.u32", dtype=np.uint32).reshape(self.n, len(self.kinds))
        corrupt, nonfinite = np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool)
        for j, (name, spec) in enumerate(self.kinds.items()):
            row_bytes, dtype = spec["row_bytes"], np.dtype(spec["dtype"])
            with open(self.kind_path(name), "rb") as fh:
                for k, row in enumerate(rows):
                    if corrupt[k] or nonfinite[k]:
                        continue
                    data = os.pread(fh.fileno(), row_bytes, int(row) * row_bytes)
                    if row_crcs(np.frombuffer(data, dtype=np.uint8)[None])[0] != crcs[row, j]:
                        corrupt[k] = True
                    elif not finite_rows(np.frombuffer(data, dtype=dtype)[None], spec.get("torch_dtype"))[0]:
                        nonfinite[k] = True
        return rows[corrupt], rows[nonfinite]

    def check(self, repair: bool) -> np.ndarray:
        """Under the lock: the state of every row, after doubtful rows were set back to "to do" (``repair``,
        with a :class:`CacheWarning` naming the folder) or reported (a ValueError). Encoded rows are read and
        checked only when the files are not as this package last left them."""
        state = self.state()
        known_good = self.stamp_matches()
        problems = {why: rows for why, rows in self.doubtful_states(state).items() if len(rows)}
        if not known_good:
            corrupt, nonfinite = self.verify(np.flatnonzero(state == DONE))
            problems.update({"a failed checksum (corrupted file)": corrupt, "NaN or inf features": nonfinite})
        problems = {why: rows for why, rows in problems.items() if len(rows)}
        if problems:
            said = "; ".join(f"{len(rows)} with {why} (e.g. {self.ids[int(rows[0])]!r})"
                             for why, rows in problems.items())
            if not repair:
                raise ValueError(f"feature cache {self.folder}: rows in doubt: {said}; encode the dataset again "
                                 "(FeatureBank.encode) to rebuild them")
            warnings.warn(f"feature cache {self.folder}: rows in doubt: {said}; re-encoding them", CacheWarning)
            bad = np.unique(np.concatenate(list(problems.values())))
            put_rows(self.folder / "state.u8", bad, np.full((len(bad), 1), TODO, dtype=np.uint8))
            state[bad] = TODO
        self._trusted = True
        if problems or not known_good:
            self._record_stamp()
        return state

    # --------------------------------------------------------------------------------------------- encoding
    def ensure(self, dataset, backbone, indices, batch_size, surgery, progress, patch_dtype,
               num_workers=0, layers: Sequence[int] = ()) -> np.ndarray:
        """Under the lock: check what is cached, encode the missing rows of ``indices``; returns those rows."""
        rows = np.arange(self.n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n):
            raise IndexError(f"indices must lie in [0, {self.n}) for dataset {getattr(dataset, 'name', '')!r}")
        with self.lock:
            self.prepare()
            state = self.check(repair=True)
            todo = np.unique(rows[state[rows] == TODO])
            if len(todo):
                for batch_rows, feats, errors in encode_batches(dataset, backbone, todo, batch_size, surgery,
                                                                progress, num_workers, layers):
                    self.record_skipped(errors)
                    if feats is not None:
                        self.write_rows(batch_rows, feature_tensors(feats, patch_dtype), feats.grid)
        return rows

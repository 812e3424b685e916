"""Row-major files of fixed-size rows: allocate sparse, write rows in place, read rows back, checksum them."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import torch


def allocate(path: Path, size: int) -> None:
    """A file of ``size`` bytes of zeros; sparse where the file system allows, so unwritten rows cost no disk."""
    with open(path, "wb") as fh:
        fh.truncate(size)


def put_rows(path: Path, rows, arr: np.ndarray) -> None:
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


def row_crcs(arr: np.ndarray) -> list[int]:
    """CRC-32 of each row of ``arr``."""
    return [zlib.crc32(r.tobytes()) for r in np.ascontiguousarray(arr)]


def finite_rows(arr: np.ndarray, torch_dtype: str | None = None) -> np.ndarray:
    """Per row: True when every number is finite (bfloat16 rows are stored as int16 bits)."""
    flat = arr.reshape(len(arr), -1)
    if torch_dtype == "torch.bfloat16":
        return torch.isfinite(torch.from_numpy(np.ascontiguousarray(flat)).view(torch.bfloat16)).all(1).numpy()
    if flat.dtype.kind != "f":
        return np.ones(len(arr), dtype=bool)
    return np.isfinite(flat).all(1)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: keep the bits
        return t.view(torch.int16).numpy()
    return t.numpy()


def file_stamp(paths) -> list[list]:
    """What changes when a file is written: size, modification and change time, inode (a copied or restored
    file gets a new change time, which no user tool can set back)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            out.append([Path(p).name, None])
            continue
        out.append([Path(p).name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return out

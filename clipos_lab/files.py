"""Writing files safely: atomic writes, plain JSON, user paths expanded, safe names, whole run folders.

Atomic: write to a temporary name beside the target, then rename. A crash or a full disk mid-write then leaves
either the old file or no file, never a half-written one that a later run would mistake for a good cache,
checkpoint or result. The same idea for a folder of results is :class:`~clipos_lab.runfolder.RunFolder` (its own
module; importable from here too); :func:`check_name` keeps names from specs inside their folder;
:func:`ensure_writable_dir` fails before long work, not after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; on success it replaces ``target``, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; writers may recreate them: fix it last
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(err, OSError) and err.filename is None:  # ENOSPC / EFBIG from write(): no path in them
            raise with_path(err, target) from err
        raise


def with_path(err: OSError, path: str | os.PathLike) -> OSError:
    """A copy of ``err`` that names ``path`` (a full disk or a file-size limit reports no file of its own)."""
    return type(err)(err.errno, err.strerror or str(err) or type(err).__name__, str(path))


def expand_path(path: str | os.PathLike) -> Path:
    """``~`` and ``$VARS`` expanded, as a shell would."""
    return Path(os.path.expandvars(os.path.expanduser(str(path))))


def to_jsonable(value):
    """Plain-Python copy of ``value``: numpy / torch scalars and arrays, paths, tuples; NaN and inf become None."""
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy array or scalar
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return str(value)
    return value


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON (atomically: a reader never sees half a file); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(to_jsonable(data), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path



def write_csv(rows, path: str | os.PathLike, columns=None) -> Path:
    """Rows (dicts or a pandas DataFrame) as CSV, atomically; ``columns`` fixes the header (and its order)."""
    import pandas as pd

    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if columns is not None:
        df = df.reindex(columns=list(columns))
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """A text file (Markdown, HTML), atomically, ending in one newline."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    return path

# ------------------------------------------------------------------------------------------------ safe names

class UnsafeNameError(ValueError):
    """A name from a spec or a user that would not stay one plain entry inside its folder."""


MAX_NAME_LENGTH = 120


def check_name(name, what: str = "name") -> str:
    """``name`` itself if it can be one file or folder name inside another folder; else :class:`UnsafeNameError`.

    Names from specs (benchmark, OOD set, suite member, dataset) become file and folder names. A name that holds a
    path separator, is ``.`` or ``..``, or has control characters could land outside its folder or collide with
    it, so it is refused before it touches a path (never silently rewritten, which could merge two names).
    """
    if not isinstance(name, str):
        raise UnsafeNameError(f"{what} {name!r} must be a string")
    problem = None
    if not name.strip():
        problem = "it is empty"
    elif name in (".", ".."):
        problem = "it names a folder itself"
    elif "/" in name or "\\" in name:
        problem = "it holds a path separator ('/' or '\\')"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "it holds control characters"
    elif name != name.strip():
        problem = "it starts or ends with white space"
    elif len(name.encode("utf-8")) > MAX_NAME_LENGTH:
        problem = f"it is longer than {MAX_NAME_LENGTH} bytes"
    if problem:
        suggestion = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.")[:40] or "my-set"
        raise UnsafeNameError(f"{what} {name!r} cannot be a file or folder name ({problem}); use letters, digits, "
                              f"'-', '_' and '.', e.g. {suggestion!r}")
    return name


# ------------------------------------------------------------------------------------------ writable folders

def slug(name: str) -> str:
    """A file-name stem for a display name ("CLIP-OS w/o PUC" -> "CLIP-OS_w_o_PUC"): letters, digits, - and _."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def ensure_writable_dir(folder: str | os.PathLike, what: str = "folder") -> Path:
    """Create ``folder`` if needed and prove it takes a new file, before any long work whose result goes there.

    Raises an ``OSError`` whose message names the folder and what to do (a read-only disk, a file in the way).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        if isinstance(err, FileExistsError) or (folder.exists() and not folder.is_dir()):
            reason = "a file is in the way, not a folder"
        raise type(err)(err.errno, f"cannot write to the {what} {folder} ({reason}); choose another folder or "
                                   f"fix its permissions") from err
    return folder


def describe_os_error(err: OSError) -> str:
    """One line for an OSError, always naming the path when the error knows it."""
    text = err.strerror or str(err) or type(err).__name__
    for name in (err.filename, err.filename2):
        if name is not None and str(name) not in text:
            text += f": {name}"
    return text


def remove_stale_temporaries(folder: str | os.PathLike, target_name: str) -> list[Path]:
    """Remove what :func:`atomic_path` left beside ``folder/target_name`` when a process was killed mid-write."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(f".{glob_escape(target_name)}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)


# --------------------------------------------------------------------------------- reproducible safetensors

def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file``, atomically and byte-reproducibly.

    safetensors stores the metadata through a hash map whose order changes from process to process, so the same
    tensors and metadata gave different bytes (and checksums) on every run. The header is rewritten here with
    the metadata keys sorted; tensors are already stored in a fixed order.
    """
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        if metadata:
            _sort_safetensors_metadata(Path(tmp))
    return path


def _sort_safetensors_metadata(path: Path) -> None:
    with open(path, "r+b") as fh:
        n = int.from_bytes(fh.read(8), "little")
        raw = fh.read(n)
        header = json.loads(raw)
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        header = {"__metadata__": header.pop("__metadata__"), **header}
        new = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(new) <= n:  # same JSON, other key order: fits; pad with spaces as safetensors does
            fh.seek(8)
            fh.write(new + b" " * (n - len(new)))
            return
        data = fh.read()  # a different escaping made it longer: write the whole file again
    new += b" " * (-len(new) % 8)
    with open(path, "wb") as fh:
        fh.write(len(new).to_bytes(8, "little") + new + data)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

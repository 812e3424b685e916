"""Writing files safely: atomic writes, plain JSON, user paths expanded, safe names, whole run folders.

Atomic: write to a temporary name beside the target, then rename. A crash or a full disk mid-write then leaves
either the old file or no file, never a half-written one that a later run would mistake for a good cache,
checkpoint or result. The same idea for a folder of results is :class:`RunFolder`; :func:`check_name` keeps
names from specs inside their folder; :func:`ensure_writable_dir` fails before long work, not after it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


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


# ------------------------------------------------------------------------------------------- run folders

RUN_MANIFEST = "run.json"


class RunFolder:
    """The output folder of one run, written as a whole or not at all, never mixed with an earlier run.

    The run writes into :attr:`path`, a staging folder beside ``target``. :meth:`commit` then records every file
    it wrote (size and sha256) in ``run.json`` and moves them into ``target``: one rename when ``target`` does not
    exist yet. A run killed before that leaves ``target`` as it was (plus a hidden staging folder that the next
    run into the same target removes once its process has ended).

    Nothing is replaced without ``overwrite=True``: if ``target`` already holds an earlier run (its ``run.json``)
    or any of the ``names`` this run will write, the constructor refuses before any work is done. With
    ``overwrite=True`` the earlier run's files (those in its ``run.json``, or under the given names) are replaced
    and removed; other files in ``target`` (figures, notes, status.json) are left alone.
    """

    def __init__(self, target: str | os.PathLike, names: list[str], overwrite: bool = False,
                 option: str = "--overwrite"):
        self.target = Path(os.path.abspath(expand_path(target)))  # "." has a name and a parent, too
        self.names = [check_name(n, "output name") for n in names] + [RUN_MANIFEST]
        self.overwrite = overwrite
        if self.target.exists() and not self.target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"output folder {self.target} is a file, not a folder; choose "
                                                    f"another output folder", str(self.target))
        self.previous = self._previous_files()
        if self.previous and not overwrite:
            shown = sorted({p.split("/")[0] for p in self.previous})
            raise FileExistsError(errno.EEXIST, f"output folder {self.target} already holds an earlier run "
                                                f"({', '.join(shown[:6])}{', ...' if len(shown) > 6 else ''}); pass "
                                                f"{option} to replace it, or choose another output folder",
                                  str(self.target))
        parent = self.target.parent
        if self.target.exists():
            ensure_writable_dir(self.target, "output folder")
            try:  # stage beside the target when possible (one rename at the end), else inside it
                ensure_writable_dir(parent, "output folder's parent")
            except OSError:
                parent = self.target
        else:
            ensure_writable_dir(parent, "output folder's parent")
        self._remove_dead_stagings(parent)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.staging-{os.getpid()}-", dir=parent))

    # the earlier run: files its manifest lists, else anything under the names this run writes
    def _previous_files(self) -> list[str]:
        if not self.target.is_dir():
            return []
        files = set()
        manifest = self.target / RUN_MANIFEST
        if manifest.is_file():
            files.add(RUN_MANIFEST)
            try:
                listed = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
                files |= {f["path"] for f in listed if _inside(f["path"])}
            except (ValueError, AttributeError, KeyError, TypeError):
                pass  # unreadable manifest: fall back on the names below
        for name in self.names:
            p = self.target / name
            if p.is_dir():
                files |= {q.relative_to(self.target).as_posix() for q in p.rglob("*") if not q.is_dir()}
            elif p.exists() or p.is_symlink():
                files.add(name)
        return sorted(f for f in files if (self.target / f).exists() or (self.target / f).is_symlink())

    def _remove_dead_stagings(self, parent: Path) -> None:
        for old in parent.glob(f".{glob_escape(self.target.name)}.staging-*"):
            try:
                pid = int(old.name.rsplit(".staging-", 1)[1].split("-")[0])
            except (ValueError, IndexError):
                continue
            if old.is_dir() and not _pid_alive(pid):
                shutil.rmtree(old, ignore_errors=True)

    def commit(self, info: dict | None = None) -> Path:
        """Write ``run.json`` and move the run into ``target``; returns ``target``."""
        files = sorted(p for p in self.path.rglob("*") if p.is_file())
        manifest = {**(info or {}), "files": [
            {"path": p.relative_to(self.path).as_posix(), "bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in files]}
        new = {f["path"] for f in manifest["files"]}
        write_json(manifest, self.path / RUN_MANIFEST)
        if not self.target.exists():
            os.rename(self.path, self.target)
            return self.target
        # target exists: its earlier run goes (manifest first, so a crash here never leaves a complete-looking
        # mix), then the new files move in, the manifest last
        self.previous = self._previous_files()
        if self.previous and not self.overwrite:  # another run wrote there while this one was working
            raise FileExistsError(errno.EEXIST, f"output folder {self.target} was written by another run meanwhile; "
                                                f"nothing replaced, this run's files are in {self.path}",
                                  str(self.target))
        (self.target / RUN_MANIFEST).unlink(missing_ok=True)
        for rel in self.previous:
            if rel not in new:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    (self.target / rel).unlink()
        for rel in sorted(new):
            dest = self.target / rel
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path / rel, dest)
        os.replace(self.path / RUN_MANIFEST, self.target / RUN_MANIFEST)
        for rel in self.previous:  # folders the earlier run made and this one did not fill
            for parent in list(Path(rel).parents)[:-1]:
                with contextlib.suppress(OSError):
                    (self.target / parent).rmdir()
        shutil.rmtree(self.path, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        """Throw the staging folder away (the run failed); ``target`` stays as it was."""
        shutil.rmtree(self.path, ignore_errors=True)


def _inside(rel: str) -> bool:
    return not Path(rel).is_absolute() and ".." not in Path(rel).parts


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

"""Run folders: the output folder of one run, written as a whole or not at all, never mixed with another run.

Why a module of its own: a run's results are many files (tables, manifests, prompts) that must appear together,
replace an earlier run only when asked, and never take a user's own files with them. :class:`RunFolder` stages
the run beside its target, records what it wrote in ``run.json`` and moves it in at the end.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .files import check_name, ensure_writable_dir, expand_path, glob_escape, sha256_file, write_json

RUN_MANIFEST = "run.json"


class RunFolder:
    """The output folder of one run, written as a whole or not at all, never mixed with an earlier run.

    The run writes into :attr:`path`, a staging folder beside ``target``. :meth:`commit` then records every file
    it wrote (size and sha256) in ``run.json`` and moves them into ``target``: one rename when ``target`` does not
    exist yet. A run killed before that leaves ``target`` as it was (plus a hidden staging folder that the next
    run into the same target removes once its process has ended).

    Nothing is replaced without ``overwrite=True``: if ``target`` already holds an earlier run (its ``run.json``)
    or any of the ``names`` this run will write, the constructor refuses before any work is done. With
    ``overwrite=True`` the earlier run's files go: those its ``run.json`` lists (a folder written before
    ``run.json`` existed: everything under the given names). Files the earlier run did not write stay, in
    ``target`` and in its sub-folders (a ``prompts/README.txt`` of your own, figures, status.json).

    When another run fills ``target`` while this one works (two runs into one new ``--out``), this run's complete
    results are kept in a visible folder beside ``target`` (``<target>.conflict-<time>-<pid>``), named in the
    error, and not deleted by :meth:`discard`.
    """

    def __init__(self, target: str | os.PathLike, names: list[str], overwrite: bool = False,
                 option: str = "--overwrite"):
        self.target = Path(os.path.abspath(expand_path(target)))  # "." has a name and a parent, too
        self.names = [check_name(n, "output name") for n in names] + [RUN_MANIFEST]
        self.overwrite = overwrite
        self.kept: Path | None = None  # where a run that lost a race to another one left its results
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

    def _previous_files(self) -> list[str]:
        """The earlier run's files: those its readable ``run.json`` lists, else anything under this run's names."""
        if not self.target.is_dir():
            return []
        files = set()
        manifest = self.target / RUN_MANIFEST
        listed = None
        if manifest.is_file():
            files.add(RUN_MANIFEST)
            try:
                listed = {f["path"] for f in json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
                          if _inside(f["path"])}
            except (ValueError, AttributeError, KeyError, TypeError, OSError):
                listed = None  # unreadable manifest: fall back on the names below
        if listed is not None:
            files |= listed  # the manifest is the record: other files under prompts/ etc. are the user's
        else:
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
            {"path": p.relative_to(self.path).as_posix(), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in files]}
        new = {f["path"] for f in manifest["files"]}
        write_json(manifest, self.path / RUN_MANIFEST)
        if not self.target.exists():
            try:
                os.rename(self.path, self.target)
                return self.target
            except OSError as err:  # another run created it in the meantime (a non-empty folder is not replaced)
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
        # target exists: its earlier run goes (manifest first, so a crash here never leaves a complete-looking
        # mix), then the new files move in, the manifest last
        self.previous = self._previous_files()
        if self.previous and not self.overwrite:  # another run wrote there while this one was working
            self._keep_beside()
            raise FileExistsError(errno.EEXIST, f"output folder {self.target} was filled by another run while this "
                                                f"one worked; nothing in it was replaced. This run's complete "
                                                f"results are kept in {self.kept}", str(self.target))
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

    def _keep_beside(self) -> None:
        """Move the finished staging folder to a visible name beside ``target`` (or keep it where it is)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept = self.target.with_name(f"{self.target.name}.conflict-{stamp}-{os.getpid()}")
        try:
            os.rename(self.path, kept)
        except OSError:
            kept = self.path  # cannot rename (staging inside target): it stays where it is
        self.kept = self.path = kept

    def discard(self) -> None:
        """Throw the staging folder away (the run failed); ``target`` stays as it was. A run that lost a race
        keeps its results (:attr:`kept`)."""
        if self.kept is None:
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


__all__ = ["RUN_MANIFEST", "RunFolder"]

"""Datasets from image folders and image lists, and writing a dataset back out as an image folder.

Folder trees are walked with linked folders followed once; a link that leads back up (to the dataset root or a
folder holding the class folder) or into another class folder is reported, not followed, so no image is listed
twice or under another class's label.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..files import atomic_path
from .errors import DataError, UnreadableFolderWarning
from .images import IMAGE_EXTENSIONS
from .samples import ImageDataset, Sample


class FolderDataset(ImageDataset):
    """An ImageFolder tree ``root/<class>/<images>`` (nested folders allowed), classes in sorted folder order.

    Folder names are often not what a text prompt should say ("n01440764", "maple_tree"), so an optional
    classnames file maps folders to pretty names: JSON ``{"folder": "pretty name"}`` or text lines
    ``folder pretty name``. Without ``classnames_file``, ``root/classnames.json`` or ``root/classnames.txt``
    is used when present; unmapped folders keep their folder name.
    """

    def __init__(self, root: str | os.PathLike, name: str | None = None,
                 classnames_file: str | os.PathLike | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"dataset folder {self.root} {what}: point `root` at a folder of class folders")
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DataError(f"no class folders in {self.root}: expected the layout root/<class>/<image files>")
        mapping = self._read_classnames(classnames_file, folders)
        samples = []
        self.unreadable_folders: list[str] = []  # sub-folders that could not be listed (their images are missing)
        for label, folder in enumerate(folders):
            files, problems = walk_image_files(self.root / folder, self.root)
            if (self.root / folder).as_posix() in problems:
                raise DataError(f"cannot read class folder {self.root / folder} "
                                f"({problems[(self.root / folder).as_posix()]}): fix its permissions or remove it")
            self.unreadable_folders += [f"{p} ({why})" for p, why in problems.items()]
            if not files:
                raise DataError(f"empty class '{folder}' at {self.root / folder}: add images or remove the folder")
            samples += [Sample(f.relative_to(self.root).as_posix(), label, str(f)) for f in files]
        if self.unreadable_folders:
            warnings.warn(f"dataset {self.root}: {len(self.unreadable_folders)} sub-folders were not read, so any "
                          f"images in them are left out: {'; '.join(self.unreadable_folders[:5])}",
                          UnreadableFolderWarning, stacklevel=2)
        super().__init__(name or self.root.resolve().name, [mapping.get(f, f) for f in folders], samples)

    def _read_classnames(self, classnames_file, folders: list[str]) -> dict[str, str]:
        if classnames_file is None:
            found = [p for p in (self.root / "classnames.json", self.root / "classnames.txt") if p.is_file()]
            if len(found) > 1:
                raise DataError(f"both {found[0]} and {found[1]} exist: keep one, or pass classnames_file")
            if not found:
                return {}
            classnames_file = found[0]
        path = Path(classnames_file).expanduser()
        if not path.is_file():
            raise DataError(f"classnames file {path} does not exist: fix `classnames_file` or remove it")
        mapping = parse_classnames(path)
        unknown = sorted(set(mapping) - set(folders))
        if unknown:
            raise DataError(f"classnames file {path} names folders that are not in {self.root}: {unknown}; "
                            f"the class folders are {folders}")
        return mapping


class ListDataset(ImageDataset):
    """Images named by a list file of ``<path relative to root> [<label>]`` lines, as OpenOOD ships its benchmarks.

    Labels index ``classnames_file`` (``<key> <pretty name>`` lines, in label order); without labels every image
    is in one class named after the dataset (OOD sets need no labels).
    """

    def __init__(self, root: str | os.PathLike, list_file: str | os.PathLike, name: str | None = None,
                 classnames_file: str | os.PathLike | None = None):
        self.root, list_path = Path(root).expanduser(), Path(list_file).expanduser()
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist: point `root` at the folder the list's paths "
                            "are relative to")
        if not list_path.is_file():
            raise DataError(f"image list {list_path} does not exist: point `list` at a file of '<path> <label>' lines")
        rows = [line.split() for line in list_path.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        classnames = list(parse_classnames(Path(classnames_file).expanduser()).values()) if classnames_file \
            else [name or list_path.stem]
        samples = []
        for k, parts in enumerate(rows):
            label = int(parts[1]) if len(parts) > 1 and classnames_file else 0
            rel = Path(parts[0])
            if rel.is_absolute() or ".." in rel.parts:
                raise DataError(f"{list_path}:{k + 1}: path {parts[0]!r} must stay inside {self.root}")
            samples.append(Sample(rel.as_posix(), label, str(self.root / rel)))
        if not samples:
            raise DataError(f"image list {list_path} names no image")
        super().__init__(name or list_path.stem, classnames, samples)


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``; sub-folders that could not be read are reported (UnreadableFolderWarning)."""
    files, problems = walk_image_files(folder)
    if problems:
        warnings.warn(f"{len(problems)} folders under {folder} were not read, so any images in them are left out: "
                      + "; ".join(f"{p} ({why})" for p, why in list(problems.items())[:5]), UnreadableFolderWarning,
                      stacklevel=2)
    return files


def walk_image_files(folder: Path, root: Path | None = None) -> tuple[list[Path], dict[str, str]]:
    """Image files under ``folder`` (sorted, hidden entries left out, linked folders followed once) and the
    sub-folders that were not listed, with why: nothing is left out without being reported.

    A linked folder is not followed when it leads back up (to ``folder`` itself or a folder holding it: its
    images would be listed again, other classes' under this one's label) or, with the dataset ``root`` given,
    into another folder of ``root`` (another class: its images belong to that class's label).
    """
    files, problems = [], {}
    seen = set()
    top = os.path.realpath(folder)
    top_root = None if root is None else os.path.realpath(root)

    def onerror(err: OSError) -> None:
        problems[Path(err.filename).as_posix()] = err.strerror or type(err).__name__

    def inside(path: str, parent: str) -> bool:
        return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)

    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        why = None
        if real in seen:  # a linked folder that leads back to one already read: a loop or a duplicate
            why = f"a link back to {real}, already read"
        elif dirpath != str(folder) and inside(top, real):
            why = f"a link back up to {real}, which holds {folder}"
        elif top_root is not None and inside(real, top_root) and not inside(real, top):
            why = f"a link into another class folder, {real}: its images belong to that class"
        if why:
            problems[Path(dirpath).as_posix()] = why
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames)
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return files, problems


def parse_classnames(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"classnames file {path} is not valid JSON: {e}") from e
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise DataError(f'classnames file {path} must be a JSON object {{"folder": "pretty name", ...}}')
        return mapping
    mapping = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected 'folder pretty name', got {line.strip()!r}")
        mapping[parts[0]] = parts[1].strip()
    return mapping


def write_folder(dataset: ImageDataset, root: str | os.PathLike) -> Path:
    """Write ``dataset`` as an ImageFolder of PNGs that :class:`FolderDataset` reads back with the same classes.

    Class folders are ``<label>_<name>`` (zero-padded label) so sorted folder order is label order, and a
    ``classnames.json`` restores the exact class names.
    """
    root = Path(root).expanduser()
    if root.exists() and any(root.iterdir()):
        raise DataError(f"write_folder: {root} is not empty; choose a new folder or delete the old one")
    counts = np.bincount(dataset.labels, minlength=len(dataset.classnames))
    if (counts == 0).any():
        empty = [dataset.classnames[k] for k in np.flatnonzero(counts == 0)]
        raise DataError(f"write_folder: classes {empty} of '{dataset.name}' have no samples, and an image folder "
                        f"cannot hold an empty class; take a subset of the classes first")
    width = len(str(len(dataset.classnames) - 1))
    folders = [f"{k:0{width}d}_{safe_file_name(c)}" for k, c in enumerate(dataset.classnames)]
    written = set()
    for i, sample in enumerate(dataset.samples):
        folder = folders[sample.label]
        stem = sample.id.removeprefix(f"{dataset.classnames[sample.label]}/")
        stem = safe_file_name(os.path.splitext(stem)[0] if stem.lower().endswith(IMAGE_EXTENSIONS) else stem)
        target = root / folder / f"{stem}.png"
        if target in written:
            raise DataError(f"write_folder: sample ids of '{dataset.name}' collide as file name {target}")
        written.add(target)
        with atomic_path(target) as tmp:
            dataset.load(i).save(tmp, format="PNG")
    with atomic_path(root / "classnames.json") as tmp:
        tmp.write_text(json.dumps(dict(zip(folders, dataset.classnames)), indent=1), encoding="utf-8")
    return root


def safe_file_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.replace("/", "__")).strip(".") or "_"

"""Where things live, independent of the current working directory.

Notebooks run from many places: JupyterLab starts kernels in the notebook's folder, nbmake does the same,
papermill keeps the caller's folder. So no notebook builds a path from its own location; every path goes
through this module:

* :func:`repo_root` is the source checkout holding the package (the folder with ``pyproject.toml`` next to
  ``clipos_lab/``), or the current folder when the package is installed elsewhere;
* :func:`output_dir` turns a relative output path such as ``"outputs/01_quickstart"`` into a folder under
  :func:`output_root` (``$CLIPOS_OUTPUT_ROOT`` when set, else the repository root) and creates it;
* :func:`resolve_input` finds an existing input file given relative to the current folder or the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..files import expand_path as _expand

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def repo_root() -> Path:
    """The source checkout this package was imported from, else the current working directory."""
    root = _PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "clipos_lab").is_dir():
        return root
    return Path.cwd().resolve()


def output_root() -> Path:
    """Base for relative output paths: ``$CLIPOS_OUTPUT_ROOT`` if set, else :func:`repo_root`."""
    env = os.environ.get("CLIPOS_OUTPUT_ROOT")
    return _expand(env).resolve() if env else repo_root()


def output_dir(path: str | os.PathLike, create: bool = True) -> Path:
    """An absolute output folder: ``path`` itself when absolute, else ``output_root() / path``; created."""
    if str(path).strip() == "":
        raise ValueError("the output path is empty: give a folder such as 'outputs/my_run'")
    p = _expand(path)
    if not p.is_absolute():
        p = output_root() / p
    p = p.resolve()
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"output path {p} exists and is not a folder")
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p


def resolve_input(path: str | os.PathLike) -> Path:
    """An existing input file or folder: absolute, or relative to the current folder, then to the repository.

    Raises FileNotFoundError naming every place that was tried.
    """
    p = _expand(path)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, repo_root() / p]
    for c in candidates:
        if c.exists():
            return c.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{path!s} does not exist (tried {tried})")


__all__ = ["output_dir", "output_root", "repo_root", "resolve_input"]

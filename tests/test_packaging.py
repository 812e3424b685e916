"""The wheel's package list (pyproject.toml) names every sub-package and every asset folder, so an added module
folder is not silently left out of `pip install clipos_lab` and setuptools prints no "would be ignored" warnings."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_and_asset_folder_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    code = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "clipos_lab").rglob("__init__.py")}
    assets = {"clipos_lab.assets" + "".join(f".{part}" for part in d.relative_to(ROOT / "assets").parts)
              for d in [ROOT / "assets", *(ROOT / "assets").rglob("*")] if d.is_dir()
              and all(part.isidentifier() for part in d.relative_to(ROOT / "assets").parts)}
    assert code - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert assets - listed == set(), "add these asset folders to [tool.setuptools] packages in pyproject.toml"
    assert listed - code - assets == set(), "pyproject.toml lists packages that do not exist"

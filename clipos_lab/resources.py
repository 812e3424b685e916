"""The files the package ships: the pocket model (config, weights, checksum) and the benchmark specs.

They live in the repository's top-level ``assets/`` folder. A wheel carries the same folder inside the package
as ``clipos_lab/assets`` (``pyproject.toml`` maps it there), so an installed package and a source checkout find
them the same way: the package copy when it exists, else the checkout's.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BackboneError, WeightsNotFoundError
from .files import sha256_file

_PACKAGE_DIR = Path(__file__).resolve().parent


def _assets_dir() -> Path:
    installed = _PACKAGE_DIR / "assets"
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / "assets"


ASSETS = _assets_dir()
BENCHMARKS = ASSETS / "benchmarks"
POCKET_DIR = ASSETS / "pocket"
POCKET_NAME = "pocket-vit"
POCKET_CONFIG = POCKET_DIR / f"{POCKET_NAME}.json"
POCKET_WEIGHTS = POCKET_DIR / f"{POCKET_NAME}.safetensors"
POCKET2_DIR = ASSETS / "pocket2"  # pocket v2 (issue 19): 14 x 14 patches, trained on the drawings
POCKET2_NAME = "pocket2-vit"
POCKET2_CONFIG = POCKET2_DIR / f"{POCKET2_NAME}.json"
POCKET2_WEIGHTS = POCKET2_DIR / f"{POCKET2_NAME}.safetensors"


sha256_of = sha256_file  # the name the training commands use


def verify_checksum(path: str | os.PathLike, what: str = "weights") -> str:
    """Check ``path`` against the digest in ``<path>.sha256``; returns the digest.

    Raises a clear error when the file is missing (e.g. a clone without it) or altered (e.g. a git-lfs pointer
    or a partial copy), rather than letting a broken model draw noise.
    """
    path = Path(path)
    sha_path = path.with_name(path.name + ".sha256")
    if not path.is_file():
        raise WeightsNotFoundError(f"{what} {path} are missing: restore them from the repository "
                                   "(git checkout -- assets/) or retrain them (python -m clipos_lab --help)")
    if not sha_path.is_file():
        raise BackboneError(f"checksum file {sha_path} is missing: restore it from the repository")
    expected = sha_path.read_text().split()[0]
    actual = sha256_of(path)
    if actual != expected:
        raise BackboneError(f"{what} {path} do not match their checksum ({actual[:12]}... != {expected[:12]}...): "
                            "the file is corrupt or was changed; restore it from the repository")
    return actual


def verify_pocket_weights(weights_path: str | os.PathLike = POCKET_WEIGHTS) -> str:
    """The shipped pocket model's weights, checked against their recorded sha256; returns the digest."""
    return verify_checksum(weights_path, "pocket model weights")

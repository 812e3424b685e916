"""Where feature caches live and what names a cache entry: everything that could change the stored features."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import torch

FORMAT_VERSION = 2
BASE_KINDS = ("global", "patches", "surgery", "local")  # what Backbone.encode_images gives


class CacheWarning(UserWarning):
    """A cache entry was unreadable or corrupted and is being rebuilt."""


class SkippedImageWarning(UserWarning):
    """An image could not be read and was left out of the bank."""


def default_cache_dir() -> Path:
    """``$CLIPOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/clipos_lab``, else ``~/.cache/clipos_lab``."""
    if os.environ.get("CLIPOS_CACHE_DIR"):
        return Path(os.environ["CLIPOS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "clipos_lab"


def layer_kind(layer: int) -> str:
    """The token-kind name of an intermediate block's patch tokens (1-based block number)."""
    return f"layer{int(layer)}"


def cache_key(dataset, backbone, surgery: bool, patch_dtype: torch.dtype, local: bool = True,
              layers: Sequence[int] = ()) -> str:
    """sha256 over everything that changes the features: model, weights, preprocessing, every file's identity
    (one ``stat`` per file), and the intermediate ``layers`` stored, if any."""
    spec = {
        "format": FORMAT_VERSION, "model": backbone.name, "weights": backbone.weights_id,
        "preprocess": backbone.preprocess_id(), "surgery_blocks": backbone.surgery_blocks if surgery else 0,
        "patch_dtype": str(patch_dtype), "classnames": list(dataset.classnames),
        "precision": getattr(backbone, "precision", "fp32"),
    }
    if layers:  # only then: caches of the default kinds keep the key they had
        spec["layers"] = sorted(int(k) for k in layers)
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for item in dataset.fingerprint():
        h.update(item.encode())
        h.update(b"\n")
    return h.hexdigest()

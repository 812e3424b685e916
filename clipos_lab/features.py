"""FeatureBank: every image encoded once, kept on disk, and reused by every method.

The image encoder is frozen in all methods, so a dataset's global features, patch tokens, value-value (surgery)
tokens and value-path local features (GL-MCM / LoCoOp) are computed once and cached under a key made of everything
that could change them: the model, its weights, the preprocessing, the surgery depth, the storage dtype and every
file's identity (path, size, modification time) or generator parameters. Training and scoring then never run the
image encoder.

Cache files are safetensors written atomically; a truncated or otherwise unreadable file is reported and
rebuilt, never trusted. Location: ``$CLIPOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/clipos_lab``, else
``~/.cache/clipos_lab``; ``cache=False`` turns caching off.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .files import check_name, ensure_writable_dir, save_safetensors

FORMAT_VERSION = 2  # 2: value-path local features stored beside the surgery tokens


class CacheWarning(UserWarning):
    """A cache file was unreadable and is being rebuilt."""


class SkippedImageWarning(UserWarning):
    """An image could not be read and was left out of the bank."""


def default_cache_dir() -> Path:
    if os.environ.get("CLIPOS_CACHE_DIR"):
        return Path(os.environ["CLIPOS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "clipos_lab"


@dataclass
class FeatureBank:
    """Features of one dataset: global ``(N, D)``, patch, surgery and local tokens ``(N, P, D)``, labels, ids.

    ``local`` holds GL-MCM's and LoCoOp's value-path local features (:func:`clipos_lab.backbone.value_path`).
    """

    global_: torch.Tensor
    patches: torch.Tensor | None
    surgery: torch.Tensor | None
    labels: torch.Tensor
    ids: list[str]
    classnames: list[str]
    grid: tuple[int, int]
    meta: dict = field(default_factory=dict)
    local: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> "FeatureBank":
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return FeatureBank(self.global_[idx], pick(self.patches), pick(self.surgery), self.labels[idx],
                           [self.ids[i] for i in idx.tolist()], list(self.classnames), self.grid, dict(self.meta),
                           local=pick(self.local))

    def select_ids(self, ids: Sequence[str]) -> "FeatureBank":
        """The rows of the given sample ids, in that order (e.g. a few-shot manifest)."""
        where = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in where]
        if missing:
            raise KeyError(f"{len(missing)} ids are not in this bank, e.g. {missing[:3]}")
        return self.subset([where[i] for i in ids])

    # ------------------------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        tensors = {"global": self.global_.contiguous(), "labels": self.labels.contiguous()}
        if self.patches is not None:
            tensors["patches"] = self.patches.contiguous()
        if self.surgery is not None:
            tensors["surgery"] = self.surgery.contiguous()
        if self.local is not None:
            tensors["local"] = self.local.contiguous()
        header = {"format": str(FORMAT_VERSION), "ids": json.dumps(self.ids),
                  "classnames": json.dumps(self.classnames), "grid": json.dumps(list(self.grid)),
                  "meta": json.dumps(self.meta)}
        save_safetensors(tensors, path, metadata=header)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureBank":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            if header.get("format") != str(FORMAT_VERSION):
                raise ValueError(f"{path} is not a clipos_lab feature bank of format {FORMAT_VERSION}")
            names = set(fh.keys())
            get = lambda k: fh.get_tensor(k) if k in names else None  # noqa: E731
            bank = cls(get("global"), get("patches"), get("surgery"), get("labels"), json.loads(header["ids"]),
                       json.loads(header["classnames"]), tuple(json.loads(header["grid"])),
                       json.loads(header["meta"]), local=get("local"))
        if len(bank.ids) != len(bank.global_) or len(bank.labels) != len(bank.ids):
            raise ValueError(f"{path} is inconsistent: {len(bank.ids)} ids for {len(bank.global_)} features")
        if not bool(torch.isfinite(bank.global_.float()).all()):
            raise ValueError(f"{path} holds NaN or infinite features")
        return bank

    # ---------------------------------------------------------------------------------------------- encoding
    @classmethod
    def encode(cls, dataset, backbone, batch_size: int = 32, surgery: bool = True, cache: bool | str | Path = True,
               progress: bool = True, patch_dtype: torch.dtype = torch.float16, local: bool = True) -> "FeatureBank":
        """Encode ``dataset`` with ``backbone``, or load it from the cache when the key matches."""
        key, path = None, None
        if cache is not False:
            key = cache_key(dataset, backbone, surgery, patch_dtype, local)
            folder = default_cache_dir() if cache is True else Path(cache)
            name = check_name(str(getattr(dataset, "name", "dataset")), "dataset name")  # never a path outside
            path = folder / f"{name}-{key[:20]}.safetensors"
            if path.exists():
                try:
                    bank = cls.load(path)
                    if bank.meta.get("key") == key:
                        bank.meta["cache_path"] = str(path)
                        return bank
                    warnings.warn(f"feature cache {path} belongs to another key; rebuilding it", CacheWarning)
                except Exception as err:  # truncated, corrupt or foreign file: never trust it
                    warnings.warn(f"feature cache {path} is unreadable ({type(err).__name__}: {err}); "
                                  "rebuilding it", CacheWarning)
                path.unlink(missing_ok=True)
            ensure_writable_dir(folder, "feature cache")  # before the encoding work, not after it
        bank = cls._encode(dataset, backbone, batch_size, surgery, progress, patch_dtype, local)
        if path is not None:
            bank.meta["key"] = key
            bank.save(path)
            bank.meta["cache_path"] = str(path)
        return bank

    @classmethod
    def _encode(cls, dataset, backbone, batch_size, surgery, progress, patch_dtype, local=True) -> "FeatureBank":
        from .data import ImageLoadError

        globals_, patches, surgeries, locals_, labels, ids, skipped = [], [], [], [], [], [], []
        batch, batch_meta = [], []

        def flush():
            feats = backbone.encode_images(torch.stack(batch), surgery=surgery, local=local)
            globals_.append(feats.global_.cpu())
            patches.append(feats.patches.to(patch_dtype).cpu())
            if feats.surgery is not None:
                surgeries.append(feats.surgery.to(patch_dtype).cpu())
            if feats.local is not None:
                locals_.append(feats.local.to(patch_dtype).cpu())
            for sample_id, label in batch_meta:
                ids.append(sample_id)
                labels.append(label)
            batch.clear()
            batch_meta.clear()

        bar = tqdm(range(len(dataset)), disable=not progress, desc=f"encode {getattr(dataset, 'name', '')}",
                   unit="img")
        for i in bar:
            sample = dataset.samples[i]
            try:
                image = dataset.load(i)
            except ImageLoadError as err:
                warnings.warn(f"skipping unreadable image {err.path}: {err}", SkippedImageWarning)
                skipped.append({"id": sample.id, "error": str(err)})
                continue
            batch.append(backbone.preprocess(image))
            batch_meta.append((sample.id, int(sample.label)))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        if not ids:
            raise ValueError(f"no readable image in dataset {getattr(dataset, 'name', '')!r} "
                             f"({len(skipped)} skipped)")
        grid = backbone.grid
        meta = {"model": backbone.name, "weights": backbone.weights_id, "dataset": getattr(dataset, "name", ""),
                "n_skipped": len(skipped), "skipped": skipped, "surgery_blocks": backbone.surgery_blocks}
        return cls(torch.cat(globals_), torch.cat(patches), torch.cat(surgeries) if surgeries else None,
                   torch.tensor(labels, dtype=torch.long), ids, list(dataset.classnames), grid, meta,
                   local=torch.cat(locals_) if locals_ else None)


def cache_key(dataset, backbone, surgery: bool, patch_dtype: torch.dtype, local: bool = True) -> str:
    """sha256 over everything that changes the features: model, weights, preprocessing, files."""
    spec = {
        "format": FORMAT_VERSION, "model": backbone.name, "weights": backbone.weights_id,
        "preprocess": backbone.preprocess_id(), "surgery_blocks": backbone.surgery_blocks if surgery else 0,
        "patch_dtype": str(patch_dtype), "classnames": list(dataset.classnames), "local": bool(local),
    }
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for item in dataset.fingerprint():
        h.update(item.encode())
        h.update(b"\n")
    return h.hexdigest()

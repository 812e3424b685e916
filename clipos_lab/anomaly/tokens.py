"""Patch tokens of several ViT layers, encoded once per dataset and cached on disk like the FeatureBank.

Anomaly maps compare patches, and patches of middle layers keep more local detail than the last layer's
(WinCLIP+, APRIL-GAN and MuSc all use several). Every stored layer goes through the model's own ``ln_post`` and
projection, so all layers live in the same joint space and the last one equals the FeatureBank's patch tokens.
The value-value (surgery) tokens and the global embedding come from the same forward pass (text prompts need
them). Layers are 1-based block numbers; ``-1`` means the last block.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..backbone import _block_with_value_value
from ..features import CacheWarning, cache_key, default_cache_dir
from ..files import atomic_path

FORMAT = "anomaly-tokens-1"


@dataclass
class TokenBank:
    """Per image: global ``(N, D)``, patch tokens per layer ``{layer: (N, P, D)}``, surgery ``(N, P, D)``."""

    ids: list[str]
    labels: torch.Tensor
    global_: torch.Tensor
    layers: dict[int, torch.Tensor]
    surgery: torch.Tensor | None
    grid: tuple[int, int]
    image_size: int
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices) -> "TokenBank":
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return TokenBank([self.ids[i] for i in idx.tolist()], self.labels[idx], self.global_[idx],
                         {k: v[idx] for k, v in self.layers.items()},
                         None if self.surgery is None else self.surgery[idx], self.grid, self.image_size,
                         dict(self.meta))

    def select_ids(self, ids: Sequence[str]) -> "TokenBank":
        where = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in where]
        if missing:
            raise KeyError(f"{len(missing)} ids are not in this token bank, e.g. {missing[:3]}")
        return self.subset([where[i] for i in ids])

    def tokens(self, layer: int | str) -> torch.Tensor:
        """Tokens of one layer (``"surgery"`` for the value-value path), as float32."""
        if layer == "surgery":
            if self.surgery is None:
                raise ValueError("this token bank has no surgery tokens (the backbone has surgery_blocks=0)")
            return self.surgery.float()
        if isinstance(layer, int) and layer < 0:  # -1 = the model's last block
            layer = int(self.meta.get("depth", max(self.layers))) + 1 + layer
        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not encoded; this bank has layers {sorted(self.layers)}")
        return self.layers[layer].float()


def resolve_layers(layers: Sequence[int | str], depth: int) -> list[int | str]:
    """Layer numbers made absolute (``-1`` -> ``depth``), checked against the model's depth."""
    out = []
    for layer in layers:
        if layer == "surgery":
            out.append(layer)
            continue
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"layer {layer!r}: give block numbers 1..{depth}, -1 for the last, or 'surgery'")
        absolute = depth + 1 + layer if layer < 0 else layer
        if not 1 <= absolute <= depth:
            raise ValueError(f"layer {layer} is outside the model's blocks 1..{depth}")
        out.append(absolute)
    return list(dict.fromkeys(out))


@torch.no_grad()
def forward_layers(backbone, images: torch.Tensor, layers: Sequence[int]):
    """One pass: ``(global (B, D), {layer: (B, P, D)}, surgery (B, P, D) or None)`` in the joint space."""
    visual = backbone.visual
    x = visual._embeds(images.to(backbone.device, dtype=visual.conv1.weight.dtype))
    blocks = visual.transformer.resblocks
    start = len(blocks) - backbone.surgery_blocks
    proj = visual.proj
    project = (lambda t: t @ proj) if proj is not None else (lambda t: t)
    out, vv = {}, None
    for number, block in enumerate(blocks, start=1):
        if number - 1 >= start:
            vv = x if vv is None else vv
            x, vv_out = _block_with_value_value(block, x)
            vv = vv + vv_out
        else:
            x = block(x)
        if number in layers:
            out[number] = project(visual.ln_post(x[:, 1:])).float()
    tokens = visual.ln_post(x)
    pooled = tokens[:, 1:].mean(1) if getattr(visual, "pool_type", "tok") == "avg" else tokens[:, 0]
    surgery = project(visual.ln_post(vv[:, 1:])).float() if vv is not None else None
    return project(pooled).float(), out, surgery


def encode_tokens(dataset, backbone, layers: Sequence[int | str] = (-1,), batch_size: int = 32, cache=True,
                  progress: bool = False, dtype: torch.dtype = torch.float16) -> TokenBank:
    """Encode ``dataset`` (any :class:`~clipos_lab.data.ImageDataset`), or load it from the cache."""
    depth = len(backbone.visual.transformer.resblocks)
    wanted = sorted(k for k in resolve_layers(layers, depth) if k != "surgery")
    path = None
    if cache is not False:
        base = cache_key(dataset, backbone, surgery=True, patch_dtype=dtype)
        key = hashlib.sha256(f"{FORMAT}|{base}|{wanted}".encode()).hexdigest()
        folder = default_cache_dir() if cache is True else Path(cache)
        path = folder / f"{getattr(dataset, 'name', 'dataset')}-tokens-{key[:20]}.safetensors"
        if path.exists():
            try:
                bank = _load(path)
                if bank.meta.get("key") == key:
                    return bank
            except Exception as err:  # truncated or foreign: rebuild, never trust
                warnings.warn(f"token cache {path} is unreadable ({type(err).__name__}: {err}); rebuilding it",
                              CacheWarning)
            path.unlink(missing_ok=True)
    globals_, per_layer, surgeries = [], {k: [] for k in wanted}, []
    for start in tqdm(range(0, len(dataset), batch_size), disable=not progress, desc=f"tokens {dataset.name}"):
        batch = torch.stack([backbone.preprocess(dataset.load(i))
                             for i in range(start, min(start + batch_size, len(dataset)))])
        g, out, s = forward_layers(backbone, batch, wanted)
        globals_.append(g.cpu())
        for k in wanted:
            per_layer[k].append(out[k].to(dtype).cpu())
        if s is not None:
            surgeries.append(s.to(dtype).cpu())
    bank = TokenBank([s.id for s in dataset.samples], torch.as_tensor(dataset.labels), torch.cat(globals_),
                     {k: torch.cat(v) for k, v in per_layer.items()}, torch.cat(surgeries) if surgeries else None,
                     backbone.grid, backbone.image_size,
                     {"model": backbone.name, "weights": backbone.weights_id, "dataset": dataset.name, "depth": depth})
    if path is not None:
        bank.meta["key"] = key
        _save(bank, path)
    return bank


def _save(bank: TokenBank, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {"global": bank.global_.contiguous(), "labels": bank.labels.contiguous()}
    tensors.update({f"layer{k}": v.contiguous() for k, v in bank.layers.items()})
    if bank.surgery is not None:
        tensors["surgery"] = bank.surgery.contiguous()
    header = {"format": FORMAT, "ids": json.dumps(bank.ids), "grid": json.dumps(list(bank.grid)),
              "image_size": str(bank.image_size), "meta": json.dumps(bank.meta)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def _load(path: Path) -> TokenBank:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata() or {}
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not an anomaly token bank ({FORMAT})")
        names = set(fh.keys())
        layers = {int(n[5:]): fh.get_tensor(n) for n in names if n.startswith("layer")}
        return TokenBank(json.loads(header["ids"]), fh.get_tensor("labels"), fh.get_tensor("global"), layers,
                         fh.get_tensor("surgery") if "surgery" in names else None,
                         tuple(json.loads(header["grid"])), int(header["image_size"]), json.loads(header["meta"]))


def tokens_of_images(images, backbone, layers: Sequence[int | str] = (-3, -2, -1)) -> TokenBank:
    """Tokens of a few PIL images given directly (no dataset, no cache): for a heat map of a single picture.

    ``method.fit(tokens_of_images(normal_pictures, backbone), backbone, "bottle").score(tokens_of_images([img],
    backbone))`` gives that picture's score and map without building a dataset.
    """
    images = list(images)
    if not images:
        raise ValueError("tokens_of_images needs at least one image")
    depth = len(backbone.visual.transformer.resblocks)
    wanted = sorted(k for k in resolve_layers(layers, depth) if k != "surgery")
    batch = torch.stack([backbone.preprocess(img.convert("RGB")) for img in images])
    g, out, s = forward_layers(backbone, batch, wanted)
    return TokenBank([f"image{i}" for i in range(len(images))], torch.zeros(len(images), dtype=torch.long),
                     g.cpu(), {k: v.cpu() for k, v in out.items()}, None if s is None else s.cpu(), backbone.grid,
                     backbone.image_size, {"model": backbone.name, "weights": backbone.weights_id, "depth": depth})

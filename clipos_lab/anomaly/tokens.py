"""Patch tokens of several ViT layers for anomaly maps, read from the one FeatureBank / FeatureStore.

Anomaly maps compare patches, and patches of middle layers keep more local detail than the last layer's
(WinCLIP+, APRIL-GAN and MuSc all use several). :meth:`FeatureBank.encode` with ``layers=`` stores the patch
tokens of those blocks as extra token kinds (``layer<k>``), through the model's own ``ln_post`` and projection,
so all layers live in the same joint space; the last block's are the bank's ``patches``. The value-value
(surgery) tokens and the global embedding come from the same forward pass (text prompts need them), and the
cache is the feature store's: streamed, locked, checksummed. Layers are 1-based block numbers; ``-1`` means the
last block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..data.errors import DataError, ImageLoadError
from ..features import FeatureBank, layer_kind


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


def encode_tokens(dataset, backbone, layers: Sequence[int | str] = (-1,), batch_size: int = 32, cache=True,
                  progress: bool = False, dtype: torch.dtype = torch.float16) -> TokenBank:
    """Encode ``dataset`` (any :class:`~clipos_lab.data.ImageDataset`) into the feature cache with the
    intermediate ``layers`` as extra token kinds, or read it from there."""
    depth = len(backbone.visual.transformer.resblocks)
    wanted = _block_numbers(layers, depth)
    middle = [k for k in wanted if k != depth]
    bank = FeatureBank.encode(dataset, backbone, batch_size=batch_size, cache=cache, progress=progress,
                              patch_dtype=dtype, layers=middle)
    if bank.skipped:  # anomaly masks are aligned with the dataset: a missing image would shift every row
        first = bank.skipped[0]
        sample = next((s for s in dataset.samples if s.id == first["id"]), None)
        if getattr(sample, "path", None):  # the runner leaves such an image out and counts it (encode_readable)
            raise ImageLoadError(sample.path, first["error"])
        raise DataError(f"{len(bank.skipped)} images of {getattr(dataset, 'name', 'the dataset')!r} could not be "
                        f"read (e.g. {first['id']}: {first['error']}); replace or remove them")
    return token_bank(bank, wanted, backbone)


def token_bank(bank: FeatureBank, wanted: Sequence[int], backbone) -> TokenBank:
    """The :class:`TokenBank` view of a FeatureBank holding the blocks ``wanted`` (absolute numbers)."""
    depth = len(backbone.visual.transformer.resblocks)
    layers = {k: (bank.patches if k == depth else bank.kind(layer_kind(k))) for k in wanted}
    meta = {"model": backbone.name, "weights": backbone.weights_id, "dataset": bank.meta.get("dataset", ""),
            "depth": depth, **({"cache_path": bank.meta["cache_path"]} if "cache_path" in bank.meta else {})}
    return TokenBank(list(bank.ids), bank.labels, bank.global_, layers, bank.surgery, tuple(bank.grid),
                     backbone.image_size, meta)


def _block_numbers(layers: Sequence[int | str], depth: int) -> list[int]:
    return sorted(k for k in resolve_layers(layers, depth) if k != "surgery")


def tokens_of_images(images, backbone, layers: Sequence[int | str] = (-3, -2, -1)) -> TokenBank:
    """Tokens of a few PIL images given directly (no dataset, no cache): for a heat map of a single picture.

    ``method.fit(tokens_of_images(normal_pictures, backbone), backbone, "bottle").score(tokens_of_images([img],
    backbone))`` gives that picture's score and map without building a dataset.
    """
    images = list(images)
    if not images:
        raise ValueError("tokens_of_images needs at least one image")
    depth = len(backbone.visual.transformer.resblocks)
    wanted = _block_numbers(layers, depth)
    batch = torch.stack([backbone.preprocess(img.convert("RGB")) for img in images])
    feats = backbone.encode_images(batch, layers=[k for k in wanted if k != depth])
    per_layer = {k: (feats.patches if k == depth else feats.layers[k]).cpu() for k in wanted}
    return TokenBank([f"image{i}" for i in range(len(images))], torch.zeros(len(images), dtype=torch.long),
                     feats.global_.cpu(), per_layer, None if feats.surgery is None else feats.surgery.cpu(),
                     backbone.grid, backbone.image_size,
                     {"model": backbone.name, "weights": backbone.weights_id, "depth": depth})

"""OOD scores from logits, with one sign convention: higher score = more in-distribution.

Logits are ``scale * cosine``. The MCM and GL-MCM scores of every method use ``scale = 1`` (temperature 1 over
cosine similarities, as the MCM paper does; prompt methods can opt into CLIP's logit scale with
``score_temperature=None``); predictions and 1 - p(unknown) use the logit scale the prompts were trained at.
With an extra *unknown* class (K + 1 columns) the softmax runs over all K + 1 columns and MCM takes the maximum
over the K ID columns only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mcm(logits: torch.Tensor, n_id: int | None = None) -> torch.Tensor:
    """Maximum softmax probability over the ID columns; ``logits`` ``(N, C)``, ``n_id`` defaults to ``C``."""
    probs = logits.float().softmax(-1)
    return probs[..., : n_id or probs.shape[-1]].amax(-1)


def unknown_score(logits: torch.Tensor) -> torch.Tensor:
    """1 - p(unknown) with the unknown class in the last column."""
    return 1.0 - logits.float().softmax(-1)[..., -1]


def local_mcm(patch_logits: torch.Tensor, n_id: int | None = None) -> torch.Tensor:
    """GL-MCM's local part: the largest ID softmax probability over all patches; ``(N, P, C)`` -> ``(N,)``."""
    return mcm(patch_logits, n_id).amax(-1)


def glmcm(global_logits: torch.Tensor, patch_logits: torch.Tensor, lam: float = 0.5,
          n_id: int | None = None) -> torch.Tensor:
    """GL-MCM: global MCM + ``lam`` x local MCM."""
    return mcm(global_logits, n_id) + lam * local_mcm(patch_logits, n_id)


def cosine_logits(features: torch.Tensor, text: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale * cos`` between features ``(..., D)`` and text ``(C, D)`` (both normalised here)."""
    return scale * F.normalize(features.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T


def patch_logits_chunked(patches: torch.Tensor, text: torch.Tensor, scale: float, reduce, chunk: int = 256):
    """Apply ``reduce`` to ``cosine_logits`` of patch tokens chunk by chunk, so (N, P, C) never sits in memory."""
    out = [reduce(cosine_logits(patches[i: i + chunk].to(text.device, non_blocking=True), text, scale))
           for i in range(0, len(patches), chunk)]
    return torch.cat(out) if out else torch.empty(0, device=text.device)

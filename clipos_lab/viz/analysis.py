"""Small numbers behind the pictures: thresholds, mistakes, mask agreement and localisation.

Conventions as in :mod:`clipos_lab.metrics`: scores are higher = more ID, ID is the positive class, an image is
*accepted* as ID when its score is at or above the threshold.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float).ravel()


def threshold_at_tpr(id_scores, tpr: float = 0.95) -> float:
    """The highest threshold that still accepts at least ``tpr`` of the ID images (score >= threshold).

    At this threshold the fraction of OOD images accepted is exactly :func:`clipos_lab.metrics.fpr_at_tpr`.
    """
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    s = np.sort(_np(id_scores))[::-1]
    if s.size == 0:
        raise ValueError("id_scores is empty")
    need = max(1, math.ceil(tpr * s.size - 1e-9))
    return float(s[need - 1])


def threshold_stats(id_scores, ood_scores, threshold: float) -> dict:
    """Counts and rates at one threshold: ID accepted (TPR) and OOD accepted (FPR), with totals."""
    a, b = _np(id_scores), _np(ood_scores)
    id_acc, ood_acc = int((a >= threshold).sum()), int((b >= threshold).sum())
    return {"threshold": float(threshold), "n_id": int(a.size), "n_ood": int(b.size),
            "id_accepted": id_acc, "id_rejected": int(a.size) - id_acc,
            "ood_accepted": ood_acc, "ood_rejected": int(b.size) - ood_acc,
            "tpr": id_acc / max(a.size, 1), "fpr": ood_acc / max(b.size, 1)}


def format_threshold_stats(stats: dict, ood_name: str = "OOD") -> str:
    """One line for :func:`threshold_stats`, printed by notebooks and widgets."""
    return (f"threshold {stats['threshold']:.4g}: ID accepted {stats['id_accepted']}/{stats['n_id']} "
            f"(TPR {stats['tpr']:.1%}), {ood_name} accepted {stats['ood_accepted']}/{stats['n_ood']} "
            f"(FPR {stats['fpr']:.1%}), {ood_name} rejected {stats['ood_rejected']}")


def worst_mistakes(id_scores, ood_scores: Mapping[str, object], n: int = 6) -> dict:
    """The most confident errors: OOD images with the highest scores, ID images with the lowest.

    Returns ``{"ood": [(set, index, score), ...], "id": [(index, score), ...]}``, worst first; indices are rows
    of the score arrays (i.e. of the feature banks).
    """
    pooled = [(name, i, float(v)) for name, s in ood_scores.items() for i, v in enumerate(_np(s))]
    pooled.sort(key=lambda t: -t[2])
    ids = _np(id_scores)
    low = np.argsort(ids, kind="stable")[:n]
    return {"ood": pooled[:n], "id": [(int(i), float(ids[i])) for i in low]}


def mask_iou(a, b) -> np.ndarray:
    """Per-image intersection over union of two boolean patch masks ``(N, P)`` (1 when both are empty)."""
    a, b = torch.as_tensor(a).bool(), torch.as_tensor(b).bool()
    inter = (a & b).sum(-1).float()
    union = (a | b).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).numpy()


def patch_box_cover(grid: tuple[int, int], image_size: int | tuple[int, int], box) -> np.ndarray:
    """Boolean ``(H * W,)``: which patches have their centre inside the pixel box ``(x0, y0, x1, y1)``."""
    h, w = (int(g) for g in grid)
    rows, cols = (image_size, image_size) if isinstance(image_size, int) else image_size
    cy = (np.arange(h) + 0.5) * rows / h
    cx = (np.arange(w) + 0.5) * cols / w
    x0, y0, x1, y1 = box
    inside = (cy[:, None] >= y0) & (cy[:, None] < y1) & (cx[None, :] >= x0) & (cx[None, :] < x1)
    return inside.reshape(-1)


def patch_region_cover(grid: tuple[int, int], image_size: int | tuple[int, int], region) -> np.ndarray:
    """Boolean ``(H * W,)``: which patches lie on the object. ``region`` is a pixel box (a patch counts when its
    centre is inside, :func:`patch_box_cover`) or an ``(rows, cols)`` coverage mask in [0, 1] (a patch counts
    when the object covers at least half of it; ``image_size`` is then the mask's own)."""
    if isinstance(region, (np.ndarray, torch.Tensor)) and region.ndim == 2:
        cover = torch.as_tensor(np.asarray(region, dtype=np.float32))
        cells = torch.nn.functional.adaptive_avg_pool2d(cover[None, None], tuple(int(g) for g in grid))[0, 0]
        return (cells >= 0.5).flatten().numpy()
    return patch_box_cover(grid, image_size, region)


def _region_cover(grid, image_size, region) -> np.ndarray | None:
    """The patches on the object, or None when there is no object (no region, an empty box, a mask that covers
    no patch by half)."""
    if region is None:
        return None
    if not (isinstance(region, (np.ndarray, torch.Tensor)) and region.ndim == 2) and \
            (region[2] <= region[0] or region[3] <= region[1]):
        return None
    cover = patch_region_cover(grid, image_size, region)
    return cover if cover.any() else None


def mask_localisation(masks, regions: Sequence, grid: tuple[int, int], image_size) -> dict:
    """How well ID-relevant masks sit on the object: for each image, the fraction of its ID-relevant patches on
    the object ("precision"; ``regions``: a ground-truth box or coverage mask per image, see
    :func:`patch_region_cover`), against the fraction of *all* patches on it (what a random mask of any size would
    score on average). Images without a region are skipped."""
    m = torch.as_tensor(masks).bool().numpy()
    precision, chance = [], []
    for row, region in zip(m, regions):
        cover = _region_cover(grid, image_size, region)
        if cover is not None and row.any():
            precision.append(float(cover[row].mean()))
            chance.append(float(cover.mean()))
    return {"mask_in_box": float(np.mean(precision)) if precision else float("nan"),
            "chance_in_box": float(np.mean(chance)) if chance else float("nan"), "n_images": len(precision)}


def localisation_per_image(masks, regions: Sequence, grid: tuple[int, int], image_size) -> np.ndarray:
    """Per image, the share of its ID-relevant patches on the object minus the object's share of all patches
    (0 = no better than a random mask; NaN where an image has no region or an empty mask)."""
    m = torch.as_tensor(masks).bool().numpy()
    lift = np.full(len(m), np.nan)
    for i, (row, region) in enumerate(zip(m, regions)):
        cover = _region_cover(grid, image_size, region)
        if cover is not None and row.any():
            lift[i] = float(cover[row].mean() - cover.mean())
    return lift


def median_index(values) -> int:
    """The position of the value nearest the median of the finite ``values`` (ties: the first): a typical
    example, neither the best nor the worst."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    if not finite.any():
        return 0
    return int(np.nanargmin(np.where(finite, np.abs(v - np.median(v[finite])), np.nan)))


__all__ = ["format_threshold_stats", "localisation_per_image", "mask_iou", "mask_localisation", "median_index",
           "patch_box_cover", "patch_region_cover", "threshold_at_tpr",
           "threshold_stats", "worst_mistakes"]

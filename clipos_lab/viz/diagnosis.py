"""Why did a few-shot draw lose to zero-shot MCM? The numbers that tell, for one fitted CLIP-OS run.

Four questions (docs/robustness.md), one function each, and :func:`diagnose_draw` for all of them:

* :func:`unknown_absorption`: does the *unknown* prompt swallow ID classes? ID accuracy over the K classes, the
  share of ID test images whose (K + 1)-way argmax is *unknown* (overall and for the worst class), and the mean
  p(unknown) of ID and OOD images;
* :func:`outlier_geometry`: where the synthetic outliers sit relative to the shots: cosine to the nearest shot,
  against the cosine between shots of different classes, and the share of ID test images whose nearest
  neighbour among shots and outliers is an outlier (those are the images *unknown* is trained to claim);
* :func:`relevance_stats`: were ID-relevant patches found: ``rho`` and, where the dataset knows where its objects
  are (boxes in world v1, exact masks in world v2), the share of ID-relevant patches on the object against chance;
* :func:`training_health`: did training diverge: first / last / lowest loss, non-finite values.

All similarities are cosines between L2-normalised features; everything is computed on cached features.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .analysis import mask_localisation


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.detach().float().cpu(), dim=-1)


def unknown_absorption(method, id_bank, ood_banks: dict | None = None) -> dict:
    """ID accuracy, share of ID test images classified *unknown* (overall, worst class) and mean p(unknown), at
    the logit scale the unknown class was trained at (what 1 - p(unknown) scores with)."""
    k = method.n_id_
    logits = method.logits(id_bank.global_).cpu()
    labels = id_bank.labels.cpu().long()
    out = {"acc": float((logits[:, :k].argmax(-1) == labels).float().mean())}
    if logits.shape[1] == k:
        return out
    to_unknown = logits.argmax(-1) == k
    per_class = [float(to_unknown[labels == c].float().mean()) for c in range(k) if bool((labels == c).any())]
    out.update(id_to_unknown=float(to_unknown.float().mean()), worst_class_to_unknown=max(per_class),
               p_unknown_id=float(logits.softmax(-1)[:, k].mean()))
    if ood_banks:
        p_ood = torch.cat([method.logits(b.global_).cpu().softmax(-1)[:, k] for b in ood_banks.values()])
        out["p_unknown_ood"] = float(p_ood.mean())
    return out


def outlier_geometry(outliers, train, id_bank=None) -> dict:
    """How close the synthetic outliers (an :class:`~clipos_lab.clipos.synthesis.Outliers`) come to the shots.

    ``outlier_to_shot``: mean (and max) cosine of each outlier to its nearest shot (global feature);
    ``shot_to_other_class``: mean cosine of each shot to its nearest shot of another class, the scale to read
    the first against; ``lam_extreme``: share of outliers with ``max(lam, 1 - lam) > 0.8`` (nearly one parent).
    With ``id_bank``, ``id_nearest_is_outlier``: share of ID test images nearer to an outlier than to every shot.
    """
    o = _unit(outliers.features)
    s = _unit(train.global_)
    labels = train.labels.cpu().long()
    to_shot = (o @ s.T).max(-1).values
    ss = s @ s.T
    ss[labels[:, None] == labels[None, :]] = -2.0  # only shots of other classes
    lam = outliers.lam.float()
    out = {"n_outliers": len(o), "outlier_to_shot": float(to_shot.mean()), "outlier_to_shot_max": float(to_shot.max()),
           "shot_to_other_class": float(ss.max(-1).values.mean()),
           "lam_extreme": float((torch.maximum(lam, 1 - lam) > 0.8).float().mean())}
    if id_bank is not None:
        t = _unit(id_bank.global_)
        out["id_nearest_is_outlier"] = float(((t @ o.T).max(-1).values > (t @ s.T).max(-1).values).float().mean())
    return out


def relevance_stats(relevance, regions: Sequence | None = None, image_size=None) -> dict:
    """``rho`` (mean, min) of the few-shot images and, with their object ``regions`` (boxes or coverage masks) and
    ``image_size``, the share of ID-relevant patches on the object (``mask_in_box``) against the share of all
    patches (``chance_in_box``)."""
    out = {"rho_mean": float(relevance.rho.float().mean()), "rho_min": float(relevance.rho.float().min())}
    if regions is not None and image_size is not None:
        out.update(mask_localisation(relevance.mask.cpu(), regions, relevance.grid, image_size))
    return out


def training_health(history: Sequence[dict]) -> dict:
    """First, last and lowest value of every loss in a prompt-training history; ``finite`` is False when any
    step had a NaN or infinite loss."""
    if not history:
        raise ValueError("training_health: empty history (was the method fitted?)")
    out: dict = {"steps": len(history)}
    finite = True
    for key in ("loss", "loss_id", "loss_outlier"):
        values = np.array([row[key] for row in history if key in row], dtype=float)
        if not len(values):
            continue
        finite &= bool(np.isfinite(values).all())
        out.update({f"{key}_first": float(values[0]), f"{key}_last": float(values[-1]),
                    f"{key}_min": float(np.nanmin(values))})
    out["finite"] = finite
    return out


def object_regions(dataset, ids: Sequence[str]) -> list | None:
    """Where the object of each sample id is (``dataset.object_region``: a box in world v1, a coverage mask in world
    v2), or None when the dataset knows none of them (folders, torchvision sets)."""
    where = {s.id: i for i, s in enumerate(dataset.samples)}
    regions = [dataset.object_region(where[sid]) for sid in ids]
    return regions if any(r is not None for r in regions) else None


def diagnose_draw(method, train, id_bank, ood_banks: dict | None = None, dataset=None) -> dict:
    """All four diagnoses of one fitted CLIP-OS run (``train``: its few-shot bank; ``dataset``: the pool the shots
    were drawn from, for object boxes)."""
    out = {**unknown_absorption(method, id_bank, ood_banks), **training_health(method.history_)}
    if getattr(method, "outliers_", None) is not None:
        out.update(outlier_geometry(method.outliers_, train, id_bank))
    if getattr(method, "relevance_", None) is not None:
        regions = None if dataset is None else object_regions(dataset, train.ids)
        size = getattr(dataset, "image_size", None)
        out.update(relevance_stats(method.relevance_, regions, None if size is None else (size, size)))
    return out


__all__ = ["diagnose_draw", "object_regions", "outlier_geometry", "relevance_stats", "training_health",
           "unknown_absorption"]

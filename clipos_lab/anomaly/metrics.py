"""Anomaly metrics: image AUROC, pixel AUROC, AUPRO up to a false-positive rate of 0.3, and F1-max.

Convention: higher score = more anomalous; anomalous images and defect pixels are the positive class.

AUPRO (Bergmann et al., MVTec-AD, IJCV 2021) weighs every connected defect region equally, so a large defect
cannot hide a missed small one: for each threshold, PRO is the mean over ground-truth regions (8-connected, per
image) of the fraction of the region above the threshold, and FPR the fraction of all normal pixels above it;
the PRO-over-FPR curve is integrated from 0 to ``max_fpr`` and divided by ``max_fpr`` (1 = perfect).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score

EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def _check(labels: np.ndarray, scores: np.ndarray, what: str) -> None:
    if labels.shape != scores.shape:
        raise ValueError(f"{what}: labels {labels.shape} and scores {scores.shape} differ in shape")
    if labels.all() or not labels.any():
        raise ValueError(f"{what} needs both normal and anomalous examples")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what}: scores contain NaN or inf")


def image_auroc(labels, scores) -> float:
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    _check(labels, scores, "image AUROC")
    return float(roc_auc_score(labels, scores))


def pixel_auroc(masks, maps) -> float:
    masks, maps = np.asarray(masks).astype(bool), np.asarray(maps, dtype=np.float64)
    _check(masks, maps, "pixel AUROC")
    return float(roc_auc_score(masks.ravel(), maps.ravel()))


def f1_max(labels, scores) -> float:
    """The best F1 over all thresholds (the usual threshold-free F1 of anomaly papers)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    _check(labels, scores, "F1-max")
    precision, recall, _ = precision_recall_curve(labels.ravel(), scores.ravel())
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())


def best_threshold(labels, scores) -> float:
    """The score threshold of F1-max (``score >= threshold`` = anomalous)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    _check(labels, scores, "best threshold")
    precision, recall, thresholds = precision_recall_curve(labels.ravel(), scores.ravel())
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(f1.argmax())])


def pro_curve(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, pro)`` at every distinct threshold, from the highest score down (exact, no threshold grid)."""
    masks, maps = np.asarray(masks).astype(bool), np.asarray(maps, dtype=np.float64)
    _check(masks, maps, "AUPRO")
    if masks.ndim != 3:
        raise ValueError(f"AUPRO needs (N, H, W) masks and maps, got {masks.shape}")
    weights = np.zeros(masks.shape, dtype=np.float64)  # each region's pixels share 1 / (n_regions * size)
    regions = []
    for i, mask in enumerate(masks):
        labelled, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
        if n:
            sizes = np.bincount(labelled.ravel())
            regions.append((i, labelled, sizes))
    n_regions = sum(len(s) - 1 for _, _, s in regions)
    for i, labelled, sizes in regions:
        w = np.zeros(len(sizes))
        w[1:] = 1.0 / (sizes[1:] * n_regions)
        weights[i] = w[labelled]
    order = np.argsort(-maps.ravel(), kind="stable")
    scores = maps.ravel()[order]
    pro = np.cumsum(weights.ravel()[order])
    fpr = np.cumsum(~masks.ravel()[order]) / float((~masks).sum())
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    return np.r_[0.0, fpr[last_of_tie]], np.r_[0.0, pro[last_of_tie]]


def aupro(masks, maps, max_fpr: float = 0.3) -> float:
    """Area under the PRO curve for FPR in ``[0, max_fpr]``, divided by ``max_fpr``."""
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr={max_fpr} must be in (0, 1]")
    fpr, pro = pro_curve(masks, maps)
    end = np.searchsorted(fpr, max_fpr, side="right")
    x = np.r_[fpr[:end], max_fpr]
    y = np.r_[pro[:end], np.interp(max_fpr, fpr, pro)]
    return float(np.trapezoid(y, x) / max_fpr)


def anomaly_metrics(labels, image_scores, masks=None, maps=None, max_fpr: float = 0.3) -> dict[str, float]:
    """Image AUROC and F1-max; with masks also pixel AUROC, AUPRO and pixel F1-max."""
    out = {"image_AUROC": image_auroc(labels, image_scores), "image_F1max": f1_max(labels, image_scores)}
    if masks is not None and maps is not None:
        out.update(pixel_AUROC=pixel_auroc(masks, maps), AUPRO=aupro(masks, maps, max_fpr),
                   pixel_F1max=f1_max(masks, maps))
    return out


METRICS = ("image_AUROC", "image_F1max", "pixel_AUROC", "AUPRO", "pixel_F1max")

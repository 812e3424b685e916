"""OOD-detection metrics for few-shot CLIP OOD experiments.

Conventions
-----------
* Scores are "higher = more in-distribution (ID)" (e.g. MCM max softmax).
* ID is the positive class by default. This matches MCM / LoCoOp, whose code
  calls ``get_measures(-in_score, -out_score)`` on negated scores.
* ``fpr95`` (ID positive): fraction of OOD samples accepted (score >= t) at the
  highest threshold t that keeps at least 95% of ID samples.
* ``fpr95_ood_positive`` (OpenOOD / pytorch-ood convention): OOD is positive
  with the negated score; fraction of ID samples flagged as OOD at the
  threshold that catches at least 95% of OOD samples. The two differ in
  general, so tables must say which one is reported.
* All metrics are returned as floats in [0, 1]; tables may show percentages.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

CONVENTION = ("ID positive; higher score = more ID; FPR95 = fraction of OOD "
              "accepted at the threshold keeping 95% of ID (lower is better); "
              "FPR95_OOD_POS = fraction of ID rejected at the threshold "
              "catching 95% of OOD")


def _as_1d(x, name: str) -> np.ndarray:
    """Convert list / numpy / torch input to a validated 1-D float array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric: {e}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _labelled(id_scores, ood_scores):
    """Stack scores with ID labelled 1, OOD labelled 0."""
    i = _as_1d(id_scores, "id_scores")
    o = _as_1d(ood_scores, "ood_scores")
    y = np.concatenate([np.ones(i.size), np.zeros(o.size)])
    return y, np.concatenate([i, o])


def _fpr_at_tpr(y: np.ndarray, s: np.ndarray, tpr: float) -> float:
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    # drop_intermediate=False: sklearn otherwise drops collinear points,
    # which can remove exactly the first point reaching the target TPR.
    fprs, tprs, _ = roc_curve(y, s, drop_intermediate=False)
    return float(fprs[np.argmax(tprs >= tpr)])  # tprs[-1] == 1, so found


def auroc(id_scores, ood_scores) -> float:
    """Area under ROC with ID positive (0.5 = chance, ties count 1/2)."""
    y, s = _labelled(id_scores, ood_scores)
    return float(roc_auc_score(y, s))


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95) -> float:
    """Fraction of OOD accepted (score >= t) at the first threshold keeping >= tpr of ID."""
    y, s = _labelled(id_scores, ood_scores)
    return _fpr_at_tpr(y, s, tpr)


def fpr95(id_scores, ood_scores) -> float:
    """FPR at 95% TPR, ID positive (MCM / LoCoOp convention)."""
    return fpr_at_tpr(id_scores, ood_scores, 0.95)


def fpr95_ood_positive(id_scores, ood_scores) -> float:
    """FPR at 95% TPR, OOD positive on negated scores (OpenOOD / pytorch-ood):
    fraction of ID flagged OOD at the threshold catching 95% of OOD."""
    y, s = _labelled(id_scores, ood_scores)
    return _fpr_at_tpr(1 - y, -s, 0.95)


def aupr_in(id_scores, ood_scores) -> float:
    """Average precision with ID positive, score as is."""
    y, s = _labelled(id_scores, ood_scores)
    return _unit(average_precision_score(y, s))


def aupr_out(id_scores, ood_scores) -> float:
    """Average precision with OOD positive, negated score."""
    y, s = _labelled(id_scores, ood_scores)
    return _unit(average_precision_score(1 - y, -s))


def _unit(value) -> float:
    """sklearn sums precision x recall steps, which can land a hair above 1 (1.0000000000000002)."""
    return float(min(1.0, max(0.0, value)))


def id_accuracy(predictions, labels) -> float:
    """Top-1 accuracy of predicted class indices on the ID test set."""
    p = _as_1d(predictions, "predictions")
    t = _as_1d(labels, "labels")
    if p.shape != t.shape:
        raise ValueError(f"predictions and labels differ in length: {p.size} vs {t.size}")
    return float(np.mean(p == t))


def ood_metrics(id_scores, ood_scores) -> dict:
    """All OOD metrics for one (ID, OOD) pair, values in [0, 1]."""
    i = _as_1d(id_scores, "id_scores")
    o = _as_1d(ood_scores, "ood_scores")
    return {
        "AUROC": auroc(i, o),
        "FPR95": fpr95(i, o),
        "FPR95_OOD_POS": fpr95_ood_positive(i, o),
        "AUPR_IN": aupr_in(i, o),
        "AUPR_OUT": aupr_out(i, o),
    }


def _check_same_keys(dicts, what: str) -> list:
    keys = list(dicts[0])
    for d in dicts[1:]:
        if set(d) != set(keys):
            raise ValueError(f"{what} have different metric keys: {sorted(keys)} vs {sorted(d)}")
    return keys


def results_table(per_ood: dict) -> list:
    """Rows ``{"ood": name, **metrics}`` plus an "Average" row (mean over OOD sets); the runner's tidy rows are
    built from these."""
    if not per_ood:
        raise ValueError("per_ood is empty")
    rows = [{"ood": name, **m} for name, m in per_ood.items()]
    keys = _check_same_keys(list(per_ood.values()), "per_ood entries")
    avg = {k: float(np.mean([m[k] for m in per_ood.values()])) for k in keys}
    return rows + [{"ood": "Average", **avg}]

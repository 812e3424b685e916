"""OOD-detection metrics for few-shot CLIP OOD experiments.

Conventions
-----------
* Scores are "higher = more in-distribution (ID)" (e.g. MCM max softmax).
* ID is the positive class by default. This matches MCM / LoCoOp, whose code
  calls ``get_measures(-in_score, -out_score)`` on negated scores.
* ``fpr95`` (ID positive): fraction of OOD samples accepted (score >= t) at the
  95%-recall point of the ROC curve. Which point that is is a *rule* (``FPR95_RULES``):

  - ``"first"`` (ours, the default): the first threshold, from the top, whose recall is at least 0.95;
    the reported FPR is always at a recall of 95% or more.
  - ``"closest"`` (MCM / LoCoOp's ``get_measures``): the ROC point whose recall is closest to 0.95, which can
    lie below 0.95; among points of equal distance the one with the most false positives.
  - ``"interpolate"`` (CLIPN): the ROC curve linearly interpolated at recall 0.95; where several thresholds
    give a recall of exactly 0.95, the last of them (most false positives), as ``np.interp`` (which scipy's
    ``interp1d`` calls for 1-D data) reads a repeated x.

  With few ID samples the rules can differ by tens of points, so tables name the rule.
* ``fpr95_ood_positive`` (OpenOOD / pytorch-ood convention): OOD is positive
  with the negated score; fraction of ID samples flagged as OOD at the
  threshold that catches at least 95% of OOD samples (same rules). The two differ in
  general, so tables must say which one is reported.
* All metrics are returned as floats in [0, 1]; tables may show percentages.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

FPR95_RULES = {
    "first": "first threshold with recall >= 0.95 (ours)",
    "closest": "ROC point with recall closest to 0.95, ties to more false positives (MCM / LoCoOp get_measures)",
    "interpolate": "ROC interpolated linearly at recall 0.95, ties to more false positives (CLIPN)",
}
DEFAULT_FPR95_RULE = "first"


def check_fpr95_rule(rule: str) -> str:
    if rule not in FPR95_RULES:
        raise ValueError(f"unknown FPR95 rule {rule!r}; choose one of {', '.join(FPR95_RULES)}")
    return rule


def convention(rule: str = DEFAULT_FPR95_RULE) -> str:
    """The sentence every table and ``metrics.json`` carries: positive class, score direction, FPR95 rule."""
    return ("ID positive; higher score = more ID; FPR95 = fraction of OOD accepted at 95% ID recall "
            f"(rule {check_fpr95_rule(rule)!r}: {FPR95_RULES[rule]}; lower is better); "
            "FPR95_OOD_POS = fraction of ID rejected at 95% OOD recall, OOD positive, same rule")


CONVENTION = convention()


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


class Curve:
    """The ROC of one (ID, OOD) pair as counts: ``tp[k]`` / ``fp[k]`` positives / negatives scored at or above
    the k-th highest distinct score (``k = 0``: none). Every metric below reads it, so scikit-learn's
    ``roc_curve`` (and its input checks) runs once per pair instead of once per metric; the OOD-positive view
    of the same scores is the curve read backwards (:meth:`flipped`), with no second pass over them."""

    def __init__(self, tp: np.ndarray, fp: np.ndarray):
        self.tp, self.fp = tp, fp
        self.n_pos, self.n_neg = int(tp[-1]), int(fp[-1])

    @classmethod
    def of(cls, id_scores, ood_scores) -> "Curve":
        y, s = _labelled(id_scores, ood_scores)
        # drop_intermediate=False: sklearn otherwise drops collinear points, which can remove exactly the first
        # point reaching a target recall. Point 0 is sklearn's (0, 0) start above the highest score.
        fprs, tprs, _ = roc_curve(y, s, drop_intermediate=False)
        n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
        return cls(np.rint(tprs * n_pos).astype(np.int64), np.rint(fprs * n_neg).astype(np.int64))

    def flipped(self) -> "Curve":
        """OOD positive on negated scores: a score at or below a threshold is the complement of one above the
        next higher threshold, so the points are the same counts, complemented and in reverse order."""
        return Curve(self.n_neg - self.fp[::-1], self.n_pos - self.tp[::-1])

    def auroc(self) -> float:
        return float(np.trapezoid(self.tp / self.n_pos, self.fp / self.n_neg))

    def average_precision(self) -> float:
        """Sum of precision x recall steps over the thresholds (scikit-learn's ``average_precision_score``)."""
        tp, fp = self.tp[1:], self.fp[1:]
        return _unit(np.sum(np.diff(self.tp / self.n_pos) * (tp / (tp + fp))))

    def fpr_at_tpr(self, tpr: float, rule: str = DEFAULT_FPR95_RULE) -> float:
        if not 0.0 < tpr <= 1.0:
            raise ValueError(f"tpr must be in (0, 1], got {tpr}")
        check_fpr95_rule(rule)
        fprs, tprs = self.fp / self.n_neg, self.tp / self.n_pos  # the same divisions as sklearn's roc_curve
        first = int(np.argmax(tprs >= tpr))  # tprs[-1] == 1, so found; first >= 1 since tprs[0] == 0
        if rule == "first":
            return float(fprs[first])
        if rule == "interpolate":
            exact = np.flatnonzero(tprs == tpr)
            if exact.size:  # a flat stretch at exactly tpr: linear interpolation (np.interp) reads its last point
                return float(fprs[exact[-1]])
            lo = first - 1  # tprs[lo] < tpr < tprs[first]: a straight line between the two points
            frac = (tpr - tprs[lo]) / (tprs[first] - tprs[lo])
            return float(fprs[lo] + frac * (fprs[first] - fprs[lo]))
        # "closest": recall as a ratio of counts (as the reference computes it, so float ties are the same), over
        # the thresholds down to the first that reaches full recall; the last (lowest) threshold among equally
        # close points wins, i.e. the one with the most false positives.
        tps, fps = self.tp[1:], self.fp[1:]
        stop = int(np.argmax(tps == self.n_pos)) + 1
        distance = np.abs(tps[:stop] / self.n_pos - tpr)
        pick = stop - 1 - int(np.argmin(distance[::-1]))
        return float(fps[pick] / self.n_neg)


def auroc(id_scores, ood_scores) -> float:
    """Area under ROC with ID positive (0.5 = chance, ties count 1/2)."""
    return Curve.of(id_scores, ood_scores).auroc()


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95, rule: str = DEFAULT_FPR95_RULE) -> float:
    """Fraction of OOD accepted (score >= t) at the ROC point of recall ``tpr`` of ID chosen by ``rule``."""
    return Curve.of(id_scores, ood_scores).fpr_at_tpr(tpr, rule)


def fpr95(id_scores, ood_scores, rule: str = DEFAULT_FPR95_RULE) -> float:
    """FPR at 95% TPR, ID positive (MCM / LoCoOp's positive class); ``rule`` picks the ROC point."""
    return fpr_at_tpr(id_scores, ood_scores, 0.95, rule)


def fpr95_ood_positive(id_scores, ood_scores, rule: str = DEFAULT_FPR95_RULE) -> float:
    """FPR at 95% TPR, OOD positive on negated scores (OpenOOD / pytorch-ood):
    fraction of ID flagged OOD at the threshold catching 95% of OOD."""
    return Curve.of(id_scores, ood_scores).flipped().fpr_at_tpr(0.95, rule)


def aupr_in(id_scores, ood_scores) -> float:
    """Average precision with ID positive, score as is."""
    return Curve.of(id_scores, ood_scores).average_precision()


def aupr_out(id_scores, ood_scores) -> float:
    """Average precision with OOD positive, negated score."""
    return Curve.of(id_scores, ood_scores).flipped().average_precision()


def _unit(value) -> float:
    """Summed precision x recall steps can land a hair above 1 (1.0000000000000002)."""
    return float(min(1.0, max(0.0, value)))


def id_accuracy(predictions, labels) -> float:
    """Top-1 accuracy of predicted class indices on the ID test set."""
    p = _as_1d(predictions, "predictions")
    t = _as_1d(labels, "labels")
    if p.shape != t.shape:
        raise ValueError(f"predictions and labels differ in length: {p.size} vs {t.size}")
    return float(np.mean(p == t))


def ood_metrics(id_scores, ood_scores, fpr95_rule: str = DEFAULT_FPR95_RULE) -> dict:
    """All OOD metrics for one (ID, OOD) pair, values in [0, 1]; FPR95s by ``fpr95_rule``. One ROC pass."""
    curve = Curve.of(id_scores, ood_scores)
    flipped = curve.flipped()
    return {
        "AUROC": curve.auroc(),
        "FPR95": curve.fpr_at_tpr(0.95, fpr95_rule),
        "FPR95_OOD_POS": flipped.fpr_at_tpr(0.95, fpr95_rule),
        "AUPR_IN": curve.average_precision(),
        "AUPR_OUT": flipped.average_precision(),
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

"""Metric figures: ROC curves, training losses, benchmark summaries as dot plots with fitted axes."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .figures import (
    OOD_STYLES,
    as_numpy,
    new_figure,
    save,
)


def roc_curves(curves: Mapping[str, tuple[object, Mapping[str, object]]], title: str | None = None,
               path: str | os.PathLike | None = None) -> Figure:
    """ROC curves, one panel per OOD set, one line per entry of ``curves``: label -> (ID scores, {ood: scores}).

    ID is the positive class: the y axis is the fraction of ID images accepted (TPR), the x axis the fraction of
    OOD images accepted (FPR). The dotted line marks 95% TPR, where FPR95 is read.
    """
    from sklearn.metrics import roc_curve

    from ..evaluation import metrics as M

    labels = list(curves)
    oods = list(curves[labels[0]][1])
    fig, axes = new_figure(1, len(oods), (4.2, 3.9))
    for ax, ood in zip(axes[0], oods):
        for k, label in enumerate(labels):
            id_s, ood_s = as_numpy(curves[label][0]).ravel(), as_numpy(curves[label][1][ood]).ravel()
            y = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
            fpr, tpr, _ = roc_curve(y, np.r_[id_s, ood_s])
            ax.plot(fpr, tpr, color=f"C{k}", lw=1.4, label=f"{label} ({M.auroc(id_s, ood_s):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.axhline(0.95, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{ood}", fontsize=9)
        ax.set_xlabel("FPR (OOD accepted)", fontsize=8)
        ax.legend(fontsize=8, loc="lower right", title="AUROC", title_fontsize=8, framealpha=0.85)
    axes[0, 0].set_ylabel("TPR (ID accepted)", fontsize=8)
    fig.suptitle(title or "ROC curves, ID positive (higher score = more ID)", fontsize=10)
    return save(fig, path)


def loss_curves(histories: Mapping[str, Sequence[Mapping]], keys: Sequence[str] = ("loss", "loss_id",
                "loss_outlier", "entropy"), title: str | None = None,
                path: str | os.PathLike | None = None) -> Figure:
    """Training curves from prompt-learning history rows (``method.history_``), one panel per method.

    ``loss`` is the total objective (the entropy term enters it with a minus sign), ``loss_id`` the ID
    cross-entropy, ``loss_outlier`` the cross-entropy of synthesised outliers to *unknown*, ``entropy`` LoCoOp's
    entropy on ID-irrelevant patches (maximised).
    """
    names = list(histories)
    fig, axes = new_figure(1, max(1, len(names)), (3.4, 2.8))
    for ax, name in zip(axes[0], names):
        rows = histories[name]
        steps = [r.get("step", i) for i, r in enumerate(rows)]
        for k, key in enumerate(keys):
            vals = [r.get(key) for r in rows]
            if any(v is not None for v in vals):
                ax.plot(steps, [np.nan if v is None else v for v in vals], color=f"C{k}", lw=1.3, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("value", fontsize=8)
    fig.suptitle(title or "prompt-learning losses", fontsize=10)
    return save(fig, path)


def fitted_limits(values, lower_bound: float = 0.0, upper_bound: float = 1.0, pad: float = 0.12,
                   min_width: float = 0.02):
    """x-limits that hug ``values`` (so a difference of a point is visible), at least ``min_width`` wide and
    inside the metric's range [``lower_bound``, ``upper_bound``]."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return lower_bound, upper_bound
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, min_width)
    mid = (lo + hi) / 2
    lo, hi = min(lo - pad * span, mid - min_width / 2), max(hi + pad * span, mid + min_width / 2)
    if hi > upper_bound:
        lo, hi = max(lower_bound, lo - (hi - upper_bound)), upper_bound
    if lo < lower_bound:
        lo, hi = lower_bound, min(upper_bound, hi + (lower_bound - lo))
    return lo, hi


def set_metric_limits(ax, values, lower_bound: float = 0.0, upper_bound: float = 1.0, margin: float = 0.05):
    """x-limits fitted to ``values`` (:func:`fitted_limits`), then widened by ``margin`` of the width on both
    sides so a dot at the metric's bound (AUROC 1, FPR95 0) is drawn whole, not cut in half by the frame; tick
    labels stay inside the metric's range."""
    lo, hi = fitted_limits(values, lower_bound, upper_bound)
    pad = margin * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ticks = [t for t in ax.get_xticks() if lower_bound - 1e-9 <= t <= upper_bound + 1e-9 and lo - pad <= t <= hi + pad]
    ax.set_xticks(ticks)
    ax.set_xlim(lo - pad, hi + pad)
    return lo - pad, hi + pad


def summary_dots(summary: Sequence[Mapping], scores: Mapping[str, str] | None = None,
                 metrics: Sequence[str] = ("AUROC", "FPR95"), title: str | None = None,
                 path: str | os.PathLike | None = None) -> Figure:
    """Benchmark results (runner summary rows) as dot plots that show differences between methods.

    One row of panels per metric (AUROC: higher is better, FPR95: lower is better), one column for the OOD-set
    average and one per OOD set; one line per (method, score, shots), a dot at the mean over seeds with the std
    over seeds as error bar. Every panel's axis is fitted to its own values, not to [0, 1], so that a difference
    of a point is visible. ``scores`` keeps one score per method (method -> score name); default: every score.
    """
    cells: dict[tuple, dict] = {}
    oods: list[str] = []
    for r in summary:
        if r["metric"] not in metrics or r["metric"] == "ACC":
            continue
        key = (r["method"], r["score"], r["shots"])
        if scores is not None and scores.get(key[0], key[1]) != key[1]:
            continue
        cells.setdefault(key, {})[(r["ood"], r["metric"])] = (r["mean"], r.get("std", 0.0))
        if r["ood"] != "Average" and r["ood"] not in oods:
            oods.append(r["ood"])
    keys = list(cells)
    labels = [f"{m} [{s}] {k}-shot" if k else f"{m} [{s}] zero-shot" for m, s, k in keys]
    columns = ["Average", *oods]
    fig, axes = new_figure(len(metrics), len(columns), (2.5, 0.26 * max(len(keys), 3) + 0.9), sharey=True)
    y = np.arange(len(keys))
    for r, metric in enumerate(metrics):
        for c, ood in enumerate(columns):
            ax = axes[r, c]
            colour = "black" if ood == "Average" else OOD_STYLES[(c - 1) % len(OOD_STYLES)][0]
            vals = np.array([cells[k].get((ood, metric), (np.nan, 0.0)) for k in keys], dtype=float)
            ax.errorbar(vals[:, 0], y, xerr=vals[:, 1], fmt="o", color=colour, ms=5, capsize=2.5, lw=1.0,
                        clip_on=False)
            set_metric_limits(ax, np.concatenate([vals[:, 0] - vals[:, 1], vals[:, 0] + vals[:, 1]]))
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(axis="x", labelsize=7)
            better = "lower is better" if metric.startswith("FPR") else "higher is better"
            ax.set_title(f"{metric}, {'OOD average' if ood == 'Average' else ood}" + (f"\n({better})" if c == 0
                                                                                        else ""), fontsize=8)
        axes[r, 0].set_yticks(y, labels, fontsize=7)
    axes[0, 0].invert_yaxis()
    fig.suptitle(title or "mean over seeds ± std; each panel's axis fitted to its values (score: higher = more ID)",
                 fontsize=9)
    return save(fig, path)

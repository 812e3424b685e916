"""Score distributions: ID vs OOD histograms on shared bins, per set and as a grid, and the threshold view."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from .figures import (
    ID_COLOUR,
    OOD_COLOUR,
    SCORE_AXIS,
    as_numpy,
    new_figure,
    save,
)


def value_histogram(values, title: str, xlabel: str, bins: int = 20, range_: tuple | None = None,
                    lines: Mapping[str, float] | None = None, path: str | os.PathLike | None = None) -> Figure:
    """A histogram of one set of values (e.g. the adaptive rho of every few-shot image) with marked lines."""
    v = as_numpy(values).ravel()
    fig, axes = new_figure(1, 1, (4.5, 3.0))
    ax = axes[0, 0]
    ax.hist(v, bins=bins, range=range_, color="#4c72b0", alpha=0.85, edgecolor="white")
    for k, (label, x) in enumerate((lines or {}).items()):
        ax.axvline(x, color=f"C{k + 1}", ls="--", label=f"{label} = {x:.3g}")
    if lines:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    return save(fig, path)


def hist_pair(ax, id_scores, ood_scores, bins: int, ood_name: str, id_name: str = "ID"):
    a, b = as_numpy(id_scores).ravel(), as_numpy(ood_scores).ravel()
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    ax.hist(a, bins=edges, alpha=0.55, color=ID_COLOUR, density=True, label=f"{id_name} (n={len(a)})")
    ax.hist(b, bins=edges, alpha=0.55, color=OOD_COLOUR, density=True, label=f"{ood_name} (n={len(b)})")


def figure_legend(fig, id_name: str = "ID") -> None:
    """One legend for a figure of ID-vs-OOD panels, below them: which colour is ID, which the panel's OOD set.
    Per-panel legends covered the first bars and were too small to read."""
    from matplotlib.patches import Patch

    fig.legend([Patch(color=ID_COLOUR, alpha=0.55), Patch(color=OOD_COLOUR, alpha=0.55)],
               ["ID test images" if id_name == "ID" else f"{id_name} (ID)", "OOD: the panel's set"],
               loc="outside lower center", ncols=2 if fig.get_figwidth() >= 5.5 else 1, fontsize=8, frameon=False)


def score_histograms(scores: Mapping[str, object], score_name: str = "MCM", id_key: str = "ID", bins: int = 30,
                     title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """ID vs each OOD set, one panel per OOD set; ``scores`` maps set name -> scores (``id_key`` is the ID set).

    Each panel's title gives the AUROC (ID positive) so the picture and the number can be compared.
    """
    from ..evaluation import metrics as M

    oods = [k for k in scores if k != id_key]
    if id_key not in scores or not oods:
        raise ValueError(f"scores need the ID set {id_key!r} and at least one OOD set, got {list(scores)}")
    fig, axes = new_figure(1, len(oods), (3.3, 2.7))
    for ax, ood in zip(axes[0], oods):
        hist_pair(ax, scores[id_key], scores[ood], bins, ood)
        auc = M.auroc(as_numpy(scores[id_key]).ravel(), as_numpy(scores[ood]).ravel())
        ax.set_title(f"{ood}: AUROC {auc:.3f}", fontsize=9)
        ax.set_xlabel(f"{score_name} {SCORE_AXIS}", fontsize=8)
    axes[0, 0].set_ylabel("density")
    figure_legend(fig, id_key)
    fig.suptitle(title or f"{score_name}: ID vs OOD (higher = more ID)", fontsize=10)
    return save(fig, path)


def score_histogram_grid(scores: Mapping[str, Mapping[str, object]], id_key: str = "ID", bins: int = 30,
                         title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Rows = scores (e.g. MCM, GL-MCM, 1-p(unknown)), columns = OOD sets; ``scores[score][set] -> values``."""
    from ..evaluation import metrics as M

    names = list(scores)
    oods = [k for k in scores[names[0]] if k != id_key]
    fig, axes = new_figure(len(names), len(oods), (3.0, 2.3))
    for r, name in enumerate(names):
        for c, ood in enumerate(oods):
            ax = axes[r, c]
            hist_pair(ax, scores[name][id_key], scores[name][ood], bins, ood)
            auc = M.auroc(as_numpy(scores[name][id_key]).ravel(), as_numpy(scores[name][ood]).ravel())
            ax.set_title(f"{name} | {ood}: AUROC {auc:.3f}", fontsize=8)
            if r == len(names) - 1:
                ax.set_xlabel(SCORE_AXIS, fontsize=8)
            if c == 0:
                ax.set_ylabel("density", fontsize=8)
    figure_legend(fig, id_key)
    fig.suptitle(title or "ID vs OOD score distributions (higher = more ID)", fontsize=10)
    return save(fig, path)


def threshold_figure(id_scores, ood_scores, threshold: float, score_name: str = "score", bins: int = 30,
                     ood_name: str = "OOD", path: str | os.PathLike | None = None) -> Figure:
    """Both score distributions with the decision threshold: images at or above it are accepted as ID."""
    from .analysis import threshold_stats

    st = threshold_stats(id_scores, ood_scores, threshold)
    fig, axes = new_figure(1, 1, (5.0, 3.0))
    ax = axes[0, 0]
    hist_pair(ax, id_scores, ood_scores, bins, ood_name)
    ax.axvline(threshold, color="black", lw=1.5, ls="--")
    ax.axvspan(ax.get_xlim()[0], threshold, color="grey", alpha=0.12, lw=0)
    ax.set_title(f"threshold {threshold:.4g}: TPR {st['tpr']:.1%} (ID kept), FPR {st['fpr']:.1%} (OOD accepted)",
                 fontsize=9)
    ax.set_xlabel(f"{score_name} {SCORE_AXIS}; grey = rejected as OOD", fontsize=8)
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return save(fig, path)

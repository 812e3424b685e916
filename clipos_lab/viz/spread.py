"""Per-draw gains over zero-shot MCM as a strip plot: one dot per few-shot draw, so a bad draw cannot hide.

Reads the DataFrame of :func:`clipos_lab.evaluation.spread.draw_gains` (columns method, score, shots, gain and
optionally spec). Gains are plotted in points (x 100).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .figures import save


def gain_strips(gains: pd.DataFrame, path: str | os.PathLike | None = None, metric: str = "AUROC",
                seed: int = 0, title: str | None = None) -> Figure:
    """One panel per shots value; one row per (method, score); a dot per draw (jittered), its median as a bar.

    Dots are coloured by benchmark when the frame has several ``spec`` values. A dashed line marks "as good as
    MCM"; the 5th percentile is the small tick. ``seed`` fixes the vertical jitter.
    """
    if gains.empty:
        raise ValueError("gain_strips: no draws to plot")
    rng = np.random.default_rng(seed)
    few = gains[gains["shots"] > 0]
    shots = sorted(few["shots"].unique()) or [0]
    labels = list(dict.fromkeys(f"{m} [{s}]" for m, s in zip(gains["method"], gains["score"])))
    specs = list(dict.fromkeys(gains["spec"])) if "spec" in gains.columns else [""]
    colours = {s: f"C{i % 10}" for i, s in enumerate(specs)}
    fig = Figure(figsize=(4.2 * len(shots) + 1.5, 0.55 * len(labels) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(shots), sharey=True, squeeze=False)[0]
    for ax, n_shots in zip(axes, shots):
        # zero-shot methods (shots 0, e.g. CLIPN) are repeated in every panel: they do not depend on the draw
        panel = gains[(gains["shots"] == n_shots) | (gains["shots"] == 0)]
        for row, label in enumerate(labels):
            method, score = label.rsplit(" [", 1)
            cell = panel[(panel["method"] == method) & (panel["score"] == score[:-1])]
            if cell.empty:
                continue
            g = 100.0 * cell["gain"].to_numpy()
            y = row + rng.uniform(-0.25, 0.25, size=len(g))
            c = [colours[s] for s in cell["spec"]] if "spec" in cell.columns else "C0"
            ax.scatter(g, y, s=10, c=c, alpha=0.6, linewidths=0)
            ax.plot([np.median(g)] * 2, [row - 0.35, row + 0.35], color="black", lw=2)
            ax.plot([np.percentile(g, 5)] * 2, [row - 0.2, row + 0.2], color="crimson", lw=1.5)
        ax.axvline(0.0, color="grey", ls="--", lw=1)
        ax.set_title(f"{n_shots}-shot draws" if n_shots else "zero-shot")
        ax.set_xlabel(f"{metric} gain over zero-shot MCM (points)")
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    fig.suptitle(title or "Per-draw gain over MCM (dot = one draw; black = median, red = 5th percentile)",
                 fontsize=10)
    return save(fig, path)


__all__ = ["gain_strips"]

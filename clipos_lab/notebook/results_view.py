"""The results explorer: pick a method, one of its scores and an OOD set of a benchmark run; every method's AUROC
and FPR95 on that set beside the pick's ID-vs-OOD histograms.

The figure is matplotlib inside the widget's ``Output`` (the path every explorer uses; a plotly figure inside a
widget output could come up empty on a cold first run). Its legend sits inside the histogram panel and says which
colour is ID.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from ..viz import static as V
from .explorer_kit import wrap


def _runs(result) -> dict[str, tuple[int, int]]:
    """The run shown per method: most shots, first seed."""
    runs: dict[str, tuple] = {}
    for (name, shots, seed) in result.scores:
        best = runs.get(name)
        if best is None or (shots, -seed) > (best[0], -best[1]):
            runs[name] = (shots, seed)
    return runs


def results_figure(cells: Mapping[tuple, tuple[float, float]], methods, runs, scores_of, pick, m: str, s: str,
                   ood: str, sets: Mapping[str, object], oods):
    """Dots (mean ± std over seeds) of AUROC and FPR95 per method on ``ood``, and ``m``'s histograms of ``s``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 0.32 * len(methods) + 2.6), layout="constrained")
    grid = fig.add_gridspec(1, 3, width_ratios=[1, 1, 2])
    labels = []
    for col, metric in enumerate(("AUROC", "FPR95")):
        ax = fig.add_subplot(grid[0, col])
        shown = []
        for row, other in enumerate(methods):  # each method with this score where it has it, else its main score
            s_other = s if s in scores_of(other) else pick(other)
            if col == 0:
                labels.append(f"{other} [{s_other}]")
            mean, std = cells.get((other, s_other, runs[other][0], ood, metric), (np.nan, 0.0))
            shown += [mean - std, mean + std]
            ax.errorbar([mean], [row], xerr=[std], fmt="o", ms=6, capsize=2.5, lw=1.0, clip_on=False,
                        color=V.OOD_COLOUR if other == m else "#4d4d4d")
        V.set_metric_limits(ax, shown)
        ax.set_yticks(range(len(methods)), labels if col == 0 else [""] * len(methods), fontsize=8)
        ax.set_ylim(len(methods) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_title(f"{metric} ({'lower' if metric == 'FPR95' else 'higher'} is better)", fontsize=9)
    ax = fig.add_subplot(grid[0, 2])
    chosen = list(oods) if ood == "Average" else [ood]
    ood_values = np.concatenate([np.asarray(sets[k], dtype=float).ravel() for k in chosen])
    V.hist_pair(ax, sets["ID"], ood_values, 30, f"OOD: {' + '.join(chosen)}", id_name="ID test")
    ax.legend(fontsize=8, loc="upper left", framealpha=0.8)
    ax.set_title(f"{m} [{s}]: ID vs {'all OOD sets' if ood == 'Average' else ood}", fontsize=9)
    ax.set_xlabel(f"{s} {V.SCORE_AXIS}", fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.tick_params(labelsize=8)
    return fig


def results_explorer(result, default_scores: Mapping[str, str] | None = None, interactive: bool = False,
                     path: str | os.PathLike | None = None):
    """Pick a method, one of its scores and an OOD set of a benchmark run (:class:`BenchmarkResult` with
    ``scores``): every method's AUROC and FPR95 on that set (mean ± std over seeds; the pick highlighted) beside
    the pick's ID-vs-OOD score histograms (largest shot setting, first seed).

    Both modes save the per-OOD-set histograms of the first method's main score to ``path``; static mode returns
    that figure, interactive mode the widget box.
    """
    from ..methods.base import main_score

    runs = _runs(result)
    methods = list(runs)
    oods = [k for k in result.scores[(methods[0], *runs[methods[0]])] if k != "id"]
    scores_of = lambda m: list(result.scores[(m, *runs[m])]["id"])
    pick = lambda m, s=None: main_score(s or (default_scores or {}).get(m, "MCM"), scores_of(m))

    def per_set(m, s):
        run = result.scores[(m, *runs[m])]
        return {"ID": run["id"][s], **{k: v[s] for k, v in run.items() if k != "id"}}

    first = methods[0]
    static = V.score_histogram_grid({pick(first): per_set(first, pick(first))},
                                    title=f"{first}: ID vs each OOD set (higher = more ID)", path=path)
    if not interactive:
        return static

    import ipywidgets as w
    from IPython.display import display

    cells = {}
    for r in result.summary:
        if r["metric"] in ("AUROC", "FPR95"):
            cells[(r["method"], r["score"], r["shots"], r["ood"], r["metric"])] = (r["mean"], r["std"])
    method_w = w.Dropdown(options=methods, value=first, description="method")
    score_w = w.Dropdown(options=scores_of(first), value=pick(first), description="score")
    ood_w = w.Dropdown(options=["Average", *oods], value="Average", description="OOD set")
    out = w.Output()
    busy = [False]

    def redraw(*_):
        if busy[0]:
            return
        m, s, ood = method_w.value, score_w.value, ood_w.value
        shots = runs[m][0]
        auroc = cells.get((m, s, shots, ood, "AUROC"), (np.nan, np.nan))
        fpr = cells.get((m, s, shots, ood, "FPR95"), (np.nan, np.nan))
        fig = results_figure(cells, methods, runs, scores_of, pick, m, s, ood, per_set(m, s), oods)
        with out:
            out.clear_output(wait=True)
            print(wrap(f"{m} [{s}], {'zero-shot' if not shots else f'{shots}-shot'}, OOD set {ood}: AUROC "
                       f"{auroc[0]:.1%} ± {auroc[1]:.1%}, FPR95 {fpr[0]:.1%} ± {fpr[1]:.1%} (mean ± std over "
                       "seeds); histograms: first seed"))
            display(fig)

    def new_method(_):
        busy[0] = True  # a new method starts on its own main score
        score_w.options = scores_of(method_w.value)
        score_w.value = pick(method_w.value)
        busy[0] = False
        redraw()

    method_w.observe(new_method, names="value")
    score_w.observe(redraw, names="value")
    ood_w.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([method_w, score_w, ood_w]), out])


__all__ = ["results_explorer", "results_figure"]

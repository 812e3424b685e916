"""The threshold explorer: a method, one of its scores and a threshold; what gets through, and the worst errors."""

from __future__ import annotations

import os
from typing import Callable, Mapping

import numpy as np

from ..viz import analysis as A
from ..viz import static as V
from .explorer_kit import wrap


class ImageLookup:
    """``lookup(set_name, row)`` -> PIL image of row ``row`` of that set's feature bank.

    Built from ``{set name: (dataset, bank)}``; the bank's ids map rows back to the dataset's samples.
    """

    def __init__(self, sets: Mapping[str, tuple]):
        self._sets = {}
        for name, (dataset, bank) in sets.items():
            where = {s.id: i for i, s in enumerate(dataset.samples)}
            self._sets[name] = (dataset, [where[i] for i in bank.ids], list(bank.ids))

    def __call__(self, name: str, row: int):
        dataset, rows, _ = self._sets[name]
        return dataset.load(rows[row])

    def sample_id(self, name: str, row: int) -> str:
        return self._sets[name][2][row]


def _pooled(ood_scores: Mapping[str, object]) -> np.ndarray:
    return np.concatenate([np.asarray(s, dtype=float).ravel() for s in ood_scores.values()])


def threshold_view(id_scores, ood_scores: Mapping[str, object], threshold: float, score_name: str = "score",
                   images: Callable | None = None, id_key: str = "ID", n_gallery: int = 4,
                   path: str | os.PathLike | None = None):
    """Histogram with the threshold, plus a gallery of the worst errors at that threshold.

    Gallery: the accepted OOD images with the highest scores and the rejected ID images with the lowest.
    Returns (figure, printed lines, numbers per OOD set and pooled).
    """
    from matplotlib.figure import Figure

    id_s = np.asarray(id_scores, dtype=float).ravel()
    pooled = _pooled(ood_scores)
    numbers = {"pooled": A.threshold_stats(id_s, pooled, threshold)}
    numbers.update({k: A.threshold_stats(id_s, v, threshold) for k, v in ood_scores.items()})
    lines = [A.format_threshold_stats(numbers["pooled"], "all OOD")]
    lines += ["  " + A.format_threshold_stats(numbers[k], k) for k in ood_scores]

    gallery = []
    if images is not None and n_gallery > 0:
        # the worst errors overall, sorted, so those on the wrong side of the threshold come first
        worst = A.worst_mistakes(id_s, ood_scores, n_gallery)
        gallery += [(images(name, i), f"{name} accepted\n{v:.3g}") for name, i, v in worst["ood"] if v >= threshold]
        gallery += [(images(id_key, i), f"ID rejected\n{v:.3g}") for i, v in worst["id"] if v < threshold]

    # a fixed layout (every gallery slot, used or not) so the figure keeps its size while the slider moves
    ncols = max(4, 2 * n_gallery) if images is not None and n_gallery > 0 else 1
    fig = Figure(figsize=(max(7.0, 1.2 * ncols), 4.8 if ncols > 1 else 3.0), layout="constrained")
    grid = fig.add_gridspec(2 if ncols > 1 else 1, ncols, height_ratios=[2.2, 1] if ncols > 1 else None)
    ax = fig.add_subplot(grid[0, :])
    V.hist_pair(ax, id_s, pooled, 30, "all OOD")
    ax.axvline(threshold, color="black", ls="--", lw=1.5)
    ax.axvspan(min(id_s.min(), pooled.min()), threshold, color="grey", alpha=0.12, lw=0)
    st = numbers["pooled"]
    ax.set_title(f"{score_name}, threshold {threshold:.4g}: TPR {st['tpr']:.1%}, FPR {st['fpr']:.1%} "
                 f"(grey = rejected as OOD)", fontsize=9)
    ax.set_xlabel(f"{score_name} {V.SCORE_AXIS}", fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.legend(fontsize=7)
    for c in range(ncols if ncols > 1 else 0):
        gax = fig.add_subplot(grid[1, c])
        if c < len(gallery):
            V.overlay(gax, gallery[c][0], title=gallery[c][1])
        else:
            gax.axis("off")
    V.save(fig, path)
    return fig, lines, numbers


def threshold_explorer(id_scores, ood_scores: Mapping[str, object], score_name: str = "score",
                       images: Callable | None = None, threshold: float | None = None, interactive: bool = False,
                       n_gallery: int = 4, path: str | os.PathLike | None = None):
    """A threshold on one score: accepted / rejected counts, TPR and FPR, and a small gallery of errors.

    The default threshold keeps 95% of ID images (the FPR95 operating point). Static mode prints the numbers and
    returns the figure at that threshold; interactive mode returns a slider over the observed score range.
    """
    scores = {score_name: {score_name: {"ID": id_scores, **ood_scores}}}
    return score_explorer(scores, images, threshold=threshold, interactive=interactive, n_gallery=n_gallery,
                          path=path)


def score_explorer(scores: Mapping[str, Mapping[str, Mapping[str, object]]], images: Callable | None = None,
                   method: str | None = None, score: str | None = None, threshold: float | None = None,
                   interactive: bool = False, n_gallery: int = 4, id_key: str = "ID",
                   path: str | os.PathLike | None = None):
    """Pick a method (its learned prompts), one of its scores and a threshold; see what gets through.

    ``scores[method][score][set]`` holds per-image scores, ``set`` being ``id_key`` or an OOD set. Each new
    (method, score) starts at the threshold that keeps 95% of ID images. Static mode prints the numbers for
    ``method`` / ``score`` (default: the first method, its main score) and returns the figure.
    """
    from ..methods.base import main_score

    methods = list(scores)
    method = method if method in scores else methods[0]
    score = score if score in scores[method] else main_score(score or "MCM", scores[method])

    def view(m, s, t, save_to=None):
        per_set = scores[m][s]
        id_s = np.asarray(per_set[id_key], dtype=float).ravel()
        ood = {k: v for k, v in per_set.items() if k != id_key}
        t = A.threshold_at_tpr(id_s, 0.95) if t is None else float(t)
        label = s if m == s else f"{m} {s}"  # "MCM", not "MCM MCM"
        fig, lines, _ = threshold_view(id_s, ood, t, label, images, id_key=id_key, n_gallery=n_gallery,
                                       path=save_to)
        return fig, lines, t

    if not interactive:
        fig, lines, _ = view(method, score, threshold, path)
        print(wrap("\n".join(lines)))
        return fig

    import ipywidgets as w
    from IPython.display import display

    method_w = w.Dropdown(options=methods, value=method, description="method")
    score_w = w.Dropdown(options=list(scores[method]), value=score, description="score")
    slider = w.FloatSlider(description="threshold", readout_format=".4f", continuous_update=False,
                           layout=w.Layout(width="70%"))
    out = w.Output()
    state = {"busy": False, "path": path}

    def fit_slider(t=None):
        """Range of the chosen score; the slider moves to ``t`` (default: 95% of ID kept)."""
        per_set = scores[method_w.value][score_w.value]
        values = np.concatenate([np.asarray(v, dtype=float).ravel() for v in per_set.values()])
        lo, hi = float(values.min()), float(values.max())
        t = A.threshold_at_tpr(np.asarray(per_set[id_key], dtype=float).ravel(), 0.95) if t is None else t
        state["busy"] = True  # one redraw per user action, not one per attribute set here
        slider.min, slider.max = min(lo, slider.min), max(hi, slider.max)  # widen first, then narrow: never min > max
        slider.min, slider.max = lo, hi
        slider.step = (hi - lo) / 200 or 1e-3
        slider.value = float(np.clip(t, lo, hi))
        state["busy"] = False

    def redraw(*_):
        if state["busy"]:
            return
        fig, lines, _ = view(method_w.value, score_w.value, slider.value, state.pop("path", None))
        with out:
            out.clear_output(wait=True)
            print(wrap("\n".join(lines)))
            display(fig)

    def new_method(_):
        state["busy"] = True
        keep = score_w.value
        score_w.options = list(scores[method_w.value])
        score_w.value = keep if keep in scores[method_w.value] else main_score(keep, scores[method_w.value])
        state["busy"] = False
        fit_slider()
        redraw()

    def new_score(_):
        fit_slider()
        redraw()

    fit_slider(threshold)
    method_w.observe(new_method, names="value")
    score_w.observe(new_score, names="value")
    slider.observe(redraw, names="value")
    redraw()
    controls = [w.HBox([method_w, score_w])] if len(methods) > 1 or len(scores[method]) > 1 else []
    return w.VBox([*controls, slider, out])

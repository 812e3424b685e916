"""ipywidgets explorers that degrade to static figures when a notebook runs headless.

With ``interactive=True`` (JupyterLab) an explorer returns a widget box whose figure redraws when a control
changes; its numbers are printed inside the widget only, so no stale copy stays above it when a control moves.
With ``interactive=False`` (papermill, nbmake, reports) it prints the numbers for the given settings, saves the
figure when ``path`` is given and returns the matplotlib Figure, with no widget state in the notebook.
"""

from __future__ import annotations

import os
import textwrap
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..clipos import relevance as R
from ..viz import analysis as A
from ..viz import static as V

WRAP = 110  # characters per printed line: long summaries wrap between words, never inside one


def wrap(text: str) -> str:
    """``text`` wrapped at :data:`WRAP` characters on word boundaries (continuation lines indented)."""
    return "\n".join(textwrap.fill(line, WRAP, subsequent_indent="    ", break_long_words=False,
                                    break_on_hyphens=False) for line in text.splitlines())


def _live(controls, redraw):
    """Wire ``controls`` to ``redraw()`` and draw once; ``redraw`` prints and displays inside its own Output."""
    for control in controls:
        control.observe(lambda *_: redraw(), names="value")
    redraw()


# ------------------------------------------------------------------------------------------- relevance
def object_box(dataset, index: int):
    """The ground-truth box of a single-object world image, else None (other datasets have no boxes)."""
    scene = getattr(dataset, "scene", None)
    if scene is None:
        return None
    s = scene(index)
    return s.objects[0].box if s.kind == "object" and s.objects else None


def relevance_view(bank, dataset, text: torch.Tensor, index: int = 0, class_index: int | None = None, k: int = 3,
                   rule: str = "discrepancy", path: str | os.PathLike | None = None, **options):
    """Stage 1 for one image of ``bank`` as a figure, a one-line summary and its numbers.

    ``class_index`` defaults to the image's own label: choosing another class shows where the model would look
    for that class instead. ``dataset`` must be the dataset the bank was encoded from (for the pixels).
    """
    one = bank.subset([index])
    label = int(one.labels[0]) if class_index is None else int(class_index)
    res = R.relevance(one, text, rule=rule, labels=torch.tensor([label]), k=k, **options)
    maps = res.grid_maps()
    where = {s.id: i for i, s in enumerate(dataset.samples)}
    ds_index = where[bank.ids[index]]
    image, box = dataset.load(ds_index), object_box(dataset, ds_index)
    classes = bank.classnames
    n_rel, n_all = int(res.mask.sum()), res.mask.shape[1]
    numbers = {"id": bank.ids[index], "true_class": classes[int(one.labels[0])], "class": classes[label], "k": k,
               "rule": rule, "rho": float(res.rho[0]), "n_relevant": n_rel, "n_patches": n_all}
    if box is not None:
        numbers.update(A.mask_localisation(res.mask, [box], bank.grid, image.size[::-1]))
    summary = (f"image {numbers['id']} (true class {numbers['true_class']}), maps for class {numbers['class']}, "
               f"rule {rule}, PUC k={k}: rho={numbers['rho']:.2f}, {n_rel}/{n_all} patches ID-relevant")
    if "mask_in_box" in numbers:
        summary += (f"; {numbers['mask_in_box']:.0%} of them on the object "
                    f"(object covers {numbers['chance_in_box']:.0%} of patches)")
    title = f"{numbers['id']}: class '{numbers['class']}', {rule}, k={k}, rho={numbers['rho']:.2f}"
    fig = V.relevance_panel(image, maps["raw"][0], maps.get("surgery", [None])[0],
                            maps.get("discrepancy", [None])[0], maps["mask"][0], box=box, title=title, path=path)
    return fig, summary, numbers


def typical_example(bank, dataset, text: torch.Tensor, k: int = 3, rule: str = "discrepancy") -> tuple[int, str]:
    """The first example to show, by a stated rule: the image whose ID-relevant mask lands on its object with
    the median lift over chance (:func:`~clipos_lab.viz.analysis.localisation_per_image`), so the example is
    typical rather than the best or the worst. Without object boxes: the image with the median rho.

    Returns (row of ``bank``, the rule in words, with the numbers).
    """
    res = R.relevance(bank, text, rule=rule, k=k)
    where = {s.id: i for i, s in enumerate(dataset.samples)}
    boxes = [object_box(dataset, where[i]) for i in bank.ids]
    size = dataset.load(where[bank.ids[0]]).size[::-1]
    lift = A.localisation_per_image(res.mask, boxes, bank.grid, size)
    if np.isfinite(lift).any():
        i = A.median_index(lift)
        return i, (f"example: image {bank.ids[i]}, the median of {int(np.isfinite(lift).sum())} images by how much "
                   f"more of its ID-relevant patches lie on the object than chance ({lift[i]:+.0%})")
    i = A.median_index(res.rho.numpy())
    return i, f"example: image {bank.ids[i]}, the median rho ({float(res.rho[i]):.2f}) of {len(bank)} images"


def relevance_explorer(bank, dataset, text: torch.Tensor, interactive: bool = False, index: int = 0,
                       class_index: int | None = None, k: int = 3, rule: str = "discrepancy",
                       k_choices: Sequence[int] = (1, 3, 5, 7), path: str | os.PathLike | None = None):
    """Pick an image, a class and the PUC size k (and the rule); the relevance panel follows.

    Static mode returns the panel for the given settings; interactive mode returns the widget box.
    """
    if not interactive:
        fig, summary, _ = relevance_view(bank, dataset, text, index, class_index, k, rule, path=path)
        print(wrap(summary))
        return fig

    import ipywidgets as w
    from IPython.display import display

    classes = list(bank.classnames)
    image_w = w.IntSlider(value=index, min=0, max=len(bank) - 1, description="image", continuous_update=False)
    class_w = w.Dropdown(options=["(own class)", *classes], value="(own class)" if class_index is None
                         else classes[class_index], description="class")
    k_w = w.Dropdown(options=sorted(set(k_choices) | {k}), value=k, description="PUC k")
    rule_w = w.Dropdown(options=list(R.RULES), value=rule, description="rule")
    out = w.Output()
    first = [True]

    def redraw():
        c = None if class_w.value == "(own class)" else classes.index(class_w.value)
        fig, line, _ = relevance_view(bank, dataset, text, image_w.value, c, k_w.value, rule_w.value,
                                      path=path if first[0] else None)
        first[0] = False
        with out:
            out.clear_output(wait=True)
            print(wrap(line))
            display(fig)

    _live((image_w, class_w, k_w, rule_w), redraw)
    return w.VBox([w.HBox([image_w, class_w]), w.HBox([k_w, rule_w]), out])


# ------------------------------------------------------------------------------------------- thresholds
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
    V._hist_pair(ax, id_s, pooled, 30, "all OOD")
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


# ------------------------------------------------------------------------------------------- embedding
def embedding_explorer(coords: Mapping[str, np.ndarray], hover: Mapping[str, Sequence[str]] | None = None,
                       title: str = "", outlier_group: str | None = None, outliers=None,
                       source_image: Callable | None = None, source_ids: Sequence[str] | None = None,
                       classnames: Sequence[str] | None = None, interactive: bool = False,
                       path: str | os.PathLike | None = None, html_path: str | os.PathLike | None = None):
    """The joint 2-D map of the embedding space; in interactive mode hovering (or clicking) a synthesised
    outlier shows the two few-shot images it was mixed from and the weight ``lam`` of each.

    ``outliers`` (a :class:`~clipos_lab.clipos.synthesis.Outliers`) are the points of ``coords[outlier_group]``;
    ``source_image(row)`` gives the picture of row ``row`` of the bank their ``first`` / ``second`` index, whose
    ids are ``source_ids``. Static mode draws (and saves to ``path``) the matplotlib map and returns it; the
    interactive map is also saved to ``html_path`` while its static twin goes to ``path`` without being shown.
    """
    from ..viz import interactive as I

    static = V.embedding_scatter(coords, title=title, path=path)
    if not interactive:
        return static

    import ipywidgets as w
    import plotly.graph_objects as go
    from IPython.display import display

    fig = go.FigureWidget(I.embedding_scatter(coords, hover, title=title, path=html_path))
    out = w.Output(layout=w.Layout(min_height="200px"))
    names = [g for g, xy in coords.items() if len(xy)]  # embedding_scatter makes one trace per non-empty group
    if outlier_group not in names or outliers is None or source_image is None:
        return fig
    shown = {"i": None}

    def show_parents(_trace, points, _state):
        if not points.point_inds or points.point_inds[0] == shown["i"]:
            return
        i = shown["i"] = points.point_inds[0]
        p = outliers.provenance(i)
        a, b = p["first"], p["second"]
        name = lambda row, label: (source_ids[row] if source_ids is not None else f"row {row}") + (
            f" ({classnames[label]})" if classnames is not None else "")
        parents = V.image_grid([source_image(a), source_image(b)],
                               [f"lam = {p['lam']:.2f}\n{name(a, p['label_first'])}",
                                f"1 - lam = {1 - p['lam']:.2f}\n{name(b, p['label_second'])}"],
                               ncols=2, cell=1.7, suptitle=f"outlier #{i}: its two parents")
        with out:
            out.clear_output(wait=True)
            display(parents)

    trace = fig.data[names.index(outlier_group)]
    trace.on_hover(show_parents)
    trace.on_click(show_parents)
    with out:
        print("hover over (or click) a black cross: its two parent images and lam appear here")
    return w.VBox([fig, out])


# ------------------------------------------------------------------------------------------- results
def results_explorer(result, default_scores: Mapping[str, str] | None = None, interactive: bool = False,
                     path: str | os.PathLike | None = None):
    """Pick a method, one of its scores and an OOD set of a benchmark run (:class:`BenchmarkResult` with
    ``scores``): every method's AUROC and FPR95 on that set (mean ± std over seeds; the pick highlighted) beside
    the pick's ID-vs-OOD score histograms (largest shot setting, first seed).

    Static mode returns the per-OOD-set histograms of the first method's main score (saved to ``path``).
    """
    from ..methods.base import main_score

    runs: dict[str, tuple] = {}
    for (name, shots, seed) in result.scores:  # the run shown per method: most shots, first seed
        best = runs.get(name)
        if best is None or (shots, -seed) > (best[0], -best[1]):
            runs[name] = (shots, seed)
    methods = list(runs)
    oods = [k for k in result.scores[(methods[0], *runs[methods[0]])] if k != "id"]
    scores_of = lambda m: list(result.scores[(m, *runs[m])]["id"])
    pick = lambda m, s=None: main_score(s or (default_scores or {}).get(m, "MCM"), scores_of(m))

    def per_set(m, s):
        run = result.scores[(m, *runs[m])]
        return {"ID": run["id"][s], **{k: v[s] for k, v in run.items() if k != "id"}}

    if not interactive:
        m = methods[0]
        return V.score_histogram_grid({pick(m): per_set(m, pick(m))},
                                      title=f"{m}: ID vs each OOD set (higher = more ID)", path=path)

    import ipywidgets as w
    import plotly.graph_objects as go
    from IPython.display import display
    from plotly.subplots import make_subplots

    cells = {}
    for r in result.summary:
        if r["metric"] in ("AUROC", "FPR95"):
            cells[(r["method"], r["score"], r["shots"], r["ood"], r["metric"])] = (r["mean"], r["std"])
    method_w = w.Dropdown(options=methods, value=methods[0], description="method")
    score_w = w.Dropdown(options=scores_of(methods[0]), value=pick(methods[0]), description="score")
    ood_w = w.Dropdown(options=["Average", *oods], value="Average", description="OOD set")
    out = w.Output()
    busy = [False]

    def figure(m, s, ood):
        fig = make_subplots(rows=1, cols=3, column_widths=[0.25, 0.25, 0.5], horizontal_spacing=0.09,
                            subplot_titles=("AUROC (higher is better)", "FPR95 (lower is better)",
                                            f"{m} [{s}]: ID vs {'all OOD sets' if ood == 'Average' else ood}"))
        labels, colours, shown = [], [], {"AUROC": [], "FPR95": []}
        for other in methods:  # each method with this score where it has it, else its main score
            s_other = s if s in scores_of(other) else pick(other)
            labels.append(f"{other} [{s_other}]")
            colours.append("#d62728" if other == m else "#4d4d4d")
            for col, metric in ((1, "AUROC"), (2, "FPR95")):
                mean, std = cells.get((other, s_other, runs[other][0], ood, metric), (np.nan, 0.0))
                shown[metric] += [mean - std, mean + std]
                fig.add_trace(go.Scatter(x=[mean], y=[labels[-1]], error_x={"type": "data", "array": [std]},
                                         mode="markers", marker={"color": colours[-1], "size": 10},
                                         showlegend=False, hovertemplate=f"{metric} %{{x:.4f}} ± {std:.4f}"
                                                                         "<extra></extra>"), row=1, col=col)
        sets = per_set(m, s)
        chosen = oods if ood == "Average" else [ood]
        fig.add_trace(go.Histogram(x=np.asarray(sets["ID"]), name="ID", opacity=0.55, nbinsx=30,
                                   histnorm="probability density", marker_color="#1f77b4"), row=1, col=3)
        ood_values = np.concatenate([np.asarray(sets[k]) for k in chosen])
        fig.add_trace(go.Histogram(x=ood_values, name=" + ".join(chosen), opacity=0.55, nbinsx=30,
                                   histnorm="probability density", marker_color="#d62728"), row=1, col=3)
        fig.update_layout(barmode="overlay", template="plotly_white", height=360, width=1050,
                          margin={"l": 10, "r": 10, "t": 40, "b": 30}, legend={"font": {"size": 10}})
        fig.update_yaxes(autorange="reversed", row=1, col=1)
        fig.update_yaxes(showticklabels=False, autorange="reversed", row=1, col=2)
        fig.update_xaxes(title_text=f"{s} (higher = more ID)", row=1, col=3)
        for col, metric in ((1, "AUROC"), (2, "FPR95")):  # axes fitted to the values, as in viz.summary_dots
            fig.update_xaxes(range=list(V._fitted_limits(shown[metric])), row=1, col=col)
        for a in fig.layout.annotations:
            a.font.size = 11
        return fig

    def redraw(*_):
        if busy[0]:
            return
        m, s, ood = method_w.value, score_w.value, ood_w.value
        shots = runs[m][0]
        auroc = cells.get((m, s, shots, ood, "AUROC"), (np.nan, np.nan))
        fpr = cells.get((m, s, shots, ood, "FPR95"), (np.nan, np.nan))
        with out:
            out.clear_output(wait=True)
            print(wrap(f"{m} [{s}], {'zero-shot' if not shots else f'{shots}-shot'}, OOD set {ood}: AUROC "
                       f"{auroc[0]:.4f} ± {auroc[1]:.4f}, FPR95 {fpr[0]:.4f} ± {fpr[1]:.4f} (mean ± std over "
                       "seeds); histograms: first seed"))
            display(figure(m, s, ood))

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


__all__ = ["ImageLookup", "embedding_explorer", "results_explorer", "object_box", "typical_example", "wrap", "relevance_explorer", "relevance_view", "score_explorer", "threshold_explorer",
           "threshold_view"]

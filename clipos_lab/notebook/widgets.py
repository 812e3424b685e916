"""ipywidgets explorers that degrade to static figures when a notebook runs headless.

With ``interactive=True`` (JupyterLab) an explorer returns a widget box whose figure redraws when a control
changes. With ``interactive=False`` (papermill, nbmake, reports) it draws the figure for the given settings,
saves it when ``path`` is given and returns the matplotlib Figure, with no widget state in the notebook.
Either way the key numbers are printed, so nothing is visible only inside a widget.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..clipos import relevance as R
from ..viz import analysis as A
from ..viz import static as V


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


def relevance_explorer(bank, dataset, text: torch.Tensor, interactive: bool = False, index: int = 0,
                       class_index: int | None = None, k: int = 3, rule: str = "discrepancy",
                       k_choices: Sequence[int] = (1, 3, 5, 7), path: str | os.PathLike | None = None):
    """Pick an image, a class and the PUC size k (and the rule); the relevance panel follows.

    Static mode returns the panel for the given settings; interactive mode returns the widget box.
    """
    fig, summary, _ = relevance_view(bank, dataset, text, index, class_index, k, rule, path=path)
    print(summary)
    if not interactive:
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

    def redraw(*_):
        c = None if class_w.value == "(own class)" else classes.index(class_w.value)
        new_fig, text_line, _ = relevance_view(bank, dataset, text, image_w.value, c, k_w.value, rule_w.value)
        with out:
            out.clear_output(wait=True)
            print(text_line)
            display(new_fig)

    for control in (image_w, class_w, k_w, rule_w):
        control.observe(redraw, names="value")
    with out:
        print(summary)
        display(fig)
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

    ncols = max(4, len(gallery))
    fig = Figure(figsize=(max(6.0, 1.35 * ncols), 4.8 if gallery else 3.0), layout="constrained")
    grid = fig.add_gridspec(2 if gallery else 1, ncols, height_ratios=[2.2, 1] if gallery else None)
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
    for c, (img, title) in enumerate(gallery):
        gax = fig.add_subplot(grid[1, c])
        V.overlay(gax, img, title=title)
    V.save(fig, path)
    return fig, lines, numbers


def threshold_explorer(id_scores, ood_scores: Mapping[str, object], score_name: str = "score",
                       images: Callable | None = None, threshold: float | None = None, interactive: bool = False,
                       n_gallery: int = 4, path: str | os.PathLike | None = None):
    """A threshold on one score: accepted / rejected counts, TPR and FPR, and a small gallery of errors.

    The default threshold keeps 95% of ID images (the FPR95 operating point). Static mode returns the figure at
    that threshold; interactive mode adds a slider over the observed score range.
    """
    id_s = np.asarray(id_scores, dtype=float).ravel()
    t0 = A.threshold_at_tpr(id_s, 0.95) if threshold is None else float(threshold)
    fig, lines, numbers = threshold_view(id_s, ood_scores, t0, score_name, images, n_gallery=n_gallery, path=path)
    print("\n".join(lines))
    if not interactive:
        return fig

    import ipywidgets as w
    from IPython.display import display

    pooled = _pooled(ood_scores)
    lo, hi = float(min(id_s.min(), pooled.min())), float(max(id_s.max(), pooled.max()))
    slider = w.FloatSlider(value=t0, min=lo, max=hi, step=(hi - lo) / 200 or 1e-3, readout_format=".4f",
                           description="threshold", continuous_update=False, layout=w.Layout(width="70%"))
    out = w.Output()

    def redraw(*_):
        new_fig, new_lines, _ = threshold_view(id_s, ood_scores, slider.value, score_name, images,
                                               n_gallery=n_gallery)
        with out:
            out.clear_output(wait=True)
            print("\n".join(new_lines))
            display(new_fig)

    slider.observe(redraw, names="value")
    with out:
        print("\n".join(lines))
        display(fig)
    return w.VBox([slider, out])


__all__ = ["ImageLookup", "object_box", "relevance_explorer", "relevance_view", "threshold_explorer",
           "threshold_view"]

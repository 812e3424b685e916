"""The stage-1 explorer: one image's relevance maps for a chosen class, PUC size k and rule."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from ..clipos import relevance as R
from ..viz import analysis as A
from ..viz import static as V
from .explorer_kit import live, wrap


def object_box(dataset, index: int):
    """The ground-truth box of a single-object image of world v1 or v2 (the dashed box in figures), else None
    (other datasets have no boxes)."""
    scene = getattr(dataset, "scene", None)
    if scene is None:
        return None
    s = scene(index)
    return s.objects[0].box if s.kind == "object" and s.objects else None


def object_boxes(dataset) -> list:
    """:func:`object_box` of every image of ``dataset`` (for figures)."""
    return [object_box(dataset, i) for i in range(len(dataset))]


def object_regions(dataset) -> list:
    """Where each image's object is, for the localisation numbers: world v1's box, world v2's exact coverage
    mask (``dataset.object_region``), None where a dataset does not know."""
    return [dataset.object_region(i) for i in range(len(dataset))]


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
    image, box, region = dataset.load(ds_index), object_box(dataset, ds_index), dataset.object_region(ds_index)
    classes = bank.classnames
    n_rel, n_all = int(res.mask.sum()), res.mask.shape[1]
    numbers = {"id": bank.ids[index], "true_class": classes[int(one.labels[0])], "class": classes[label], "k": k,
               "rule": rule, "rho": float(res.rho[0]), "n_relevant": n_rel, "n_patches": n_all}
    if region is not None:
        numbers.update(A.mask_localisation(res.mask, [region], bank.grid, image.size[::-1]))
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
    typical rather than the best or the worst. Without ground truth (``dataset.object_region``): the image with
    the median rho.

    Returns (row of ``bank``, the rule in words, with the numbers).
    """
    res = R.relevance(bank, text, rule=rule, k=k)
    where = {s.id: i for i, s in enumerate(dataset.samples)}
    regions = [dataset.object_region(where[i]) for i in bank.ids]
    size = dataset.load(where[bank.ids[0]]).size[::-1]
    lift = A.localisation_per_image(res.mask, regions, bank.grid, size)
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

    live((image_w, class_w, k_w, rule_w), redraw)
    return w.VBox([w.HBox([image_w, class_w]), w.HBox([k_w, rule_w]), out])

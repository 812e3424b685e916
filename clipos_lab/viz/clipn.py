"""What a fitted CLIPN says about images: yes vs no similarities per class, p_yes over patches, and an explorer.

For notebook 06. Figures are matplotlib (returned, saved when given ``path``); :func:`yes_no_explorer` adds
ipywidgets (a set and an image picker) in JupyterLab and falls back to a static figure of fixed examples.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..scores import cosine_logits
from . import static as V


def similarities(method, features: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image and class: ``cos_yes``, ``cos_no`` and ``p_yes`` ``(N, C)`` of a fitted CLIPN."""
    method._check_fitted()
    return {"cos_yes": cosine_logits(features, method.text_).numpy(),
            "cos_no": cosine_logits(features, method.text_no_).numpy(),
            "p_yes": method.p_yes(features).numpy()}


def patch_p_yes(method, bank, rows: Sequence[int]) -> np.ndarray:
    """``(len(rows), H, W)``: p_yes of each patch token for the class the yes branch predicts for the image.

    Meaningful only where patch tokens live in the joint space (the pocket model is trained for it); for a stock
    CLIP they are noisier, as GL-MCM's local scores are.
    """
    if bank.patches is None:
        raise ValueError("this bank has no patch tokens: encode it with patches to map p_yes over them")
    rows = list(rows)
    pick = cosine_logits(bank.global_[rows], method.text_).argmax(-1)
    per_patch = method.p_yes(bank.patches[rows])  # (n, P, C)
    maps = per_patch[torch.arange(len(rows)), :, pick]
    return maps.reshape(len(rows), *bank.grid).numpy()


def yes_no_figure(examples: Sequence[tuple], classnames: Sequence[str], suptitle: str | None = None,
                  path: str | os.PathLike | None = None) -> Figure:
    """One column per example ``(image, title, cos_yes (C,), cos_no (C,), p_yes (C,))``: the image, then per
    class the cosine to its yes prompt and to its no prompt (bars) and p_yes (dots, right axis)."""
    n = max(1, len(examples))
    fig = Figure(figsize=(max(2.6 * n, 5.0), 5.6), layout="constrained")
    grid = fig.add_gridspec(2, n, height_ratios=[1, 1.6])
    x = np.arange(len(classnames))
    for c, (image, title, cos_yes, cos_no, p) in enumerate(examples):
        V.overlay(fig.add_subplot(grid[0, c]), image, title=title)
        ax = fig.add_subplot(grid[1, c])
        ax.bar(x - 0.2, cos_yes, 0.4, color="tab:green", label="cos(image, yes prompt)")
        ax.bar(x + 0.2, cos_no, 0.4, color="tab:red", label="cos(image, no prompt)")
        ax.set_xticks(x, classnames, rotation=70, fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        twin = ax.twinx()
        twin.plot(x, p, "ko", ms=4, label="p_yes")
        twin.set_ylim(-0.02, 1.02)
        twin.tick_params(axis="y", labelsize=7)
        if c == 0:
            ax.set_ylabel("cosine", fontsize=8)
            handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
            # below the panels, in readable type: inside an axes it covered the first bars
            fig.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="outside lower center",
                       ncols=3, frameon=False)
        if c == n - 1:
            twin.set_ylabel("p_yes = sigmoid(s (cos_yes - cos_no))", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return V.save(fig, path)


def examples_for(method, images: Callable, banks: Mapping[str, object], picks: Sequence[tuple[str, int]]) -> list:
    """``yes_no_figure`` examples for ``(set name, row)`` picks; titles carry the set, the ATD and the CTW."""
    out = []
    for name, row in picks:
        sims = similarities(method, banks[name].global_[row: row + 1])
        scores = method.score(banks[name].subset([row]))
        title = f"{name} #{row}\nATD {scores['ATD'][0]:.2f} CTW {scores['CTW'][0]:.2f}"
        out.append((images(name, row), title, sims["cos_yes"][0], sims["cos_no"][0], sims["p_yes"][0]))
    return out


def yes_no_explorer(method, images: Callable, banks: Mapping[str, object], picks: Sequence[tuple[str, int]],
                    interactive: bool = False, path: str | os.PathLike | None = None):
    """The figure of :func:`yes_no_figure` for ``picks``; with ``interactive`` a set dropdown and an image slider
    redraw one example at a time."""
    fig = yes_no_figure(examples_for(method, images, banks, picks), method.classnames_,
                        suptitle="yes vs no, per ID class (higher p_yes = more 'this is class c')", path=path)
    if not interactive:
        return fig

    import ipywidgets as w
    from IPython.display import display

    names = list(banks)
    which = w.Dropdown(options=names, value=picks[0][0] if picks else names[0], description="set")
    row = w.IntSlider(value=0, min=0, max=len(banks[which.value]) - 1, description="image",
                      continuous_update=False)
    out = w.Output()

    def redraw(*_):
        row.max = len(banks[which.value]) - 1
        new = yes_no_figure(examples_for(method, images, banks, [(which.value, min(row.value, row.max))]),
                            method.classnames_)
        with out:
            out.clear_output(wait=True)
            display(new)

    which.observe(redraw, names="value")
    row.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([which, row]), out])

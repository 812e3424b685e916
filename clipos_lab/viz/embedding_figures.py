"""Figures of the 2-D embedding map: a stable style per group, the scatter and small multiples per alpha."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .figures import (
    OOD_STYLES,
    new_figure,
    save,
)


def group_kind(name: str) -> str:
    """``"ID"``, ``"relevant"``, ``"outliers"``, ``"OOD"`` or ``"other"``, from a group name's first word."""
    kind = name.split(":")[0].split(" ")[0]
    return kind if kind in ("ID", "relevant", "outliers", "OOD") else "other"


def group_styles(names: Sequence[str]) -> dict[str, dict]:
    """A stable look per embedding group, counted within its kind so colours do not shift between figures:
    ID classes in tab10 colours (dots), ID-relevant features magenta, outliers black crosses, each real OOD set
    its own dark colour and marker."""
    count: dict[str, int] = {}
    styles = {}
    for name in names:
        kind = group_kind(name)
        k = count[kind] = count.get(kind, -1) + 1
        if kind == "outliers":
            styles[name] = {"marker": "x", "s": 18, "color": "black", "alpha": 0.8}
        elif kind == "relevant":
            styles[name] = {"marker": "D", "s": 14, "color": "magenta", "alpha": 0.8}
        elif kind == "OOD":
            colour, marker = OOD_STYLES[k % len(OOD_STYLES)]
            styles[name] = {"marker": marker, "s": 14, "color": colour, "alpha": 0.55}
        else:
            styles[name] = {"marker": "o", "s": 16, "color": f"C{k % 10}", "alpha": 0.75}
    return styles


def embedding_scatter(coords: Mapping[str, np.ndarray], title: str = "", ax=None,
                      highlight: Sequence[str] | None = None, legend: bool = True,
                      path: str | os.PathLike | None = None) -> Figure:
    """2-D embedding coordinates by group (``project`` output). ``highlight``: draw only these groups in colour,
    every other group in light grey underneath (small multiples use this to show one cloud at a time)."""
    fig = None
    if ax is None:
        fig, axes = new_figure(1, 1, (6.4, 5.0))
        ax = axes[0, 0]
    styles = group_styles(list(coords))
    order = sorted(coords, key=lambda n: highlight is None or n in highlight)  # grey groups first, underneath
    handles = {}
    for name in order:
        xy = np.asarray(coords[name])
        if len(xy) == 0:
            continue
        style = dict(styles[name])
        grey = highlight is not None and name not in highlight
        if grey:
            style.update(color="lightgrey", alpha=0.4)
        h = ax.scatter(xy[:, 0], xy[:, 1], linewidths=1.0 if style["marker"] == "x" else 0,
                       label=None if grey else f"{name} ({len(xy)})", **style)
        if not grey:
            handles[name] = (h, f"{name} ({len(xy)})")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend and handles:
        keep = [n for n in coords if n in handles]  # legend in the caller's group order
        ax.legend([handles[n][0] for n in keep], [handles[n][1] for n in keep], fontsize=8, markerscale=1.2,
                  loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)  # beside the map, not over it
    fig = fig or ax.figure
    return save(fig, path)


def small_multiples(coords: Mapping[str, np.ndarray], panels: Mapping[str, Sequence[str]], ncols: int = 3,
                    path: str | os.PathLike | None = None, suptitle: str | None = None) -> Figure:
    """One embedding, several panels: panel title -> the groups coloured in that panel (the rest grey).

    One legend for the whole figure, below the panels in readable type: groups coloured in every panel keep
    their names; a group coloured in one panel only (that panel's outliers) is listed as "the panel's own".
    """
    names = list(panels)
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = new_figure(nrows, ncols, (4.0, 3.6))
    everywhere = set.intersection(*(set(panels[n]) for n in names)) if names else set()
    entries: dict[str, object] = {}
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.axis("off")
            continue
        embedding_scatter(coords, title=names[k], ax=ax, highlight=panels[names[k]], legend=False)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            group = label.rsplit(" (", 1)[0]
            key = label if group in everywhere else "the panel's own: " + group_kind(group)
            entries.setdefault(key, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(4, len(entries)),
                   fontsize=8, markerscale=1.2, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save(fig, path)


__all__ = ["embedding_scatter", "group_kind", "group_styles", "small_multiples"]

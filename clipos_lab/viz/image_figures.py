"""Figures of images: grids with heat maps or masks, the relevance panel of stage 1, map grids."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from matplotlib.figure import Figure

from .figures import (
    as_numpy,
    new_figure,
    overlay,
    save,
)


def image_grid(images: Sequence, titles: Sequence[str] | None = None, heatmaps: Sequence | None = None,
               masks: Sequence | None = None, boxes: Sequence | None = None, ncols: int = 6, alpha: float = 0.6,
               cmap: str = "viridis", suptitle: str | None = None, cell: float = 1.9,
               path: str | os.PathLike | None = None) -> Figure:
    """A grid of images, each optionally with a relevance heatmap, mask outline and box (see :func:`overlay`);
    a None image leaves its cell empty (e.g. to start a new group on a new row)."""
    n = len(images)
    if n == 0:
        fig, axes = new_figure(1, 1, (cell * 2, cell))
        axes[0, 0].text(0.5, 0.5, "(no images)", ha="center", va="center")
        axes[0, 0].axis("off")
        return save(fig, path)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = new_figure(nrows, ncols, (cell, cell + 0.25))
    for k, ax in enumerate(axes.flat):
        if k >= n or images[k] is None:
            ax.axis("off")
            continue
        overlay(ax, images[k], heatmap=None if heatmaps is None else heatmaps[k],
                mask=None if masks is None else masks[k], box=None if boxes is None else boxes[k], alpha=alpha,
                cmap=cmap, title=None if titles is None else titles[k])
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save(fig, path)


def relevance_panel(image, raw, surgery=None, discrepancy=None, mask=None, box=None, title: str | None = None,
                    path: str | os.PathLike | None = None) -> Figure:
    """One image's stage-1 story in a row: image, raw map, surgery map, discrepancy, ID-relevant mask.

    Maps are ``(H, W)`` patch grids (``relevance.to_grid``); raw and surgery are min-max normalised in [0, 1],
    the discrepancy (surgery - raw) in [-1, 1] (red = surgery higher, the patches that count towards rho).
    """
    panels = [("image", None), ("raw CLIP map", raw)]
    if surgery is not None:
        panels.append(("surgery map", surgery))
    if discrepancy is not None:
        panels.append(("discrepancy (surgery - raw)", discrepancy))
    if mask is not None:
        panels.append(("ID-relevant mask", mask))
    fig, axes = new_figure(1, len(panels), (2.3, 2.5))
    for ax, (name, m) in zip(axes[0], panels):
        if name == "image":
            overlay(ax, image, box=box, title=name)
        elif name.startswith("discrepancy"):
            art = overlay(ax, image, heatmap=m, cmap="coolwarm", vmin=-1, vmax=1, alpha=0.65, title=name)
            fig.colorbar(art, ax=ax, shrink=0.7)
        elif name.startswith("ID-relevant"):
            frac = float(as_numpy(m).mean())
            overlay(ax, image, mask=m, box=box, shade=True, title=f"{name} ({frac:.0%} of patches)")
        else:
            art = overlay(ax, image, heatmap=m, title=name)
            fig.colorbar(art, ax=ax, shrink=0.7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def map_grid(images: Sequence, rows: Mapping[str, Sequence | None], masks: Mapping[str, Sequence] | None = None,
             col_titles: Sequence[str] | None = None, cmap: str = "viridis", vmin: float | None = 0.0,
             vmax: float | None = 1.0, styles: Mapping[str, dict] | None = None, boxes: Sequence | None = None,
             suptitle: str | None = None, cell: float = 1.8, path: str | os.PathLike | None = None) -> Figure:
    """Rows of variants (e.g. PUC k = 1, 3, 5) over columns of images: each cell an overlay of that variant's map.

    ``rows``: row title -> one ``(H, W)`` map per image (or None for a row of masks only); ``masks``: row title ->
    one ``(H, W)`` bool mask per image, outlined (and the outside dimmed on rows without a map).
    ``styles``: row title -> overrides of ``cmap`` / ``vmin`` / ``vmax`` (e.g. a diverging map for a discrepancy).
    """
    names = list(rows)
    n = len(images)
    fig, axes = new_figure(len(names), n, (cell, cell))
    for r, name in enumerate(names):
        style = {"cmap": cmap, "vmin": vmin, "vmax": vmax, **((styles or {}).get(name, {}))}
        for c in range(n):
            maps = rows[name]
            heat = None if maps is None else maps[c]
            mask = None if masks is None or name not in masks else masks[name][c]
            overlay(axes[r, c], images[c], heatmap=heat, mask=mask, shade=heat is None and mask is not None,
                    box=None if boxes is None else boxes[c],
                    title=col_titles[c] if (r == 0 and col_titles) else None, **style)
        axes[r, 0].set_ylabel(name, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save(fig, path)

"""Matplotlib basics every figure module shares: a figure without pyplot state, saving, colours, images and
heat maps drawn on axes.

Every figure function builds a :class:`matplotlib.figure.Figure` directly (nothing leaks between cells and
nothing is shown twice), returns it, and saves it when given ``path``. Scores follow the package's convention
everywhere: higher = more in-distribution (ID).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

SCORE_AXIS = "score (higher = more ID)"
ID_COLOUR = "#1f77b4"
OOD_COLOUR = "#d62728"
DPI = 110
OOD_STYLES = [("#4d4d4d", "^"), ("#b8860b", "v"), ("#008b8b", "s"), ("#8b008b", "D"), ("#556b2f", "P"),
              ("#a0522d", "<")]


def new_figure(nrows: int = 1, ncols: int = 1, cell: tuple[float, float] = (3.0, 2.6), **kwargs):
    fig = Figure(figsize=(cell[0] * ncols, cell[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def save(fig: Figure, path: str | os.PathLike | None, dpi: int = DPI) -> Figure:
    """Save ``fig`` to ``path`` (folders created; format from the suffix) when a path is given; return it."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def to_rgb_array(image) -> np.ndarray:
    """A PIL image, ``(H, W, 3)`` array or ``(3, H, W)`` tensor as an ``(H, W, 3)`` array for ``imshow``."""
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"))
    a = as_numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    return a


def upsample(patch_map, size: tuple[int, int] | int, mode: str = "bilinear") -> np.ndarray:
    """An ``(H, W)`` patch map resized to the image's pixel size ``(rows, cols)``.

    ``mode="bilinear"`` (``torch.nn.functional.interpolate``, ``align_corners=False``, so patch centres land on
    pixel-space patch centres) for continuous maps; ``"nearest"`` keeps a boolean mask blocky and exact.
    """
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    m = torch.as_tensor(as_numpy(patch_map), dtype=torch.float32)
    if m.dim() != 2:
        raise ValueError(f"a patch map must be (H, W), got shape {tuple(m.shape)}; use relevance.to_grid first")
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(m[None, None], size=size, mode=mode, **kwargs)[0, 0].numpy()


def overlay(ax, image, heatmap=None, mask=None, box=None, alpha: float = 0.6, cmap: str = "viridis",
            vmin: float | None = 0.0, vmax: float | None = 1.0, title: str | None = None, shade: bool = False,
            contours: bool = True):
    """Draw ``image`` on ``ax`` with an optional patch heatmap (bilinear), mask outline and box.

    Under a heatmap the image is shown in grey, so the map's colours never blend with the object's own colour;
    the default colormap is perceptual (viridis), and ``contours`` draws the map's level lines (quartiles of the
    colour range; 0 for a diverging map) in black so the shape of the map reads even where colours are close.
    ``mask`` (``(H, W)`` bool, True = ID-relevant) is outlined in white; ``shade=True`` also dims the patches
    outside it. ``box`` ``(x0, y0, x1, y1)`` in pixels (e.g. the world's ground-truth object box) is drawn dashed.
    Returns the heatmap's image artist (for a colorbar) or None.
    """
    img = to_rgb_array(image)
    rows, cols = img.shape[:2]
    extent = (0, cols, rows, 0)
    if heatmap is None:
        ax.imshow(img, extent=extent)
    else:
        ax.imshow(img.astype(np.float32).mean(-1), cmap="gray", vmin=0, vmax=255 if img.max() > 1 else 1,
                  extent=extent)
    artist = None
    if heatmap is not None:
        up = upsample(heatmap, (rows, cols))
        artist = ax.imshow(up, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, extent=extent,
                           interpolation="nearest")
        if contours and np.ptp(up) > 1e-6:
            lo, hi = (vmin if vmin is not None else up.min()), (vmax if vmax is not None else up.max())
            levels = [0.0] if lo < 0 < hi else [lo + q * (hi - lo) for q in (0.5, 0.75)]
            ax.contour(np.arange(cols) + 0.5, np.arange(rows) + 0.5, up, levels=levels, colors="black",
                       linewidths=0.8)
    if mask is not None:
        m = upsample(as_numpy(mask).astype(np.float32), (rows, cols), mode="nearest")
        if shade:
            ax.imshow(np.where(m[..., None] > 0.5, 0.0, 0.55) * np.ones((1, 1, 4)) * [0, 0, 0, 1],
                      extent=(0, cols, rows, 0))
        if 0.0 < m.mean() < 1.0:
            ax.contour(np.arange(cols) + 0.5, np.arange(rows) + 0.5, m, levels=[0.5], colors="white",
                       linewidths=1.6)
    if box is not None and box[2] > box[0]:
        x0, y0, x1, y1 = box
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], ls="--", lw=1.0, color="lime")
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return artist


OVERLAY_COLOURS = {"red": (1.0, 0.0, 0.0), "cyan": (0.0, 1.0, 1.0), "yellow": (1.0, 1.0, 0.0),
                   "magenta": (1.0, 0.0, 1.0), "lime": (0.0, 1.0, 0.0), "blue": (0.0, 0.3, 1.0)}


def contrasting_colour(images: Sequence, clear: float = 0.5) -> tuple[str, tuple[float, float, float]]:
    """The overlay colour (name, RGB in 0..1) for ``images``: red, the usual colour of a predicted defect, while
    it stands clear of them (its distance to the nearest 5% of their pixels is at least ``clear``), else the
    candidate that stands out most by that distance. A fixed red overlay vanished on a red product."""
    pixels = np.concatenate([to_rgb_array(im).reshape(-1, to_rgb_array(im).shape[-1])[:, :3] for im in images])
    pixels = pixels.astype(float) / (255.0 if pixels.max() > 1.0 else 1.0)
    if len(pixels) > 20000:  # a fixed, evenly spaced sample: deterministic and quick
        pixels = pixels[np.linspace(0, len(pixels) - 1, 20000).astype(int)]

    def distance(name: str) -> float:
        return float(np.percentile(np.linalg.norm(pixels - np.asarray(OVERLAY_COLOURS[name]), axis=1), 5))

    best = "red" if distance("red") >= clear else max(OVERLAY_COLOURS, key=distance)
    return best, OVERLAY_COLOURS[best]

"""Static matplotlib figures for notebooks, papermill runs and reports.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot state: nothing leaks between
cells and nothing is shown twice), returns it, and saves it when ``path`` is given. Jupyter displays a returned
figure inline. Scores follow the package's convention everywhere: higher = more in-distribution (ID).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

SCORE_AXIS = "score (higher = more ID)"
ID_COLOUR = "#1f77b4"
OOD_COLOUR = "#d62728"
DPI = 110


# ------------------------------------------------------------------------------------------------ helpers
def _figure(nrows: int = 1, ncols: int = 1, cell: tuple[float, float] = (3.0, 2.6), **kwargs):
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


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def to_rgb_array(image) -> np.ndarray:
    """A PIL image, ``(H, W, 3)`` array or ``(3, H, W)`` tensor as an ``(H, W, 3)`` array for ``imshow``."""
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"))
    a = _numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    return a


def upsample(patch_map, size: tuple[int, int] | int, mode: str = "bilinear") -> np.ndarray:
    """An ``(H, W)`` patch map resized to the image's pixel size ``(rows, cols)``.

    ``mode="bilinear"`` (``torch.nn.functional.interpolate``, ``align_corners=False``, so patch centres land on
    pixel-space patch centres) for continuous maps; ``"nearest"`` keeps a boolean mask blocky and exact.
    """
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    m = torch.as_tensor(_numpy(patch_map), dtype=torch.float32)
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
        m = upsample(_numpy(mask).astype(np.float32), (rows, cols), mode="nearest")
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


# ----------------------------------------------------------------------------------------------- images
def image_grid(images: Sequence, titles: Sequence[str] | None = None, heatmaps: Sequence | None = None,
               masks: Sequence | None = None, boxes: Sequence | None = None, ncols: int = 6, alpha: float = 0.6,
               cmap: str = "viridis", suptitle: str | None = None, cell: float = 1.9,
               path: str | os.PathLike | None = None) -> Figure:
    """A grid of images, each optionally with a relevance heatmap, mask outline and box (see :func:`overlay`)."""
    n = len(images)
    if n == 0:
        fig, axes = _figure(1, 1, (cell * 2, cell))
        axes[0, 0].text(0.5, 0.5, "(no images)", ha="center", va="center")
        axes[0, 0].axis("off")
        return save(fig, path)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = _figure(nrows, ncols, (cell, cell + 0.25))
    for k, ax in enumerate(axes.flat):
        if k >= n:
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
    fig, axes = _figure(1, len(panels), (2.3, 2.5))
    for ax, (name, m) in zip(axes[0], panels):
        if name == "image":
            overlay(ax, image, box=box, title=name)
        elif name.startswith("discrepancy"):
            art = overlay(ax, image, heatmap=m, cmap="coolwarm", vmin=-1, vmax=1, alpha=0.65, title=name)
            fig.colorbar(art, ax=ax, shrink=0.7)
        elif name.startswith("ID-relevant"):
            frac = float(_numpy(m).mean())
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
    fig, axes = _figure(len(names), n, (cell, cell))
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


# ------------------------------------------------------------------------------------------ distributions
def value_histogram(values, title: str, xlabel: str, bins: int = 20, range_: tuple | None = None,
                    lines: Mapping[str, float] | None = None, path: str | os.PathLike | None = None) -> Figure:
    """A histogram of one set of values (e.g. the adaptive rho of every few-shot image) with marked lines."""
    v = _numpy(values).ravel()
    fig, axes = _figure(1, 1, (4.5, 3.0))
    ax = axes[0, 0]
    ax.hist(v, bins=bins, range=range_, color="#4c72b0", alpha=0.85, edgecolor="white")
    for k, (label, x) in enumerate((lines or {}).items()):
        ax.axvline(x, color=f"C{k + 1}", ls="--", label=f"{label} = {x:.3g}")
    if lines:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    return save(fig, path)


def _hist_pair(ax, id_scores, ood_scores, bins: int, ood_name: str, id_name: str = "ID"):
    a, b = _numpy(id_scores).ravel(), _numpy(ood_scores).ravel()
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    ax.hist(a, bins=edges, alpha=0.55, color=ID_COLOUR, density=True, label=f"{id_name} (n={len(a)})")
    ax.hist(b, bins=edges, alpha=0.55, color=OOD_COLOUR, density=True, label=f"{ood_name} (n={len(b)})")


def score_histograms(scores: Mapping[str, object], score_name: str = "MCM", id_key: str = "ID", bins: int = 30,
                     title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """ID vs each OOD set, one panel per OOD set; ``scores`` maps set name -> scores (``id_key`` is the ID set).

    Each panel's title gives the AUROC (ID positive) so the picture and the number can be compared.
    """
    from ..evaluation import metrics as M

    oods = [k for k in scores if k != id_key]
    if id_key not in scores or not oods:
        raise ValueError(f"scores need the ID set {id_key!r} and at least one OOD set, got {list(scores)}")
    fig, axes = _figure(1, len(oods), (3.3, 2.7))
    for ax, ood in zip(axes[0], oods):
        _hist_pair(ax, scores[id_key], scores[ood], bins, ood)
        auc = M.auroc(_numpy(scores[id_key]).ravel(), _numpy(scores[ood]).ravel())
        ax.set_title(f"{ood}: AUROC {auc:.3f}", fontsize=9)
        ax.set_xlabel(f"{score_name} {SCORE_AXIS}", fontsize=8)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("density")
    fig.suptitle(title or f"{score_name}: ID vs OOD (higher = more ID)", fontsize=10)
    return save(fig, path)


def score_histogram_grid(scores: Mapping[str, Mapping[str, object]], id_key: str = "ID", bins: int = 30,
                         title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Rows = scores (e.g. MCM, GL-MCM, 1-p(unknown)), columns = OOD sets; ``scores[score][set] -> values``."""
    from ..evaluation import metrics as M

    names = list(scores)
    oods = [k for k in scores[names[0]] if k != id_key]
    fig, axes = _figure(len(names), len(oods), (3.0, 2.3))
    for r, name in enumerate(names):
        for c, ood in enumerate(oods):
            ax = axes[r, c]
            _hist_pair(ax, scores[name][id_key], scores[name][ood], bins, ood)
            auc = M.auroc(_numpy(scores[name][id_key]).ravel(), _numpy(scores[name][ood]).ravel())
            ax.set_title(f"{name} | {ood}: AUROC {auc:.3f}", fontsize=8)
            if r == len(names) - 1:
                ax.set_xlabel(SCORE_AXIS, fontsize=8)
            if c == 0:
                ax.set_ylabel("density", fontsize=8)
            ax.legend(fontsize=6)
    fig.suptitle(title or "ID vs OOD score distributions (higher = more ID)", fontsize=10)
    return save(fig, path)


def roc_curves(curves: Mapping[str, tuple[object, Mapping[str, object]]], title: str | None = None,
               path: str | os.PathLike | None = None) -> Figure:
    """ROC curves, one panel per OOD set, one line per entry of ``curves``: label -> (ID scores, {ood: scores}).

    ID is the positive class: the y axis is the fraction of ID images accepted (TPR), the x axis the fraction of
    OOD images accepted (FPR). The dotted line marks 95% TPR, where FPR95 is read.
    """
    from sklearn.metrics import roc_curve

    from ..evaluation import metrics as M

    labels = list(curves)
    oods = list(curves[labels[0]][1])
    fig, axes = _figure(1, len(oods), (3.3, 3.1))
    for ax, ood in zip(axes[0], oods):
        for k, label in enumerate(labels):
            id_s, ood_s = _numpy(curves[label][0]).ravel(), _numpy(curves[label][1][ood]).ravel()
            y = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
            fpr, tpr, _ = roc_curve(y, np.r_[id_s, ood_s])
            ax.plot(fpr, tpr, color=f"C{k}", lw=1.4, label=f"{label} ({M.auroc(id_s, ood_s):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.axhline(0.95, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{ood}", fontsize=9)
        ax.set_xlabel("FPR (OOD accepted)", fontsize=8)
        ax.legend(fontsize=6, loc="lower right", title="AUROC", title_fontsize=6)
    axes[0, 0].set_ylabel("TPR (ID accepted)", fontsize=8)
    fig.suptitle(title or "ROC curves, ID positive (higher score = more ID)", fontsize=10)
    return save(fig, path)


def loss_curves(histories: Mapping[str, Sequence[Mapping]], keys: Sequence[str] = ("loss", "loss_id",
                "loss_outlier", "entropy"), title: str | None = None,
                path: str | os.PathLike | None = None) -> Figure:
    """Training curves from prompt-learning history rows (``method.history_``), one panel per method.

    ``loss`` is the total objective (the entropy term enters it with a minus sign), ``loss_id`` the ID
    cross-entropy, ``loss_outlier`` the cross-entropy of synthesised outliers to *unknown*, ``entropy`` LoCoOp's
    entropy on ID-irrelevant patches (maximised).
    """
    names = list(histories)
    fig, axes = _figure(1, max(1, len(names)), (3.4, 2.8))
    for ax, name in zip(axes[0], names):
        rows = histories[name]
        steps = [r.get("step", i) for i, r in enumerate(rows)]
        for k, key in enumerate(keys):
            vals = [r.get(key) for r in rows]
            if any(v is not None for v in vals):
                ax.plot(steps, [np.nan if v is None else v for v in vals], color=f"C{k}", lw=1.3, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("value", fontsize=8)
    fig.suptitle(title or "prompt-learning losses", fontsize=10)
    return save(fig, path)


def threshold_figure(id_scores, ood_scores, threshold: float, score_name: str = "score", bins: int = 30,
                     ood_name: str = "OOD", path: str | os.PathLike | None = None) -> Figure:
    """Both score distributions with the decision threshold: images at or above it are accepted as ID."""
    from .analysis import threshold_stats

    st = threshold_stats(id_scores, ood_scores, threshold)
    fig, axes = _figure(1, 1, (5.0, 3.0))
    ax = axes[0, 0]
    _hist_pair(ax, id_scores, ood_scores, bins, ood_name)
    ax.axvline(threshold, color="black", lw=1.5, ls="--")
    ax.axvspan(ax.get_xlim()[0], threshold, color="grey", alpha=0.12, lw=0)
    ax.set_title(f"threshold {threshold:.4g}: TPR {st['tpr']:.1%} (ID kept), FPR {st['fpr']:.1%} (OOD accepted)",
                 fontsize=9)
    ax.set_xlabel(f"{score_name} {SCORE_AXIS}; grey = rejected as OOD", fontsize=8)
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return save(fig, path)


def _fitted_limits(values, lower_bound: float = 0.0, upper_bound: float = 1.0, pad: float = 0.12,
                   min_width: float = 0.02):
    """x-limits that hug ``values`` (so a difference of a point is visible), at least ``min_width`` wide and
    inside the metric's range [``lower_bound``, ``upper_bound``]."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return lower_bound, upper_bound
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, min_width)
    mid = (lo + hi) / 2
    lo, hi = min(lo - pad * span, mid - min_width / 2), max(hi + pad * span, mid + min_width / 2)
    if hi > upper_bound:
        lo, hi = max(lower_bound, lo - (hi - upper_bound)), upper_bound
    if lo < lower_bound:
        lo, hi = lower_bound, min(upper_bound, hi + (lower_bound - lo))
    return lo, hi


def summary_dots(summary: Sequence[Mapping], scores: Mapping[str, str] | None = None,
                 metrics: Sequence[str] = ("AUROC", "FPR95"), title: str | None = None,
                 path: str | os.PathLike | None = None) -> Figure:
    """Benchmark results (runner summary rows) as dot plots that show differences between methods.

    One row of panels per metric (AUROC: higher is better, FPR95: lower is better), one column for the OOD-set
    average and one per OOD set; one line per (method, score, shots), a dot at the mean over seeds with the std
    over seeds as error bar. Every panel's axis is fitted to its own values, not to [0, 1], so that a difference
    of a point is visible. ``scores`` keeps one score per method (method -> score name); default: every score.
    """
    cells: dict[tuple, dict] = {}
    oods: list[str] = []
    for r in summary:
        if r["metric"] not in metrics or r["metric"] == "ACC":
            continue
        key = (r["method"], r["score"], r["shots"])
        if scores is not None and scores.get(key[0], key[1]) != key[1]:
            continue
        cells.setdefault(key, {})[(r["ood"], r["metric"])] = (r["mean"], r.get("std", 0.0))
        if r["ood"] != "Average" and r["ood"] not in oods:
            oods.append(r["ood"])
    keys = list(cells)
    labels = [f"{m} [{s}] {k}-shot" if k else f"{m} [{s}] zero-shot" for m, s, k in keys]
    columns = ["Average", *oods]
    fig, axes = _figure(len(metrics), len(columns), (2.5, 0.26 * max(len(keys), 3) + 0.9), sharey=True)
    y = np.arange(len(keys))
    for r, metric in enumerate(metrics):
        for c, ood in enumerate(columns):
            ax = axes[r, c]
            colour = "black" if ood == "Average" else OOD_STYLES[(c - 1) % len(OOD_STYLES)][0]
            vals = np.array([cells[k].get((ood, metric), (np.nan, 0.0)) for k in keys], dtype=float)
            ax.errorbar(vals[:, 0], y, xerr=vals[:, 1], fmt="o", color=colour, ms=5, capsize=2.5, lw=1.0,
                        clip_on=False)
            ax.set_xlim(*_fitted_limits(np.concatenate([vals[:, 0] - vals[:, 1], vals[:, 0] + vals[:, 1]])))
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(axis="x", labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            better = "lower is better" if metric.startswith("FPR") else "higher is better"
            ax.set_title(f"{metric}, {'OOD average' if ood == 'Average' else ood}" + (f"\n({better})" if c == 0
                                                                                        else ""), fontsize=8)
        axes[r, 0].set_yticks(y, labels, fontsize=7)
    axes[0, 0].invert_yaxis()
    fig.suptitle(title or "mean over seeds ± std; each panel's axis fitted to its values (score: higher = more ID)",
                 fontsize=9)
    return save(fig, path)


# -------------------------------------------------------------------------------------------- embeddings
OOD_STYLES = [("#4d4d4d", "^"), ("#b8860b", "v"), ("#008b8b", "s"), ("#8b008b", "D"), ("#556b2f", "P"),
              ("#a0522d", "<")]


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
        fig, axes = _figure(1, 1, (6.4, 5.0))
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
        h = ax.scatter(xy[:, 0], xy[:, 1], linewidths=1.0 if style["marker"] == "x" else 0, **style)
        if not grey:
            handles[name] = (h, f"{name} ({len(xy)})")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend and handles:
        keep = [n for n in coords if n in handles]  # legend in the caller's group order
        ax.legend([handles[n][0] for n in keep], [handles[n][1] for n in keep], fontsize=6, markerscale=1.2,
                  loc="best", framealpha=0.8)
    fig = fig or ax.figure
    return save(fig, path)


def small_multiples(coords: Mapping[str, np.ndarray], panels: Mapping[str, Sequence[str]], ncols: int = 3,
                    path: str | os.PathLike | None = None, suptitle: str | None = None) -> Figure:
    """One embedding, several panels: panel title -> the groups coloured in that panel (the rest grey)."""
    names = list(panels)
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = _figure(nrows, ncols, (4.0, 3.6))
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.axis("off")
            continue
        embedding_scatter(coords, title=names[k], ax=ax, highlight=panels[names[k]], legend=k == 0)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save(fig, path)


__all__ = ["embedding_scatter", "group_kind", "group_styles", "image_grid", "loss_curves", "map_grid", "overlay",
           "relevance_panel", "roc_curves", "save", "score_histogram_grid", "score_histograms", "small_multiples",
           "summary_dots", "threshold_figure", "to_rgb_array", "upsample", "value_histogram"]

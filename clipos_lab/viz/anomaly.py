"""Figures of anomaly maps (static matplotlib) and an explorer with widgets that falls back to a static panel.

Maps are at the model's input resolution, like the masks from :meth:`AnomalyDataset.mask`. A threshold turns a
map into a predicted defect region: drawn as an overlay in the colour that stands out most from the images shown
(:func:`~clipos_lab.viz.figures.contrasting_colour`: red, unless the product is red), with the ground-truth
outline in white.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from .figures import contrasting_colour, save
from .figures import new_figure as _figure


def model_view(dataset, i: int, size: int) -> np.ndarray:
    """Image ``i`` as the model saw it: torchvision's ``Resize(size)`` (bicubic) and ``CenterCrop(size)``, the
    preprocessing's own functions, so it lines up with the masks and maps pixel for pixel."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    img = TF.resize(dataset.load(i), size, interpolation=InterpolationMode.BICUBIC)
    return np.asarray(TF.center_crop(img, size))


def _panel(ax, image, heat=None, mask=None, predicted=None, title="", vmin=None, vmax=None,
           colour=(1.0, 0.0, 0.0)):
    ax.imshow(image)
    if heat is not None:
        ax.imshow(heat, cmap="jet", alpha=0.5, vmin=vmin, vmax=vmax)
    if predicted is not None:
        ax.imshow(np.where(predicted[..., None], [*colour, 0.6], [0, 0, 0, 0]))
    if mask is not None and 0 < mask.mean() < 1:
        ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=1.2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def map_figure(images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], maps: Mapping[str, Sequence],
               thresholds: Mapping[str, float] | None = None, titles: Sequence[str] | None = None,
               path: str | os.PathLike | None = None):
    """Columns = images; rows: the image, its ground-truth mask, each method's map, and (with ``thresholds``)
    each method's thresholded region over the image. Each method's maps share one colour range."""
    thresholds = thresholds or {}
    colour_name, colour = contrasting_colour(images)
    rows = 2 + len(maps) + len(thresholds)
    fig, axes = _figure(rows, len(images), cell=(1.7, 1.7))
    for c, image in enumerate(images):
        mask = masks[c]
        _panel(axes[0, c], image, title=titles[c] if titles else "")
        axes[1, c].imshow(np.zeros(image.shape[:2]) if mask is None else mask, cmap="gray", vmin=0, vmax=1)
        axes[1, c].set_xticks([])
        axes[1, c].set_yticks([])
        axes[1, c].set_title("ground truth" if mask is not None else "no mask", fontsize=8)
        for r, (name, method_maps) in enumerate(maps.items(), start=2):
            lo, hi = float(np.min(method_maps)), float(np.max(method_maps))
            _panel(axes[r, c], image, heat=method_maps[c], mask=mask, title=name, vmin=lo, vmax=hi)
        for r, (name, t) in enumerate(thresholds.items(), start=2 + len(maps)):
            _panel(axes[r, c], image, mask=mask, predicted=maps[name][c] >= t, title=f"{name} >= {t:.3g}",
                   colour=colour)
    if thresholds:
        fig.suptitle(f"thresholded rows: {colour_name} = predicted defect, white outline = true defect", fontsize=9)
    return save(fig, path)


def explorer(images, masks, maps: Mapping[str, np.ndarray], image_scores: Mapping[str, np.ndarray],
             thresholds: Mapping[str, float], ids: Sequence[str], interactive: bool = False, index: int = 0,
             method: str | None = None, path: str | os.PathLike | None = None):
    """Pick an image, a method and a threshold: the map and the thresholded region follow.

    ``images(i)`` returns image ``i`` as the model saw it; ``masks(i)`` its mask or None. ``thresholds`` are the
    starting thresholds per method (e.g. the pixel F1-max ones). Static mode draws the panel for the given
    settings (saved to ``path``) and returns the figure; interactive mode returns the widget box.
    """
    methods = list(maps)
    method = method or methods[0]

    def view(i, name, t):
        fig, axes = _figure(1, 3, cell=(2.4, 2.4))
        image, mask, m = images(i), masks(i), maps[name][i]
        lo, hi = float(maps[name].min()), float(maps[name].max())
        _panel(axes[0, 0], image, mask=mask, title=f"{ids[i]}")
        _panel(axes[0, 1], image, heat=m, mask=mask, title=f"{name} map", vmin=lo, vmax=hi)
        predicted = m >= t
        colour_name, colour = contrasting_colour([image])
        _panel(axes[0, 2], image, mask=mask, predicted=predicted, colour=colour,
               title=f"threshold {t:.3g}\n{colour_name} = predicted defect")
        line = (f"{ids[i]}: {name} image score {float(image_scores[name][i]):.3f}; "
                f"{int(predicted.sum())} px above {t:.3g}")
        if mask is not None and mask.any():
            inter = int((predicted & mask).sum())
            line += f"; IoU with the defect {inter / max(1, int((predicted | mask).sum())):.2f}"
        return fig, line

    fig, line = view(index, method, thresholds[method])
    save(fig, path)
    if not interactive:
        print(line)  # interactive mode prints inside the widget only: no stale line above it after a control moves
        return fig

    import ipywidgets as w
    from IPython.display import display

    image_w = w.IntSlider(value=index, min=0, max=len(ids) - 1, description="image", continuous_update=False)
    method_w = w.Dropdown(options=methods, value=method, description="method")
    lo, hi = float(maps[method].min()), float(maps[method].max())
    thr_w = w.FloatSlider(value=thresholds[method], min=lo, max=hi, step=(hi - lo) / 200 or 1e-3,
                          description="threshold", continuous_update=False, readout_format=".3g")
    out = w.Output()
    busy = [False]

    def on_method(change):
        busy[0] = True  # one redraw per pick, not one per slider attribute set here
        new_lo, new_hi = float(maps[change.new].min()), float(maps[change.new].max())
        thr_w.min, thr_w.max = min(new_lo, thr_w.min), max(new_hi, thr_w.max)
        thr_w.min, thr_w.max, thr_w.value = new_lo, new_hi, thresholds[change.new]
        busy[0] = False

    def redraw(*_):
        if busy[0]:
            return
        new_fig, new_line = view(image_w.value, method_w.value, thr_w.value)
        with out:
            out.clear_output(wait=True)
            print(new_line)
            display(new_fig)

    method_w.observe(on_method, names="value")
    for control in (image_w, method_w, thr_w):
        control.observe(redraw, names="value")
    with out:
        print(line)
        display(fig)
    return w.VBox([w.HBox([image_w, method_w, thr_w]), out])

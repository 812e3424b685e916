"""The embedding explorer: the joint 2-D map of ID, ID-relevant, outliers and real OOD, and where outliers came from.

Why the map is a plain plotly figure and not a ``FigureWidget``: a ``FigureWidget`` (or a plotly figure drawn
inside an ``ipywidgets.Output``) reaches the browser through widget messages, and on a cold first run under load
its view could render from the widget's empty initial state (axes only: no points, title or legend). A plain
figure is one display message holding all its data, rendered by JupyterLab's plotly renderer as any cell output,
so the first view always has its points; hovering still shows every point's text (an outlier's parents and
``lam``). The pictures of an outlier's two parents come from a slider below the map (matplotlib in an
``Output``, the path every other explorer uses).
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np

from ..viz import static as V
from .explorer_kit import live


def parents_view(outliers, i: int, source_image: Callable, source_ids: Sequence[str] | None = None,
                 classnames: Sequence[str] | None = None):
    """The two few-shot images outlier ``i`` was mixed from, titled with their weights ``lam`` / ``1 - lam``."""
    p = outliers.provenance(i)
    a, b = p["first"], p["second"]

    def name(row, label):
        return (source_ids[row] if source_ids is not None else f"row {row}") + (
            f" ({classnames[label]})" if classnames is not None else "")

    return V.image_grid([source_image(a), source_image(b)],
                        [f"lam = {p['lam']:.2f}\n{name(a, p['label_first'])}",
                         f"1 - lam = {1 - p['lam']:.2f}\n{name(b, p['label_second'])}"],
                        ncols=2, cell=1.7, suptitle=f"outlier #{i}: its two parents")


def embedding_explorer(coords: Mapping[str, np.ndarray], hover: Mapping[str, Sequence[str]] | None = None,
                       title: str = "", outlier_group: str | None = None, outliers=None,
                       source_image: Callable | None = None, source_ids: Sequence[str] | None = None,
                       classnames: Sequence[str] | None = None, interactive: bool = False,
                       path: str | os.PathLike | None = None, html_path: str | os.PathLike | None = None,
                       index: int = 0):
    """The joint 2-D map of the embedding space; in interactive mode with hover text on every point and a slider
    that shows the two few-shot images any synthesised outlier was mixed from.

    ``outliers`` (a :class:`~clipos_lab.clipos.synthesis.Outliers`) are the points of ``coords[outlier_group]``;
    ``source_image(row)`` gives the picture of row ``row`` of the bank their ``first`` / ``second`` index, whose
    ids are ``source_ids``. Static mode draws (and saves to ``path``) the matplotlib map and returns it.
    Interactive mode displays the plotly map (also saved to ``html_path``; its static twin goes to ``path``
    without being shown) and returns the parents widget, or None when there are no outliers to trace.
    """
    from ..viz import interactive as I

    static = V.embedding_scatter(coords, title=title, path=path)
    if not interactive:
        return static

    import ipywidgets as w
    from IPython.display import display

    display(I.embedding_scatter(coords, hover, title=title, path=html_path))
    if outlier_group not in coords or outliers is None or source_image is None or not len(outliers):
        return None
    pick = w.IntSlider(value=min(max(index, 0), len(outliers) - 1), min=0, max=len(outliers) - 1,
                       description="outlier #", continuous_update=False)
    out = w.Output(layout=w.Layout(min_height="200px"))

    def redraw():
        fig = parents_view(outliers, pick.value, source_image, source_ids, classnames)
        with out:
            out.clear_output(wait=True)
            print("hovering over a black cross on the map names its parents, lam and number; pick a number here "
                  "to see the two images")
            display(fig)

    live((pick,), redraw)
    return w.VBox([pick, out])


__all__ = ["embedding_explorer", "parents_view"]

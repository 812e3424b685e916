"""Interactive plotly figures for JupyterLab (hover text, zoom); static twins live in :mod:`.static`.

Figures are saved as standalone HTML that works offline: plotly's JavaScript is written once next to them
(``plotly.min.js``), never fetched from a CDN.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

_SYMBOLS = {"o": "circle", "D": "diamond", "x": "x", "^": "triangle-up", "v": "triangle-down", "s": "square",
            "P": "cross", "<": "triangle-left"}


_TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def save_html(fig, path: str | os.PathLike | None):
    """Write ``fig`` as HTML beside a local copy of plotly.js (offline); returns the figure."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.write_html(str(path), include_plotlyjs="directory", full_html=True)
    return fig


def embedding_scatter(coords: Mapping[str, np.ndarray], hover: Mapping[str, Sequence[str]] | None = None,
                      title: str = "", path: str | os.PathLike | None = None, width: int = 850, height: int = 620):
    """Scatter of 2-D embedding groups (``project`` output) with per-point hover text (e.g. outlier provenance).

    Clicking a legend entry hides a group; double-clicking isolates it.
    """
    import plotly.graph_objects as go

    from .static import group_styles

    styles = group_styles(list(coords))
    fig = go.Figure()
    for name, xy in coords.items():
        xy = np.asarray(xy)
        if len(xy) == 0:
            continue
        st = styles[name]
        colour = st["color"] if not st["color"].startswith("C") else _TAB10[int(st["color"][1:]) % 10]
        text = list(hover[name]) if hover and name in hover else [name] * len(xy)
        fig.add_trace(go.Scatter(  # SVG: hover works without WebGL (headless browsers, remote desktops)
            x=xy[:, 0], y=xy[:, 1], mode="markers", name=f"{name} ({len(xy)})", text=text,
            hovertemplate="%{text}<extra></extra>",
            marker={"symbol": _SYMBOLS.get(st["marker"], "circle"), "size": 9 if st["marker"] == "x" else 7,
                    "color": colour, "opacity": st["alpha"]}))
    fig.update_layout(title=title, width=width, height=height, template="plotly_white",
                      xaxis={"showticklabels": False}, yaxis={"showticklabels": False},
                      legend={"font": {"size": 10}})
    return save_html(fig, path)


def score_histograms(scores: Mapping[str, object], score_name: str = "MCM", id_key: str = "ID",
                     path: str | os.PathLike | None = None):
    """Overlaid ID and OOD score histograms (toggle sets in the legend); higher = more ID."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in scores.items():
        fig.add_trace(go.Histogram(x=np.asarray(values, dtype=float).ravel(), name=name, opacity=0.55,
                                   histnorm="probability density", nbinsx=40))
    fig.update_layout(barmode="overlay", template="plotly_white", width=800, height=420,
                      title=f"{score_name}: {id_key} vs OOD sets (higher = more ID)",
                      xaxis_title=f"{score_name} score (higher = more ID)", yaxis_title="density")
    return save_html(fig, path)


__all__ = ["embedding_scatter", "save_html", "score_histograms"]

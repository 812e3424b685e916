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


def shared_bins(values: Sequence[object], bins: int = 40) -> dict:
    """One plotly ``xbins`` for every trace of a panel: each trace binned on its own made a set with a narrow range
    spike to a density in the thousands while the others looked flat."""
    v = np.concatenate([np.asarray(x, dtype=float).ravel() for x in values])
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
    size = (hi - lo) / bins if hi > lo else 1e-6
    return {"start": lo, "end": hi + size * 1e-3, "size": size}


_LEGEND = {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0.0, "font": {"size": 12}}  # above the bars


def score_histograms(scores: Mapping[str, object], score_name: str = "MCM", id_key: str = "ID",
                     path: str | os.PathLike | None = None):
    """Overlaid ID and OOD score histograms on shared bins (toggle sets in the legend); higher = more ID."""
    import plotly.graph_objects as go

    xbins = shared_bins(list(scores.values()))
    fig = go.Figure()
    for k, (name, values) in enumerate(scores.items()):
        fig.add_trace(go.Histogram(x=np.asarray(values, dtype=float).ravel(), name=name, opacity=0.55,
                                   histnorm="probability density", xbins=xbins, autobinx=False,
                                   marker_color=_TAB10[k % 10]))
    fig.update_layout(barmode="overlay", template="plotly_white", width=800, height=440, legend=_LEGEND,
                      title={"text": f"{score_name}: {id_key} vs OOD sets (higher = more ID)", "y": 0.97},
                      margin={"t": 90}, xaxis_title=f"{score_name} score (higher = more ID)", yaxis_title="density")
    return save_html(fig, path)


def score_histogram_grid(scores: Mapping[str, Mapping[str, object]], id_key: str = "ID", title: str = "",
                         path: str | os.PathLike | None = None, bins: int = 30):
    """Rows = scores, columns = OOD sets, ID (blue) vs that set (red) on bins shared within each panel: the
    interactive twin of :func:`clipos_lab.viz.static.score_histogram_grid`, with hover and zoom."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..evaluation import metrics as M

    names = list(scores)
    oods = [k for k in scores[names[0]] if k != id_key]
    titles = []
    for name in names:
        for ood in oods:
            a = np.asarray(scores[name][id_key], dtype=float).ravel()
            b = np.asarray(scores[name][ood], dtype=float).ravel()
            titles.append(f"{name} | {ood}: AUROC {M.auroc(a, b):.3f}")
    fig = make_subplots(rows=len(names), cols=len(oods), subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=0.12)
    for r, name in enumerate(names, 1):
        for c, ood in enumerate(oods, 1):
            xbins = shared_bins([scores[name][id_key], scores[name][ood]], bins)
            id_label = "ID test images" if id_key == "ID" else f"{id_key} (ID)"
            for label, values, colour in ((id_label, scores[name][id_key], "#1f77b4"),
                                          ("OOD: the panel's set", scores[name][ood], "#d62728")):
                fig.add_trace(go.Histogram(x=np.asarray(values, dtype=float).ravel(), name=label, opacity=0.55,
                                           histnorm="probability density", xbins=xbins, autobinx=False,
                                           marker_color=colour, legendgroup=label,
                                           showlegend=(r, c) == (1, 1)), row=r, col=c)
    height = 260 * len(names) + 120
    fig.update_layout(barmode="overlay", template="plotly_white", width=max(700, 330 * len(oods)),
                      height=height, margin={"t": 120},  # title, then the legend, then the panels' titles
                      legend={**_LEGEND, "yref": "container", "y": 1 - 42 / height, "yanchor": "top"},
                      title={"text": title or "ID vs OOD score distributions (higher = more ID)", "y": 0.985})
    for a in fig.layout.annotations:
        a.font.size = 11
    return save_html(fig, path)


__all__ = ["embedding_scatter", "save_html", "score_histogram_grid", "score_histograms", "shared_bins"]

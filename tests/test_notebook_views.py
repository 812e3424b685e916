"""What a notebook shows (issue 23, items 1-7), checked without a browser; tests/test_browser.py checks the same
notebooks in JupyterLab. Each test failed before its fix."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure

from clipos_lab import viz
from clipos_lab.notebook import widgets
from clipos_lab.viz import anomaly as aviews
from clipos_lab.viz import interactive as iviz
from clipos_lab.viz.embedding import ticking_stage
from clipos_lab.viz.figures import contrasting_colour


def _renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _inside(fig, artist) -> bool:
    """``artist``'s drawn box lies inside the figure's canvas (a legend or label not cut off)."""
    box = artist.get_window_extent(_renderer(fig))  # after a draw, so constrained layout has placed it
    w, h = fig.canvas.get_width_height()
    return box.x0 >= -1 and box.y0 >= -1 and box.x1 <= w + 1 and box.y1 <= h + 1


# ------------------------------------------------------------------- 2. histograms share their bins


def test_2_plotly_histograms_of_one_panel_share_their_bins():
    rng = np.random.default_rng(0)
    scores = {"ID": rng.normal(0.5, 0.1, 200), "textures": rng.normal(0.1, 0.0005, 200),
              "near": rng.normal(0.3, 0.1, 200)}
    fig = iviz.score_histograms(scores, "ATD")
    bins = {(t.xbins.start, t.xbins.end, t.xbins.size) for t in fig.data}
    assert len(bins) == 1 and None not in next(iter(bins))  # one set of bins for every trace


def test_2_the_interactive_grid_has_every_score_and_ood_set():
    rng = np.random.default_rng(0)
    scores = {s: {"ID": rng.normal(1, 0.2, 50), "near": rng.normal(0, 0.2, 40), "far": rng.normal(-1, 0.2, 30)}
              for s in ("ATD", "CTW", "MCM")}
    fig = iviz.score_histogram_grid(scores, title="CLIPN")
    assert len(fig.data) == 3 * 2 * 2  # rows x OOD sets x (ID, OOD)
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == 6 and titles[0].startswith("ATD | near: AUROC") and titles[-1].startswith("MCM | far")
    for k in range(0, len(fig.data), 2):  # ID and its OOD set binned alike in each panel
        assert fig.data[k].xbins == fig.data[k + 1].xbins
    assert sum(t.showlegend for t in fig.data) == 2  # one legend: which colour is ID, which the panel's OOD set


# ------------------------------------------------------------------- 3. no stale line above the 07 explorer


def test_3_the_anomaly_explorer_prints_inside_its_widget_only(capsys):
    pytest.importorskip("ipywidgets")
    rng = np.random.default_rng(0)
    maps = {"patch-memory": rng.random((3, 16, 16)), "mutual": rng.random((3, 16, 16))}
    masks = [None, rng.random((16, 16)) > 0.7, rng.random((16, 16)) > 0.7]
    box = aviews.explorer(lambda i: np.full((16, 16, 3), 128, np.uint8), lambda i: masks[i], maps,
                          {m: rng.random(3) for m in maps}, {m: 0.5 for m in maps}, ["a", "b", "c"],
                          interactive=True, index=1)
    # outside a kernel the widget's Output does not capture, so every line shows up here: the widget's one only
    assert capsys.readouterr().out.count("b: patch-memory") == 1  # no copy above the widget, to go stale
    image_w, method_w, _ = box.children[0].children
    image_w.value = 2
    assert capsys.readouterr().out.count("c: patch-memory") == 1
    method_w.value = "mutual"
    assert capsys.readouterr().out.count("c: mutual") == 1  # one redraw per pick


def test_3_static_mode_still_prints_its_line(capsys):
    rng = np.random.default_rng(0)
    fig = aviews.explorer(lambda i: np.zeros((16, 16, 3), np.uint8), lambda i: None, {"m": rng.random((2, 16, 16))},
                          {"m": rng.random(2)}, {"m": 0.5}, ["a", "b"])
    assert isinstance(fig, Figure) and capsys.readouterr().out.startswith("a: m image score")


# ------------------------------------------------------------------- 4. UMAP says what it is doing


def test_4_a_long_silent_step_shows_a_ticking_bar_from_the_first_second(capsys):
    with ticking_stage("UMAP: compiling", True, every_s=0.1):
        time.sleep(0.45)
    err = capsys.readouterr().err
    assert err.count("UMAP: compiling") >= 3  # redrawn while the step ran, before it ended
    with ticking_stage("quiet", False):
        pass
    assert "quiet" not in capsys.readouterr().err


# ------------------------------------------------------------------- 5. overlays stand out from the product


def test_5_the_overlay_colour_contrasts_with_a_red_product():
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220
    red[:8] = 240  # a light background around the red shape
    name, colour = contrasting_colour([red])
    assert name != "red" and np.linalg.norm(np.array(colour) - [220 / 255, 0, 0]) > 0.9
    grey = np.full((32, 32, 3), 128, np.uint8)
    assert contrasting_colour([grey])[0] == "red"  # the usual colour where it stands out


def test_5_the_map_figure_names_its_overlay_colour():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 230
    maps = {"m": [np.linspace(0, 1, 256).reshape(16, 16)]}
    fig = aviews.map_figure([red], [None], maps, {"m": 0.5})
    assert "predicted defect" in fig._suptitle.get_text() and "red" not in fig._suptitle.get_text().split("=")[0]


# ------------------------------------------------------------------- 6. legends inside their figures, readable


def test_6_histogram_grid_and_roc_legends_are_inside_the_figure_and_readable():
    rng = np.random.default_rng(0)
    scores = {s: {"ID": rng.normal(1, 0.2, 50), "near": rng.normal(0, 0.2, 40)} for s in ("ATD", "MCM")}
    fig = viz.score_histogram_grid(scores)
    assert not any(ax.get_legend() for ax in fig.axes)  # none over the bars
    assert len(fig.legends) == 1 and _inside(fig, fig.legends[0])
    assert min(t.get_fontsize() for t in fig.legends[0].get_texts()) >= 8
    roc = viz.roc_curves({"MCM": (scores["MCM"]["ID"], {"near": scores["MCM"]["near"]})})
    legend = roc.axes[0].get_legend()
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 8 and _inside(roc, legend)


def test_6_small_multiples_have_one_readable_legend_naming_every_group():
    coords = {"ID: circle": np.zeros((3, 2)), "OOD: textures": np.ones((3, 2)),
              "outliers alpha=0.5": np.full((3, 2), 0.5), "outliers alpha=2": np.full((3, 2), 0.4)}
    panels = {f"alpha = {a}": ["ID: circle", "OOD: textures", f"outliers alpha={a}"] for a in ("0.5", "2")}
    fig = viz.small_multiples(coords, panels, ncols=2)
    assert len(fig.legends) == 1 and _inside(fig, fig.legends[0])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["ID: circle (3)", "OOD: textures (3)", "the panel's own: outliers"]
    assert min(t.get_fontsize() for t in fig.legends[0].get_texts()) >= 8


def test_6_the_embedding_legend_sits_beside_the_map_inside_the_figure():
    coords = {"ID: circle": np.zeros((3, 2)), "OOD: textures": np.ones((3, 2))}
    fig = viz.embedding_scatter(coords, title="map")
    legend = fig.axes[0].get_legend()
    assert _inside(fig, legend) and min(t.get_fontsize() for t in legend.get_texts()) >= 8


# ------------------------------------------------------------------- 7. 05: dots whole, figures saved


def _summary(auroc_mcm=1.0, fpr_mcm=0.0):
    rows = []
    for method, score, shots, a, f in (("MCM", "MCM", 0, auroc_mcm, fpr_mcm), ("CoOp", "MCM", 1, 0.9, 0.3)):
        for ood in ("Average", "near"):
            rows += [{"method": method, "score": score, "shots": shots, "ood": ood, "metric": "AUROC", "mean": a,
                      "std": 0.0},
                     {"method": method, "score": score, "shots": shots, "ood": ood, "metric": "FPR95", "mean": f,
                      "std": 0.0}]
    return rows


def test_7_dots_at_auroc_1_and_fpr95_0_are_drawn_whole():
    fig = viz.summary_dots(_summary())
    auroc_ax, fpr_ax = fig.axes[0], fig.axes[2]
    lo, hi = auroc_ax.get_xlim()
    assert hi > 1.0 and all(t <= 1.0 for t in auroc_ax.get_xticks())  # room for the dot, no tick past 1
    lo, hi = fpr_ax.get_xlim()
    assert lo < 0.0 and all(t >= 0.0 for t in fpr_ax.get_xticks())


def test_7_results_explorer_saves_its_static_copy_in_interactive_mode_too(tmp_path, capsys):
    pytest.importorskip("ipywidgets")
    rng = np.random.default_rng(1)
    run = lambda: {"id": {"MCM": rng.normal(1, 0.2, 20)}, "near": {"MCM": rng.normal(0, 0.2, 15)}}
    result = SimpleNamespace(scores={("MCM", 0, 0): run(), ("CoOp", 1, 1): run()}, summary=_summary(0.97, 0.1))
    widgets.results_explorer(result, interactive=True, path=tmp_path / "per_ood_histograms.png")
    assert (tmp_path / "per_ood_histograms.png").is_file()
    text = capsys.readouterr().out  # outside a kernel the widget's Output does not capture
    assert "AUROC 97.0%" in text and "FPR95 10.0%" in text  # one unit: percent
    fig = widgets.results_figure({("MCM", "MCM", 0, "near", "AUROC"): (1.0, 0.0)}, ["MCM"], {"MCM": (0, 0)},
                                 lambda m: ["MCM"], lambda m, s=None: "MCM", "MCM", "MCM", "near",
                                 {"ID": rng.normal(1, 0.2, 20), "near": rng.normal(0, 0.2, 15)}, ["near"])
    hist_ax = fig.axes[2]
    labels = [t.get_text() for t in hist_ax.get_legend().get_texts()]
    assert labels[0].startswith("ID test") and labels[1].startswith("OOD: near")  # says which colour is ID
    assert _inside(fig, hist_ax.get_legend())

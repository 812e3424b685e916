"""Notebook helpers: paths, figures, projections, thresholds and widgets in static mode (no kernel needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from clipos_lab import files, viz
from clipos_lab.evaluation import metrics
from clipos_lab.notebook import paths, reference, widgets
from clipos_lab.notebook import setup as notebook
from clipos_lab.viz import interactive as iviz


# ------------------------------------------------------------------------------------------------ paths
def test_relative_output_dir_lands_under_the_output_root_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLIPOS_OUTPUT_ROOT", str(tmp_path / "root"))
    out = paths.output_dir("outputs/nb")
    assert out == (tmp_path / "root" / "outputs" / "nb").resolve() and out.is_dir()
    monkeypatch.delenv("CLIPOS_OUTPUT_ROOT")
    assert paths.output_dir("outputs/nb", create=False) == paths.repo_root() / "outputs" / "nb"
    assert paths.output_dir(tmp_path / "abs") == (tmp_path / "abs").resolve()
    with pytest.raises(ValueError):
        paths.output_dir("")


def test_repo_root_and_inputs(tmp_path, monkeypatch):
    assert (paths.repo_root() / "clipos_lab" / "notebook" / "paths.py").is_file()
    monkeypatch.chdir(tmp_path)
    assert paths.resolve_input("assets/benchmarks/world-default.yaml").is_file()  # found via the repo
    (tmp_path / "mine.yaml").write_text("x: 1")
    assert paths.resolve_input("mine.yaml") == (tmp_path / "mine.yaml").resolve()  # the cwd wins
    with pytest.raises(FileNotFoundError, match="tried"):
        paths.resolve_input("no/such/file.yaml")


def test_write_json_converts_numpy_torch_and_nan(tmp_path):
    p = files.write_json({"a": np.float32(0.5), "b": torch.tensor([1.0, 2.0]), "c": float("nan"),
                          "d": (1, np.int64(2)), "e": tmp_path}, tmp_path / "m.json")
    assert json.loads(p.read_text()) == {"a": 0.5, "b": [1.0, 2.0], "c": None, "d": [1, 2], "e": str(tmp_path)}


def test_parse_list_accepts_what_papermill_passes():
    assert notebook.parse_list("1,2", int) == [1, 2]
    assert notebook.parse_list(1, int) == [1]
    assert notebook.parse_list(" 1, 2 3 ", int) == [1, 2, 3]
    assert notebook.parse_list("0.5,2", float) == [0.5, 2.0]
    assert notebook.parse_names("MCM, CLIP-OS w/o PUC,") == ["MCM", "CLIP-OS w/o PUC"]
    with pytest.raises(ValueError):
        notebook.parse_list("", int)


def test_resize_world_only_touches_world_entries():
    spec = notebook.benchmark_spec("default")
    small = notebook.resize_world(spec, id_per_class=3, ood_per_set=12)
    assert small.id_dataset().labels.tolist().count(0) == 3
    assert all(len(ds) == 12 for ds in small.ood_datasets().values())
    assert len(spec.id_dataset()) > len(small.id_dataset())  # the original is untouched


def test_method_averages_uses_default_scores():
    rows = []
    for method, score, auroc in (("MCM", "MCM", 0.6), ("GL-MCM", "MCM", 0.5), ("GL-MCM", "GL-MCM", 0.7)):
        rows.append({"method": method, "score": score, "shots": 0, "ood": "Average", "metric": "AUROC", "mean": auroc,
                     "std": 0.0, "n_seeds": 1})
        rows.append({"method": method, "score": score, "shots": 0, "ood": "Average", "metric": "FPR95", "mean": 0.4,
                     "std": 0.0, "n_seeds": 1})
        rows.append({"method": method, "score": score, "shots": 0, "ood": "ID", "metric": "ACC", "mean": 0.9,
                     "std": 0.0, "n_seeds": 1})
    out = notebook.method_averages(rows, {"GL-MCM": "GL-MCM"})
    assert out["GL-MCM"]["score"] == "GL-MCM" and out["GL-MCM"]["AUROC"] == pytest.approx(0.7)
    assert out["MCM"]["AUROC"] == pytest.approx(0.6) and out["MCM"]["ACC"] == pytest.approx(0.9)


# ------------------------------------------------------------------------------------------- numbers
def test_threshold_at_tpr_matches_fpr95():
    rng = np.random.default_rng(0)
    for n_id, n_ood in ((20, 30), (101, 7), (3, 50)):
        a, b = rng.normal(1, 1, n_id), rng.normal(0, 1, n_ood)
        t = viz.threshold_at_tpr(a, 0.95)
        st = viz.threshold_stats(a, b, t)
        assert st["tpr"] >= 0.95 and st["fpr"] == pytest.approx(metrics.fpr95(a, b))
        assert st["id_accepted"] + st["id_rejected"] == n_id
        assert st["ood_accepted"] + st["ood_rejected"] == n_ood


def test_worst_mistakes_orders_errors():
    w = viz.worst_mistakes(np.array([0.9, 0.1, 0.5]), {"a": np.array([0.2, 0.8]), "b": np.array([0.95])}, n=2)
    assert w["ood"] == [("b", 0, 0.95), ("a", 1, 0.8)]
    assert [i for i, _ in w["id"]] == [1, 2]


def test_mask_iou_and_localisation():
    a = torch.tensor([[True, True, False, False]])
    b = torch.tensor([[True, False, False, False]])
    assert viz.mask_iou(a, b).tolist() == [0.5]
    loc = viz.mask_localisation(a, [(0, 0, 4, 2)], (2, 2), 4)  # the box covers the top row of patches
    assert loc["mask_in_box"] == 1.0 and loc["chance_in_box"] == 0.5


def test_upsample_is_bilinear_and_keeps_the_mean_of_a_constant_map():
    m = torch.full((8, 8), 0.25)
    assert np.allclose(viz.upsample(m, 64), 0.25)
    ramp = viz.upsample(torch.tensor([[0.0, 1.0]]), (1, 8))
    assert ramp[0, 0] == 0.0 and ramp[0, -1] == 1.0 and np.all(np.diff(ramp[0]) >= 0)
    mask = viz.upsample(torch.tensor([[1.0, 0.0]]), (2, 4), mode="nearest")
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_project_keeps_groups_and_handles_tiny_sets(method):
    g = torch.Generator().manual_seed(0)
    feats = {"ID: a": torch.randn(6, 8, generator=g), "outliers": torch.randn(3, 8, generator=g),
             "OOD: x": torch.randn(4, 8, generator=g)}
    coords = viz.project(feats, method=method, seed=0)
    assert {k: v.shape for k, v in coords.items()} == {"ID: a": (6, 2), "outliers": (3, 2), "OOD: x": (4, 2)}
    again = viz.project(feats, method=method, seed=0)
    assert all(np.allclose(coords[k], again[k]) for k in coords)
    assert viz.project({"two": torch.randn(2, 8)}, method=method)["two"].shape == (2, 2)


def test_distance_to_ood_prefers_points_on_top_of_ood():
    g = torch.Generator().manual_seed(1)
    ood = torch.randn(20, 16, generator=g)
    near = ood[:10] + 0.01 * torch.randn(10, 16, generator=g)
    far = -ood[:10]
    d = viz.distance_to_ood(near, {"x": ood}, far, relevant=far)
    assert d["nn_cos"]["outliers"] > 0.99 and d["outliers_minus_id"] > 0
    assert d["mmd"]["outliers"] < d["mmd"]["id"]
    assert viz.mmd_rbf(ood, ood) == pytest.approx(0.0, abs=1e-6)


def test_provenance_labels():
    from clipos_lab.clipos.synthesis import synthesize

    out = synthesize(torch.randn(4, 8), torch.tensor([0, 0, 1, 1]), n_outliers=3, seed=0)
    labels = viz.provenance_labels(out, ["a0", "a1", "b0", "b1"], ["cat", "dog"])
    p = out.provenance(0)
    assert labels[0].startswith(f"outlier #0 = {p['lam']:.2f}*")
    assert "(cat)" in labels[0] and "(dog)" in labels[0]


# -------------------------------------------------------------------------------------------- figures
def test_static_figures_are_returned_and_saved(tmp_path):
    rng = np.random.default_rng(0)
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    maps = torch.rand(2, 2)
    scores = {"ID": rng.normal(1, 1, 30), "near": rng.normal(0, 1, 20), "far": rng.normal(-1, 1, 20)}
    figs = {
        "grid.png": viz.image_grid([img, img], ["a", "b"], heatmaps=[maps, maps], masks=[maps > 0.5, maps > 0.5]),
        "panel.png": viz.relevance_panel(img, maps, maps, maps - 0.5, maps > 0.5, box=(2, 2, 10, 10)),
        "rows.png": viz.map_grid([img], {"k=1": [maps], "mask": None}, masks={"mask": [maps > 0.5]}),
        "hist.png": viz.score_histograms(scores, "MCM"),
        "hgrid.png": viz.score_histogram_grid({"MCM": scores, "GL-MCM": scores}),
        "roc.png": viz.roc_curves({"m": (scores["ID"], {"near": scores["near"], "far": scores["far"]})}),
        "loss.png": viz.loss_curves({"m": [{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5, "entropy": 1.0}]}),
        "rho.png": viz.value_histogram([0.2, 0.5], "rho", "rho", lines={"mean": 0.35}),
        "emb.png": viz.embedding_scatter({"ID: a": rng.normal(size=(5, 2)), "outliers": rng.normal(size=(3, 2))}),
        "sm.png": viz.small_multiples({"ID: a": rng.normal(size=(5, 2)), "outliers a": rng.normal(size=(3, 2))},
                                      {"p1": ["ID: a"], "p2": ["outliers a"]}),
        "thr.png": viz.threshold_figure(scores["ID"], scores["near"], 0.0),
    }
    for name, fig in figs.items():
        assert isinstance(fig, Figure), name
        viz.save(fig, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 0
    assert "higher = more ID" in figs["hist.png"].texts[0].get_text()


def _summary_rows():
    rows = []
    for method, auroc, fpr in (("MCM", 0.84, 0.52), ("CoOp", 0.86, 0.47), ("CLIP-OS", 0.88, 0.41)):
        for ood, shift in (("Average", 0.0), ("near-ood", -0.05), ("textures", 0.05)):
            rows.append({"method": method, "score": "MCM", "shots": 0 if method == "MCM" else 1, "ood": ood,
                         "metric": "AUROC", "mean": auroc + shift, "std": 0.01, "n_seeds": 3})
            rows.append({"method": method, "score": "MCM", "shots": 0 if method == "MCM" else 1, "ood": ood,
                         "metric": "FPR95", "mean": fpr - shift, "std": 0.02, "n_seeds": 3})
        rows.append({"method": method, "score": "MCM", "shots": 0 if method == "MCM" else 1, "ood": "ID",
                     "metric": "ACC", "mean": 0.8, "std": 0, "n_seeds": 3})
    return rows


def test_summary_dots_fit_their_axes_and_show_each_ood_set(tmp_path):
    fig = viz.summary_dots(_summary_rows(), path=tmp_path / "dots.png")
    assert (tmp_path / "dots.png").is_file()
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 6  # AUROC and FPR95 rows x (average, near-ood, textures) columns
    assert titles[0].startswith("AUROC, OOD average") and titles[3].startswith("FPR95, OOD average")
    assert titles[1] == "AUROC, near-ood" and titles[5] == "FPR95, textures"
    lo, hi = fig.axes[0].get_xlim()
    assert 0.8 < lo < 0.83 and 0.89 < hi < 0.92  # fitted to 0.83..0.89 (± std), not 0..1: a gap of 2 points shows
    lo, hi = fig.axes[2].get_xlim()  # textures: 0.89..0.93, fitted on its own
    assert 0.86 < lo < 0.88 and hi < 0.96
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["MCM [MCM] zero-shot", "CoOp [MCM] 1-shot", "CLIP-OS [MCM] 1-shot"]


def test_fitted_limits_stay_inside_the_metric_range():
    from clipos_lab.viz.static import fitted_limits as _fitted_limits

    lo, hi = _fitted_limits([1.0, 1.0, 1.0])
    assert hi == 1.0 and lo == pytest.approx(0.98)  # a saturated panel keeps a readable width
    assert _fitted_limits([0.0, 0.001]) [0] == 0.0


def test_overlay_draws_maps_over_a_grey_image_with_level_lines():
    fig = Figure()
    ax = fig.add_subplot()
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[..., 0] = 255  # a red object: a colour map over it must not blend with the red
    heat = np.zeros((4, 4))
    heat[1:3, 1:3] = 1.0
    viz.overlay(ax, image, heatmap=heat)
    base = ax.get_images()[0].get_array()
    assert base.ndim == 2  # the underlay is grey (one channel), not the red picture
    assert ax.collections, "no contour lines drawn"


def test_typical_example_is_the_median_by_localisation():
    lift = np.array([0.3, np.nan, -0.1, 0.1, 0.2])
    assert viz.analysis.median_index(lift) == 4  # median of the finite values is 0.15; 0.1 and 0.2 tie, first wins
    assert viz.analysis.median_index([np.nan]) == 0
    ds, bank, text = _fake_world(3)
    index, why = widgets.typical_example(bank, ds, text, k=1)
    assert 0 <= index < len(bank) and bank.ids[index] in why and "median" in why


def test_plotly_scatter_writes_offline_html(tmp_path):
    fig = iviz.embedding_scatter({"ID: a": np.zeros((2, 2)), "outliers": np.ones((1, 2))},
                                 {"outliers": ["outlier #0 = 0.50*x (a) + 0.50*y (b)"]}, path=tmp_path / "e.html")
    assert len(fig.data) == 2 and fig.data[1].text == ("outlier #0 = 0.50*x (a) + 0.50*y (b)",)
    assert (tmp_path / "plotly.min.js").is_file() and "cdn.plot.ly" not in (tmp_path / "e.html").read_text()


# -------------------------------------------------------------------------------------------- widgets
def _fake_world(n_per_class=2):
    from clipos_lab.data import WorldDataset

    ds = WorldDataset("object", shapes=["circle", "square"], n_per_class=n_per_class, seed=3)
    from clipos_lab.features import FeatureBank

    g = torch.Generator().manual_seed(0)
    n = len(ds)
    bank = FeatureBank(torch.randn(n, 8, generator=g), torch.randn(n, 16, 8, generator=g),
                       torch.randn(n, 16, 8, generator=g), torch.tensor(ds.labels), [s.id for s in ds.samples],
                       ds.classnames, (4, 4))
    return ds, bank, torch.randn(2, 8, generator=g)


def test_relevance_explorer_static_prints_and_returns_a_figure(tmp_path, capsys):
    ds, bank, text = _fake_world()
    fig = widgets.relevance_explorer(bank, ds, text, interactive=False, index=1, k=3, path=tmp_path / "r.png")
    assert isinstance(fig, Figure) and (tmp_path / "r.png").is_file()
    line = capsys.readouterr().out
    assert "rho=" in line and "patches ID-relevant" in line and bank.ids[1] in line
    _, _, numbers = widgets.relevance_view(bank, ds, text, index=0, class_index=1, rule="topk", k=1)
    assert numbers["class"] == "square" and numbers["rule"] == "topk"


def test_relevance_explorer_interactive_prints_only_inside_and_follows_its_controls(capsys):
    ipywidgets = pytest.importorskip("ipywidgets")
    ds, bank, text = _fake_world()
    box = widgets.relevance_explorer(bank, ds, text, interactive=True, index=0)
    assert isinstance(box, ipywidgets.VBox)
    first = capsys.readouterr().out  # outside a kernel the Output widget's prints land on stdout
    assert first.count("rho=") == 1 and bank.ids[0] in first  # drawn once: no second copy outside the widget
    slider = box.children[0].children[0]
    slider.value = 2
    second = capsys.readouterr().out
    assert second.count("rho=") == 1 and bank.ids[2] in second


def test_threshold_explorer_static_and_interactive(tmp_path, capsys):
    ipywidgets = pytest.importorskip("ipywidgets")
    ds, bank, _ = _fake_world()
    lookup = widgets.ImageLookup({"ID": (ds, bank), "ood": (ds, bank)})
    id_s, ood_s = np.linspace(0.5, 1.0, len(ds)), {"ood": np.linspace(0.0, 0.7, len(ds))}
    fig = widgets.threshold_explorer(id_s, ood_s, "MCM", images=lookup, path=tmp_path / "t.png")
    assert isinstance(fig, Figure) and (tmp_path / "t.png").is_file()
    printed = capsys.readouterr().out
    assert "TPR" in printed and "FPR" in printed and "ood accepted" in printed
    assert isinstance(widgets.threshold_explorer(id_s, ood_s, images=lookup, interactive=True), ipywidgets.VBox)
    # the figure keeps its size whatever the gallery holds
    sizes = {tuple(widgets.threshold_view(id_s, ood_s, t, images=lookup)[0].get_size_inches()) for t in (0.0, 0.6, 2)}
    assert len(sizes) == 1


def test_score_explorer_switches_method_score_and_threshold(capsys):
    pytest.importorskip("ipywidgets")
    rng = np.random.default_rng(0)
    scores = {"MCM": {"MCM": {"ID": rng.normal(1, 0.1, 40), "ood": rng.normal(0, 0.1, 30)}},
              "CLIP-OS": {"MCM": {"ID": rng.normal(5, 0.1, 40), "ood": rng.normal(4, 0.1, 30)},
                          "1-p(unknown)": {"ID": rng.normal(0.9, 0.01, 40), "ood": rng.normal(0.2, 0.01, 30)}}}
    box = widgets.score_explorer(scores, interactive=True)
    method_w, score_w = box.children[0].children
    slider = box.children[1]
    assert score_w.options == ("MCM",) and slider.max < 2
    capsys.readouterr()
    method_w.value = "CLIP-OS"
    assert set(score_w.options) == {"MCM", "1-p(unknown)"} and slider.min > 3  # range of the new score
    assert slider.value == pytest.approx(viz.threshold_at_tpr(scores["CLIP-OS"]["MCM"]["ID"], 0.95))
    assert capsys.readouterr().out.count("Figure(") == 1  # one redraw per pick
    score_w.value = "1-p(unknown)"
    assert slider.max < 1.1


def test_results_explorer_static_and_interactive(tmp_path):
    pytest.importorskip("ipywidgets")
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    run = lambda names: {"id": {n: rng.normal(1, 0.2, 20) for n in names},
                         **{o: {n: rng.normal(0, 0.2, 15) for n in names} for o in ("near-ood", "textures")}}
    result = SimpleNamespace(scores={("MCM", 0, 0): run(["MCM"]), ("CLIP-OS", 1, 1): run(["MCM", "1-p(unknown)"]),
                                     ("CLIP-OS", 1, 2): run(["MCM", "1-p(unknown)"])},
                             summary=_summary_rows())
    fig = widgets.results_explorer(result, {"CLIP-OS": "1-p(unknown)"}, path=tmp_path / "h.png")
    assert isinstance(fig, Figure) and (tmp_path / "h.png").is_file()
    box = widgets.results_explorer(result, {"CLIP-OS": "1-p(unknown)"}, interactive=True)
    method_w, score_w, ood_w = box.children[0].children
    assert ood_w.options == ("Average", "near-ood", "textures")
    method_w.value = "CLIP-OS"
    assert score_w.value == "1-p(unknown)" and set(score_w.options) == {"MCM", "1-p(unknown)"}


def test_embedding_explorer_shows_a_plain_plotly_map_and_the_parents_of_any_outlier(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    import IPython.display
    import plotly.graph_objects as go

    from clipos_lab.clipos import synthesis

    ds, bank, _ = _fake_world()
    outliers = synthesis.synthesize(bank.global_, bank.labels, 3, alpha=2.0, seed=0)
    coords = {"ID: a": np.zeros((4, 2)), "outliers": np.ones((3, 2))}
    shown, drawn = [], []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.setattr(widgets.V, "image_grid", lambda images, titles, **kw: drawn.append(titles) or Figure())
    lookup = widgets.ImageLookup({"few-shot": (ds, bank)})
    box = widgets.embedding_explorer(coords, {"outliers": ["o0", "o1", "o2"]}, "map", outlier_group="outliers",
                                     outliers=outliers, source_image=lambda row: lookup("few-shot", row),
                                     source_ids=bank.ids, classnames=bank.classnames, interactive=True)
    # the map: one plain figure holding its points (no FigureWidget, whose first view could come up empty)
    maps = [o for o in shown if isinstance(o, go.Figure)]
    assert len(maps) == 1 and not isinstance(maps[0], go.FigureWidget)
    assert [len(t.x) for t in maps[0].data] == [4, 3] and list(maps[0].data[1].text) == ["o0", "o1", "o2"]
    assert isinstance(box, ipywidgets.VBox)
    slider = box.children[0]
    slider.value = 2
    p = outliers.provenance(2)
    assert len(drawn) == 2 and f"lam = {p['lam']:.2f}" in drawn[-1][0] and bank.ids[p["second"]] in drawn[-1][1]
    assert isinstance(widgets.embedding_explorer(coords, title="map"), Figure)  # static mode


def test_mode_auto_is_static_without_a_front_end(monkeypatch):
    monkeypatch.delenv("CLIPOS_INTERACTIVE", raising=False)
    assert notebook.resolve_mode("auto") is False  # pytest: no IPython kernel, hence no widgets
    assert notebook.resolve_mode(True) is True and notebook.resolve_mode("false") is False
    monkeypatch.setenv("CLIPOS_INTERACTIVE", "1")
    assert notebook.resolve_mode("auto") is True and notebook.resolve_mode(False) is False  # explicit value wins
    with pytest.raises(ValueError, match="INTERACTIVE"):
        notebook.resolve_mode("sometimes")
    assert list(notebook.progress_bar(range(3), enabled=False)) == [0, 1, 2]


def test_main_score_and_at_temperature():
    from clipos_lab.methods import build_method
    from clipos_lab.methods.base import main_score
    from clipos_lab.methods.cosine import at_temperature

    assert main_score("GL-MCM", ["MCM", "GL-MCM"]) == "GL-MCM"
    assert main_score("1-p(unknown)", ["MCM", "GL-MCM"]) == "MCM"
    assert main_score("x", ["GL-MCM"]) == "GL-MCM"
    ds, bank, text = _fake_world()
    mcm = build_method("MCM")
    mcm.classnames_, mcm.text_, mcm.scale_ = list(bank.classnames), torch.nn.functional.normalize(text, dim=-1), 1.0
    sharp = at_temperature(mcm, 0.01)
    assert mcm.scale_ == 1.0 and sharp.scale_ == pytest.approx(100.0)  # the original is untouched
    assert not np.allclose(sharp.score(bank)["MCM"], mcm.score(bank)["MCM"])
    assert (sharp.predict(bank) == mcm.predict(bank)).all()
    with pytest.raises(ValueError):
        at_temperature(mcm, 0)


def test_tables_are_dataframes_with_an_average():
    from clipos_lab.notebook import tables

    rng = np.random.default_rng(2)
    scores = {"MCM": {"MCM": {"ID": rng.normal(1, 1, 30), "a": rng.normal(0, 1, 20), "b": rng.normal(1, 1, 20)}}}
    frame = tables.ood_metrics_frame(scores, accuracy={"MCM": 0.5})
    assert list(frame.columns) == ["AUROC", "FPR95", "ID acc"]
    avg = tables.averages(frame)
    assert avg.loc[("MCM", "MCM"), "AUROC"] == pytest.approx(frame["AUROC"].drop("Average", level="ood").mean())
    assert tables.nested(frame)["MCM"]["MCM"]["a"]["AUROC"] == pytest.approx(frame.loc[("MCM", "MCM", "a"), "AUROC"])


def test_reference_numbers_are_labelled_and_only_for_paper_specs():
    assert reference.is_paper_spec("paper-imagenet") and not reference.is_paper_spec("world-default")
    assert reference.lookup("LoCoOp", "GL-MCM") == {"FPR95": 28.7, "AUROC": 93.5, "setting": "16-shot"}
    rows = [{"method": "LoCoOp", "score": "GL-MCM", "shots": 16, "ood": "Average", "metric": "AUROC", "mean": 0.9,
             "std": 0.01}]
    table = reference.beside_markdown(rows)
    assert "published" in table.lower() and "93.5" in table and "90.00 ± 1.00" in table


import json
import re

import pandas as pd
import pytest

from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec
from clipos_lab.evaluation.runner import run_benchmark
from clipos_lab.evaluation.suite import run_suite, suite_markdown, summarise_suite

SPEC = {
    "name": "tiny-world",
    "id": {"type": "world", "kind": "object", "shapes": ["circle", "square", "star"], "n_per_class": 6, "seed": 5},
    "ood": {
        "near-ood": {"type": "world", "kind": "object", "shapes": ["ring", "arrow"], "n_per_class": 6, "seed": 6},
        "textures": {"type": "world", "kind": "background", "n": 8, "seed": 7},
    },
}
METHODS = ["MCM", "GL-MCM", "CoOp", "LoCoOp", "CLIP-OS"]


def _squash(markdown: str) -> str:
    """A Markdown table with the padding of its cells removed."""
    return re.sub(r" *\| *", " | ", markdown)


def run(backbone, tmp_path, out):
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    return run_benchmark(spec, backbone, methods=METHODS, shots=(1, 2), seeds=(1, 2),
                         prompt=PromptConfig(epochs=3, progress=False), out_dir=out, cache=tmp_path / "cache",
                         progress=False)


def test_same_seeds_give_the_same_table(pocket_backbone, tmp_path):
    first = run(pocket_backbone, tmp_path, tmp_path / "a")
    second = run(pocket_backbone, tmp_path, tmp_path / "b")
    assert first.rows == second.rows
    methods = {r["method"] for r in first.rows}
    assert methods == set(METHODS)
    # zero-shot once (shots 0), few-shot per shots x seed; CLIP-OS also reports 1 - p(unknown)
    assert {r["shots"] for r in first.rows if r["method"] == "MCM"} == {0}
    assert {(r["shots"], r["seed"]) for r in first.rows if r["method"] == "CoOp"} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert "1-p(unknown)" in {r["score"] for r in first.rows if r["method"] == "CLIP-OS"}
    assert all(0.0 <= r["value"] <= 1.0 for r in first.rows)
    oods = {r["ood"] for r in first.rows}
    assert oods == {"near-ood", "textures", "Average", "ID"}


def test_outputs_are_written_and_consistent(pocket_backbone, tmp_path):
    result = run(pocket_backbone, tmp_path, tmp_path / "out")
    out = tmp_path / "out"
    for name in ("results.csv", "summary.csv", "summary.md", "metrics.json", "manifests/shots1-seed1.json",
                 "prompts/CLIP-OS-shots2-seed2.safetensors"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "pocket-vit" and metrics["summary"] == result.summary
    # the summary's Average row is the mean over seeds of the per-seed OOD averages
    per_seed = [r["value"] for r in result.rows if r["method"] == "CoOp" and r["shots"] == 1
                and r["ood"] == "Average" and r["metric"] == "AUROC" and r["score"] == "MCM"]
    summary = [s for s in result.summary if s["method"] == "CoOp" and s["shots"] == 1 and s["ood"] == "Average"
               and s["metric"] == "AUROC" and s["score"] == "MCM"][0]
    assert summary["mean"] == pytest.approx(sum(per_seed) / len(per_seed))
    assert "CLIP-OS" in (out / "summary.md").read_text()
    # which FPR95 rule and positive class, in metrics.json and the table; FPR95_OOD_POS is reported too
    assert metrics["fpr95_rule"] == "first" and metrics["positive_class"] == "ID"
    assert "rule 'first'" in (out / "summary.md").read_text()
    assert {"FPR95", "FPR95_OOD_POS"} <= {r["metric"] for r in result.rows}


def test_fpr95_rule_reaches_every_row(pocket_backbone, tmp_path):
    from clipos_lab.evaluation import metrics as M

    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    result = run_benchmark(spec, pocket_backbone, methods=["MCM"], out_dir=tmp_path / "out", cache=tmp_path / "c",
                           progress=False, fpr95_rule="closest", keep_fitted=True)
    scores = result.scores[("MCM", 0, 0)]
    expected = M.fpr95(scores["id"]["MCM"], scores["near-ood"]["MCM"], rule="closest")
    row = next(r for r in result.rows if r["ood"] == "near-ood" and r["metric"] == "FPR95" and r["score"] == "MCM")
    assert row["value"] == pytest.approx(expected)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["fpr95_rule"] == "closest"
    with pytest.raises(ValueError, match="unknown FPR95 rule"):
        run_benchmark(spec, pocket_backbone, methods=["MCM"], fpr95_rule="nearest")


def test_bad_arguments_fail_before_any_work(pocket_backbone, tmp_path):
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown methods"):
        run_benchmark(spec, pocket_backbone, methods=["MCM", "Nope"])
    with pytest.raises(ValueError, match="shots"):
        run_benchmark(spec, pocket_backbone, shots=(0,))


def _summary(values: dict[tuple, float]) -> list[dict]:
    """A runner summary holding only OOD-average AUROC rows: (method, score, shots) -> value."""
    return [{"method": m, "score": sc, "shots": sh, "ood": "Average", "metric": "AUROC", "mean": v, "std": 0.0}
            for (m, sc, sh), v in values.items()]


def test_suite_summary_averages_over_specs_and_counts_wins():
    specs = {
        "a": _summary({("MCM", "MCM", 0): 0.90, ("CoOp", "MCM", 1): 0.95, ("CLIP-OS", "MCM", 1): 0.93,
                       ("CLIP-OS", "1-p(unknown)", 1): 0.97}),
        "b": _summary({("MCM", "MCM", 0): 0.80, ("CoOp", "MCM", 1): 0.70, ("CLIP-OS", "MCM", 1): 0.85,
                       ("CLIP-OS", "1-p(unknown)", 1): 0.60}),
    }
    rows = {(r["method"], r["score"], r["shots"]): r for r in summarise_suite(specs)}
    clipos = rows[("CLIP-OS", "MCM", 1)]
    assert clipos["mean"] == pytest.approx(0.89) and clipos["std"] == pytest.approx(0.0565685, rel=1e-5)
    assert (clipos["wins_vs_MCM"], clipos["wins_vs_CoOp"], clipos["n_specs"]) == (2, 1, 2)
    assert "wins_vs_LoCoOp" not in clipos  # no LoCoOp in these specs
    unknown = rows[("CLIP-OS", "1-p(unknown)", 1)]  # rivals without the score are compared through their MCM
    assert (unknown["wins_vs_MCM"], unknown["wins_vs_CoOp"]) == (1, 1)
    assert "wins_vs_MCM" not in rows[("MCM", "MCM", 0)]
    table = suite_markdown(summarise_suite(specs), "MCM", 2)
    table = _squash(table)
    assert "| CLIP-OS | 1 | 89.00 ± 5.66 |" in table and "| 2/2 | 1/2 |" in table


def test_suite_runs_every_spec_and_writes_the_summary(pocket_backbone, tmp_path):
    specs = [BenchmarkSpec.from_dict({**SPEC, "name": f"tiny-{k}", "id": {**SPEC["id"], "seed": 50 + k}},
                                     base_dir=tmp_path) for k in range(2)]
    suite = run_suite(specs, pocket_backbone, out_dir=tmp_path / "suite", methods=["MCM", "CoOp"], shots=(1,),
                      seeds=(1,), prompt=PromptConfig(epochs=2, progress=False), cache=tmp_path / "cache",
                      progress=False)
    assert list(suite.per_spec) == ["tiny-0", "tiny-1"]
    for name in ("tiny-0/summary.md", "tiny-1/results.csv", "suite_summary.csv", "suite_summary.md",
                 "suite_ranking.csv", "suite_pairs.csv"):
        assert (tmp_path / "suite" / name).exists(), name
    pairs = pd.read_csv(tmp_path / "suite" / "suite_pairs.csv")
    coop_mcm = pairs[(pairs[["a_method", "b_method"]].apply(set, axis=1) == {"CoOp", "MCM"})
                     & (pairs["a_score"] == "MCM") & (pairs["b_score"] == "MCM")]
    assert len(coop_mcm) == 1 and coop_mcm[["wins", "losses", "ties"]].sum(axis=1).item() == 2
    assert "Ranking of every method and score" in (tmp_path / "suite" / "suite_summary.md").read_text()
    per_spec = [next(r["mean"] for r in result.summary if (r["method"], r["score"], r["ood"], r["metric"]) ==
                     ("CoOp", "MCM", "Average", "AUROC")) for result in suite.per_spec.values()]
    row = next(r for r in suite.summary if (r["method"], r["score"], r["metric"]) == ("CoOp", "MCM", "AUROC"))
    assert row["mean"] == pytest.approx(sum(per_spec) / 2) and row["n_specs"] == 2
    with pytest.raises(ValueError, match="distinct spec names"):
        run_suite([specs[0], specs[0]], pocket_backbone)


def test_unreadable_training_images_are_never_drawn_as_shots(pocket_backbone, tmp_path):
    from PIL import Image

    root = tmp_path / "train"
    for name, colour in (("circle", "red"), ("square", "blue")):
        (root / name).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (32, 32), colour).save(root / name / f"good{k}.png")
            (root / name / f"broken{k}.png").write_bytes(b"not an image")
    spec = BenchmarkSpec.from_dict({"name": "broken", "id": {"type": "folder", "root": str(root)},
                                    "id_train": {"type": "folder", "root": str(root)},
                                    "ood": {"textures": {"type": "world", "kind": "background", "n": 4, "seed": 7}}},
                                   base_dir=tmp_path)
    with pytest.warns(UserWarning, match="unreadable"):
        result = run_benchmark(spec, pocket_backbone, methods=["CoOp"], shots=(2,), seeds=(1, 2, 3),
                               prompt=PromptConfig(epochs=1, progress=False), out_dir=tmp_path / "out",
                               cache=False, progress=False)
    drawn = [m["id"] for seed in (1, 2, 3)
             for m in json.loads((tmp_path / "out" / "manifests" / f"shots2-seed{seed}.json").read_text())]
    assert len(drawn) == 12 and not [i for i in drawn if "broken" in i]
    assert {r["seed"] for r in result.rows} == {1, 2, 3}


def test_a_run_stopped_midway_resumes_without_recomputing_finished_cells(tiny_backbone, tmp_path, monkeypatch):
    from clipos_lab.evaluation import job

    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    grid = {"methods": ["MCM", "CoOp"], "shots": (1,), "seeds": (1, 2, 3), "progress": False,
            "prompt": PromptConfig(n_ctx=4, epochs=2, progress=False), "cache": tmp_path / "cache"}
    run_benchmark(spec, tiny_backbone, out_dir=tmp_path / "clean", **grid)
    assert not list((tmp_path / "cache" / "cells").glob("*/*.npz"))  # a finished run keeps no cells
    real, ran = job.run_cell, []

    def stop_at_third(context, method, shots, seed):
        if len(ran) == 3:
            raise KeyboardInterrupt  # the run is stopped during its fourth cell
        ran.append((method, shots, seed))
        return real(context, method, shots, seed)

    monkeypatch.setattr(job, "run_cell", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(spec, tiny_backbone, out_dir=tmp_path / "resumed", **grid)
    assert not (tmp_path / "resumed").exists()  # the run folder is written only when the run finishes
    first = list(ran)
    ran.clear()
    monkeypatch.setattr(job, "run_cell", lambda *a: ran.append(a[1:]) or real(*a))
    run_benchmark(spec, tiny_backbone, out_dir=tmp_path / "resumed", **grid)
    assert not set(first) & set(ran) and len(first) + len(ran) == 4  # MCM once + CoOp x 3 seeds, each run once
    assert (tmp_path / "resumed" / "results.csv").read_bytes() == (tmp_path / "clean" / "results.csv").read_bytes()

import json

import pytest

from clipos_lab.data import BenchmarkSpec
from clipos_lab.prompts import PromptConfig
from clipos_lab.runner import run_benchmark

SPEC = {
    "name": "tiny-world",
    "id": {"type": "world", "kind": "object", "shapes": ["circle", "square", "star"], "n_per_class": 6, "seed": 5},
    "ood": {
        "near-ood": {"type": "world", "kind": "object", "shapes": ["ring", "arrow"], "n_per_class": 6, "seed": 6},
        "textures": {"type": "world", "kind": "background", "n": 8, "seed": 7},
    },
}
METHODS = ["MCM", "GL-MCM", "CoOp", "LoCoOp", "CLIP-OS"]


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


def test_bad_arguments_fail_before_any_work(pocket_backbone, tmp_path):
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown methods"):
        run_benchmark(spec, pocket_backbone, methods=["MCM", "Nope"])
    with pytest.raises(ValueError, match="shots"):
        run_benchmark(spec, pocket_backbone, shots=(0,))

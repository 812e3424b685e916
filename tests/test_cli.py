import json
import re

import yaml

from clipos_lab.cli import main

SPEC = {
    "name": "cli-world",
    "id": {"type": "world", "kind": "object", "shapes": ["circle", "star"], "n_per_class": 4, "seed": 1},
    "ood": {"textures": {"type": "world", "kind": "background", "n": 4, "seed": 2}},
}


def _squash(markdown: str) -> str:
    """A Markdown table with the padding of its cells removed."""
    return re.sub(r" *\| *", " | ", markdown)


def test_evaluate_and_benchmark_write_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    assert main(["evaluate", str(spec), "--out", str(tmp_path / "zs"), "--no-progress"]) == 0
    assert "| MCM | MCM | 0 |" in _squash(capsys.readouterr().out)
    metrics = json.loads((tmp_path / "zs" / "metrics.json").read_text())
    assert {r["method"] for r in metrics["summary"]} == {"MCM", "GL-MCM"}
    assert main(["benchmark", str(spec), "--methods", "CoOp", "--shots", "1", "--seeds", "3", "--epochs", "2",
                 "--out", str(tmp_path / "fs"), "--no-progress"]) == 0
    assert (tmp_path / "fs" / "prompts" / "CoOp-shots1-seed3.safetensors").exists()


def test_encode_reports_banks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    assert main(["encode", str(spec), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "id: 8 images, 0 skipped" in out and "textures: 4 images" in out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["benchmark", str(tmp_path / "missing.yaml"), "--no-progress"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["evaluate", "default", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_folder_of_specs_runs_as_a_suite(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "suite"
    folder.mkdir()
    for k in (1, 2):
        (folder / f"s{k}.yaml").write_text(yaml.safe_dump({**SPEC, "name": f"s{k}",
                                                            "id": {**SPEC["id"], "seed": 10 + k}}))
    assert main(["evaluate", str(folder), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "Mean over 2 benchmarks" in capsys.readouterr().out
    assert (tmp_path / "out" / "s2" / "metrics.json").exists()
    assert "| MCM | 0 |" in _squash((tmp_path / "out" / "suite_summary.md").read_text())
    assert main(["evaluate", str(tmp_path / "out" / "s1"), "--no-progress"]) == 2  # a folder without specs
    assert "no *.yaml specs" in capsys.readouterr().err


def test_without_model_a_drawings_spec_loads_pocket2_and_others_pocket(tmp_path, monkeypatch):
    from clipos_lab import cli_args
    from clipos_lab.backbone import Backbone
    from clipos_lab.resources import ASSETS

    asked = []
    monkeypatch.setattr(Backbone, "load", classmethod(lambda cls, model, **kw: asked.append(model)))
    args = cli_args.argparse.Namespace(model=None, pretrained=None, checkpoint=None, config=None,
                                       random_weights=False, surgery_blocks=None, device="cpu", precision="fp32")
    for spec in ("drawings", "splits", "default"):
        cli_args.backbone_from(args, cli_args.spec_path(spec))
    cli_args.backbone_from(args, ASSETS / "benchmarks" / "drawings-anomaly.yaml")
    cli_args.backbone_from(args, ASSETS / "benchmarks" / "world-anomaly.yaml")
    cli_args.backbone_from(args)  # commands without a spec
    assert asked == ["pocket2", "pocket", "pocket", "pocket2", "pocket", "pocket"]
    args.model = "ViT-B-16"  # an explicit choice always wins
    cli_args.backbone_from(args, cli_args.spec_path("drawings"))
    assert asked[-1] == "ViT-B-16"
    (tmp_path / "broken.yaml").write_text("id: [unclosed")
    assert cli_args.pocket_model_for(tmp_path / "broken.yaml") == "pocket"  # the spec loader reports the error

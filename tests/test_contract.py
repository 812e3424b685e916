"""The method contract (docs/contract.md): every registered method keeps it, and a new method is one module plus
one registration line, which the runner, the CLI, the run record and the tables then pick up by themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clipos_lab import cli
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec
from clipos_lab.evaluation.runner import check_run_arguments, rerun, run_benchmark
from clipos_lab.features import FeatureBank
from clipos_lab.methods import KINDS, REGISTRY, Method, NotFittedError, build_method, register, unregister
from clipos_lab.methods.text import class_embeddings

CLASSES = ["circle", "square", "star"]
FAST = PromptConfig(n_ctx=4, epochs=2, progress=False)
SPEC = {
    "name": "contract-world",
    "id": {"type": "world", "kind": "object", "shapes": CLASSES, "n_per_class": 4, "seed": 5},
    "id_train": {"type": "world", "kind": "object", "shapes": CLASSES, "n_per_class": 4, "seed": 9},
    "ood": {"near-ood": {"type": "world", "kind": "object", "shapes": ["ring", "arrow"], "n_per_class": 4,
                         "seed": 6}},
}


def random_bank(dim: int, n: int = 6, grid=(4, 4)) -> FeatureBank:
    g = torch.Generator().manual_seed(5)
    p = grid[0] * grid[1]
    return FeatureBank(torch.randn(n, dim, generator=g), torch.randn(n, p, dim, generator=g).half(),
                       torch.randn(n, p, dim, generator=g).half(), torch.arange(n) % len(CLASSES),
                       [f"img{i}" for i in range(n)], CLASSES, grid,
                       extra={"local": torch.randn(n, p, dim, generator=g).half()})


def small_vocabulary(cls, folder) -> dict:
    """Negative-label methods mine ~10^4 words by default; here a 40-word list and 2 groups keep the test fast."""
    if "vocabulary" not in cls.option_names():
        return {}
    path = folder / "words.tsv"
    path.write_text("".join(f"noun.test\tthing{i}\n" for i in range(30)) + "".join(
        f"adj.test\tkind{i}\n" for i in range(10)))
    return {"vocabulary": str(path), "n_groups": 2, "exclude_files": []}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_method_keeps_the_contract(name, pocket_backbone, tmp_path):
    cls = REGISTRY[name].cls
    assert cls.kind in KINDS and cls.name and cls.default_score
    method = build_method(name, seed=1, prompt=FAST, **small_vocabulary(cls, tmp_path))
    assert method.default_score in method.score_names
    # options: get_params names every __init__ option and builds the same method back
    params = method.get_params()
    assert set(params) == set(cls.option_names())
    again = build_method(name, **{k: v for k, v in params.items() if k != "seed"}, seed=1)
    assert again.get_params() == params
    bank = random_bank(pocket_backbone.embed_dim)
    with pytest.raises(NotFittedError):
        method.score(bank)
    method.fit(pocket_backbone, bank)
    scores = method.score(bank)
    assert list(scores) and set(scores) <= set(method.score_names)
    assert all(v.shape == (len(bank),) and np.isfinite(v).all() for v in scores.values())
    assert method.predict(bank).shape == (len(bank),)
    with pytest.raises(ValueError, match="cannot give"):
        method.score(bank, scores=["no-such-score"])
    if cls.kind == "few-shot":  # learned: save / load rebuilds a method giving the same scores
        method.save(tmp_path / "m.safetensors")
        loaded = type(method).load(tmp_path / "m.safetensors", pocket_backbone)
        assert loaded.get_params() == {**params, "prompt": None}  # the training config is not needed to score
        for s, v in loaded.score(bank).items():
            np.testing.assert_array_equal(v, scores[s])


class CentroidGap(Method):
    """A method written in a test file: zero-shot, one score (cosine to the nearest class prompt)."""

    name = "centroid-gap"
    kind = "zero-shot"
    score_names = ("gap",)
    default_score = "gap"

    def __init__(self, template: str = "a photo of a {}."):
        self.template = template

    def fit(self, backbone, train=None, classnames=None):
        self.classnames_ = list(classnames or train.classnames)
        self.text_ = class_embeddings(backbone, self.classnames_, [self.template])
        return self

    def score(self, bank, scores=None):
        self.check_scores(scores)
        self._check_fitted()
        cos = torch.nn.functional.normalize(bank.global_.float(), dim=-1) @ self.text_.T
        return {"gap": cos.max(-1).values.numpy()}

    def predict(self, bank):
        return (bank.global_.float() @ self.text_.T).argmax(-1).numpy()


@pytest.fixture
def registered_gap():
    register("CentroidGap", CentroidGap)  # the one line a new method needs
    yield "CentroidGap"
    unregister("CentroidGap")


def test_a_method_from_one_module_and_one_line_runs_through_the_runner_and_the_cli(
        registered_gap, tiny_backbone, tmp_path, capsys):
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    result = run_benchmark(spec, tiny_backbone, methods=["MCM", registered_gap], shots=(1,), seeds=(1,),
                           progress=False, cache=tmp_path / "cache", out_dir=tmp_path / "run")
    rows = [r for r in result.rows if r["method"] == registered_gap]
    assert {r["score"] for r in rows} == {"gap"} and {r["shots"] for r in rows} == {0}
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {"name": registered_gap, "options": {"template": "a photo of a {}."}} in record["config"]["methods"]
    # the command line: its help lists the method and its score; --methods runs it
    help_text = cli.build_parser().format_help() + cli.build_parser()._subparsers._group_actions[0].choices[
        "benchmark"].format_help()
    assert registered_gap in help_text and "gap" in help_text
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(json.dumps(SPEC))
    code = cli.main(["benchmark", str(spec_file), "--methods", f"MCM,{registered_gap}", "--scores", "MCM,gap",
                     "--shots", "1", "--seeds", "1", "--no-progress", "--out", str(tmp_path / "cli"),
                     "--cache-dir", str(tmp_path / "cache"), "--config", str(tiny_backbone.load_args["config"]),
                     "--checkpoint", str(tiny_backbone.load_args["checkpoint"]), "--surgery-blocks", "1"])
    assert code == 0, capsys.readouterr().err
    assert registered_gap in (tmp_path / "cli" / "summary.md").read_text()


def test_scores_no_method_gives_or_that_leave_a_method_out_are_errors():
    with pytest.raises(ValueError, match=r"CLIPN \(gives.*give none of the scores"):
        check_run_arguments(["MCM", "CLIPN"], (1,), (1,), scores=["GL-MCM"])  # CLIPN gives no GL-MCM
    with pytest.raises(ValueError, match=r"MCM \(gives"):
        check_run_arguments(["MCM", "CLIPN"], (1,), (1,), scores=["ATD"])  # MCM gives no ATD
    with pytest.raises(ValueError, match=r"given by none of the methods"):
        check_run_arguments(["MCM"], (1,), (1,), scores=["MCM", "typo"])
    with pytest.raises(ValueError, match=r"1-p\(unknown\)"):  # an ablation without the unknown class
        check_run_arguments(["CLIP-OS w/o unknown"], (1,), (1,), scores=["1-p(unknown)"])
    check_run_arguments(["MCM", "CLIPN"], (1,), (1,), scores=["MCM"])  # both give MCM


def test_cli_scores_error_is_one_line(capsys):
    assert cli.main(["benchmark", "default", "--methods", "MCM,CLIPN", "--scores", "GL-MCM"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "CLIPN" in err and "Traceback" not in err


def test_run_json_holds_every_option_and_rerun_gives_the_same_results(tiny_backbone, tmp_path):
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    options = {"CLIP-OS": {"beta": 0.2}}
    run_benchmark(spec, tiny_backbone, methods=["MCM", "LoCoOp", "CLIP-OS"], shots=(1,), seeds=(1, 2),
                  prompt=FAST, method_options=options, progress=False, cache=tmp_path / "cache",
                  out_dir=tmp_path / "first")
    config = json.loads((tmp_path / "first" / "run.json").read_text())["config"]
    by_name = {m["name"]: m["options"] for m in config["methods"]}
    assert by_name["CLIP-OS"]["beta"] == 0.2 and by_name["CLIP-OS"]["puc_k"] == 3
    assert by_name["LoCoOp"]["schedule"] == "dassl" and by_name["LoCoOp"]["warmup_epochs"] == 1
    assert config["prompt"]["epochs"] == 2 and config["shots"] == [1] and config["seeds"] == [1, 2]
    assert config["backbone"]["checkpoint_sha256"] and config["package_version"]
    rerun(tmp_path / "first" / "run.json", out_dir=tmp_path / "again", device="cpu", progress=False,
          cache=tmp_path / "cache")
    assert (tmp_path / "again" / "results.csv").read_bytes() == (tmp_path / "first" / "results.csv").read_bytes()


def test_rerun_of_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run record"):
        rerun(tmp_path / "nope.json")
    (tmp_path / "run.json").write_text(json.dumps({"files": []}))
    with pytest.raises(ValueError, match="no run config"):
        rerun(tmp_path)


@pytest.mark.parametrize("name", list(__import__("clipos_lab.anomaly.registry", fromlist=["x"]).REGISTRY))
def test_every_anomaly_method_keeps_the_same_contract(name):
    from clipos_lab.anomaly.registry import REGISTRY, build_anomaly_method, option_names

    method = build_anomaly_method(name)
    assert method.kind in ("zero-shot", "few-shot") and method.zero_shot == (method.kind == "zero-shot")
    assert set(method.get_params()) <= set(option_names(REGISTRY[name].cls))
    with pytest.raises(ValueError, match="no options"):
        build_anomaly_method(name, no_such_option=1)
    if name in ("patch-memory", "state-prompts"):  # fitted state needed before scoring: the one error

        class Tokens:  # a test set of 2 images, 4 patches, 8 dims, whatever layer is asked for
            grid, image_size = (2, 2), 32

            def tokens(self, layer):
                return torch.randn(2, 4, 8)

        with pytest.raises(NotFittedError):
            method.score(Tokens())

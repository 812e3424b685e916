"""NegLabel, CSP, AdaNeg, FA and GalLoP through the method contract, the runner and the command line (pocket
model, a small word list: no quality is claimed, its text tower knows ~30 words)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_runner import SPEC  # tests/ is on sys.path under pytest

from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec
from clipos_lab.evaluation.runner import run_benchmark
from clipos_lab.methods import build_method, kind_of
from clipos_lab.negatives.vocab import Vocabulary

NEW = ["NegLabel", "CSP", "AdaNeg", "FA", "GalLoP"]
WORDS = ["red", "blue", "green", "round", "striped", "dotted", "bright", "dark", "large", "small", "wooden", "soft"]
NOUNS = ["car", "tree", "house", "river", "cloud", "book", "chair", "road", "stone", "field", "lamp", "bottle",
         "ring", "arrow", "circle", "square"]


@pytest.fixture()
def word_list(tmp_path):
    path = tmp_path / "words.tsv"
    path.write_text("".join(f"noun.user\t{w}\n" for w in NOUNS) + "".join(f"adj.user\t{w}\n" for w in WORDS))
    return path


def options(word_list):
    small = {"vocabulary": str(word_list), "n_groups": 2, "exclude_files": []}
    return {"NegLabel": small, "CSP": small, "AdaNeg": {**small, "n_negatives": 12, "batch_size": 7},
            "FA": {"batch_size": 4}, "GalLoP": {"batch_size": 4, "topk": [2]}}


def test_kinds_and_declared_scores():
    assert [kind_of(m) for m in NEW] == ["zero-shot", "zero-shot", "test-time", "few-shot", "few-shot"]
    assert build_method("NegLabel").score_names == ("NegLabel",)
    assert build_method("GalLoP").default_score == "GL-MCM"


def test_runner_runs_every_new_method(pocket_backbone, tmp_path, word_list):
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    result = run_benchmark(spec, pocket_backbone, methods=NEW, shots=(1,), seeds=(1, 2),
                           prompt=PromptConfig(epochs=2, progress=False), out_dir=tmp_path / "out",
                           cache=tmp_path / "cache", progress=False, method_options=options(word_list))
    rows = result.rows
    assert {r["method"] for r in rows} == set(NEW)
    assert {r["score"] for r in rows if r["method"] == "NegLabel"} == {"NegLabel"}
    assert {r["score"] for r in rows if r["method"] == "GalLoP"} == {"MCM", "GL-MCM"}
    # a test-time method is fitted once and scored once per seed (the seed orders the stream)
    assert {(r["shots"], r["seed"]) for r in rows if r["method"] == "AdaNeg"} == {(0, 1), (0, 2)}
    one, two = result.scores[("AdaNeg", 0, 1)], result.scores[("AdaNeg", 0, 2)]
    assert not np.array_equal(one["textures"]["AdaNeg"], two["textures"]["AdaNeg"])  # each seed its own stream
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
    assert (tmp_path / "out" / "prompts" / "GalLoP-shots1-seed1.safetensors").exists()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["methods"]["AdaNeg"]["kind"] == "test-time"
    assert "Transductive" in result.summary_markdown()


def test_negative_label_methods_mine_and_show_words(pocket_backbone, word_list):
    classnames = ["circle", "square", "star"]
    neg = build_method("NegLabel", vocabulary=str(word_list), n_groups=2, exclude_files=[])
    neg.fit(pocket_backbone, classnames=classnames)
    assert len(neg.negative_words_) == int(len(NOUNS) * 0.15) + int(len(WORDS) * 0.15)  # 2 + 1
    table = neg.negatives_table(2)
    assert list(table["end"]) == ["nearest to ID"] * 2 + ["farthest from ID"] * 2
    assert table["distance (percentile cos)"].iloc[0] >= table["distance (percentile cos)"].iloc[-1]
    csp = build_method("CSP", vocabulary=str(word_list), n_groups=1, exclude_files=[], ratio=0.5)
    csp.fit(pocket_backbone, classnames=classnames)
    adjs = [w for w, p in zip(csp.negative_words_, csp.negative_pos_) if p == "adj"]
    assert adjs and all(" " in w for w in adjs)  # shown as the conjugated phrase "<adj> <superclass word>"
    # AdaNeg removes the ID class names from the candidates
    ada = build_method("AdaNeg", vocabulary=str(word_list), n_groups=2, exclude_files=[], n_negatives=20)
    ada.fit(pocket_backbone, classnames=classnames)
    assert not set(ada.negative_words_) & set(classnames) and len(ada.negative_words_) == 20


def test_adaneg_scores_each_ood_set_with_its_own_stream(pocket_backbone):
    torch.manual_seed(0)
    vocab = Vocabulary.from_words(NOUNS, WORDS)
    ada = build_method("AdaNeg", vocabulary=vocab, n_groups=2, exclude_files=[], n_negatives=10, batch_size=3)
    ada.fit(pocket_backbone, classnames=["circle", "square"])

    class Bank:
        def __init__(self, n):
            self.global_ = torch.randn(n, pocket_backbone.embed_dim)

        def __len__(self):
            return len(self.global_)

    sets = {"id": Bank(5), "a": Bank(4), "b": Bank(6)}
    out = ada.score_sets(sets, seed=3)
    assert set(out) == {"id", "a", "b", "id@a", "id@b"}
    # pair (id, a) is the stream of [a, id] in a seed-3 order with a fresh memory
    direct = ada.stream(torch.cat([sets["a"].global_, sets["id"].global_]), 3)["score"]
    np.testing.assert_allclose(out["a"]["AdaNeg"], direct[:4])
    np.testing.assert_allclose(out["id@a"]["AdaNeg"], direct[4:])
    assert not np.allclose(out["id@a"]["AdaNeg"], out["id@b"]["AdaNeg"])  # the memory differs per stream
    again = ada.score_sets(sets, seed=3)
    np.testing.assert_array_equal(again["b"]["AdaNeg"], out["b"]["AdaNeg"])  # seeded: repeatable


def test_adaneg_unshuffled_stream_is_the_step_function_in_the_given_order(pocket_backbone):
    from clipos_lab.negatives import adaneg as A

    vocab = Vocabulary.from_words(NOUNS, WORDS)
    ada = build_method("AdaNeg", vocabulary=vocab, n_groups=2, exclude_files=[], n_negatives=10, batch_size=4,
                       shuffle=False).fit(pocket_backbone, classnames=["circle", "square"])
    feats = torch.nn.functional.normalize(torch.randn(10, pocket_backbone.embed_dim,
                                                      generator=torch.Generator().manual_seed(2)), dim=-1)
    text = torch.cat([ada.text_, ada.negatives_])
    memory = A.ProxyMemory.new(text, 10)
    expect = torch.cat([A.adaneg_step(memory, feats[s: s + 4], text, 2, ada.scale_, ada.permutation_, 2)["score"]
                        for s in range(0, 10, 4)])
    np.testing.assert_allclose(ada.stream(feats, seed=123)["score"], expect.numpy(), rtol=1e-6)

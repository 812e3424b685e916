"""Chunked relevance and scoring give the unchunked numbers; each zero-shot score is computed once per bank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipos_lab.clipos import relevance as R
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec
from clipos_lab.evaluation.runner import run_benchmark
from clipos_lab.features import FeatureBank
from clipos_lab.methods import build_method
from clipos_lab.methods.cosine import CosineMethod


def random_bank(n=23, p=16, d=16, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return FeatureBank(torch.randn(n, d, generator=g), torch.randn(n, p, d, generator=g).half(),
                       torch.randn(n, p, d, generator=g).half(), torch.arange(n) % k, [str(i) for i in range(n)],
                       [f"c{i}" for i in range(k)], (4, 4))


def test_chunked_scoring_equals_unchunked(tiny_backbone):
    bank = random_bank()
    method = build_method("GL-MCM", local_tokens="patches").fit(tiny_backbone, bank)  # the bank has no local kind
    whole = method.score(bank, chunk=10_000)
    for chunk in (1, 5, 7):
        parts = method.score(bank, chunk=chunk)
        assert list(parts) == list(whole) == ["MCM", "GL-MCM"]
        for name in whole:
            np.testing.assert_allclose(parts[name], whole[name], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(method.predict(bank, chunk=chunk), method.predict(bank))


@pytest.mark.parametrize("rule", ["discrepancy", "topk"])
def test_chunked_relevance_equals_unchunked(rule, monkeypatch):
    bank = random_bank(n=11)
    text = torch.nn.functional.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    monkeypatch.setattr(R, "_CHUNK", 10_000)
    whole = R.relevance(bank, text, rule=rule, k=3)
    monkeypatch.setattr(R, "_CHUNK", 4)
    parts = R.relevance(bank, text, rule=rule, k=3)
    assert torch.equal(parts.mask, whole.mask)
    for name in ("raw", "rho", "relevant_features", "puc_patches", "surgery", "discrepancy"):
        a, b = getattr(parts, name), getattr(whole, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


class NoPatches:
    """Patch tokens that fail when read: scoring MCM alone must never touch them."""

    shape = (23, 16, 16)

    def __getitem__(self, item):
        raise AssertionError("patch tokens were read")


def test_patch_scores_only_when_asked(tiny_backbone):
    bank = random_bank()
    method = build_method("MCM").fit(tiny_backbone, bank)
    method.local_tokens = "patches"  # GL-MCM would read the final-layer patch tokens (the bank has no local kind)
    bank.patches = NoPatches()
    assert list(method.score(bank, scores=["MCM"])) == ["MCM"]
    with pytest.raises(AssertionError, match="read"):
        method.score(bank)
    with pytest.raises(ValueError, match="cannot give the scores"):
        method.score(bank, scores=["MSP"])


def test_zero_shot_methods_are_scored_once_per_bank(tiny_backbone, tmp_path, monkeypatch):
    calls = []
    original = CosineMethod.score

    def counting(self, bank, *args, **kwargs):
        calls.append((self.name, len(bank)))
        return original(self, bank, *args, **kwargs)

    monkeypatch.setattr(CosineMethod, "score", counting)
    spec = BenchmarkSpec.from_dict({
        "name": "once", "id": {"type": "world", "shapes": ["circle", "star"], "n_per_class": 3, "image_size": 32},
        "ood": {"a": {"type": "world", "kind": "background", "n": 3, "image_size": 32},
                "b": {"type": "world", "kind": "clutter", "n": 3, "image_size": 32}}}, base_dir=tmp_path)
    result = run_benchmark(spec, tiny_backbone, methods=["MCM", "GL-MCM"], shots=(1,), seeds=(1,),
                           prompt=PromptConfig(epochs=1, progress=False), cache=tmp_path / "c", progress=False)
    assert len(calls) == 3  # ID test + 2 OOD sets, once for both methods
    by = lambda m: [(r["score"], r["ood"], r["metric"], r["value"]) for r in result.rows if r["method"] == m]  # noqa
    assert by("MCM") == by("GL-MCM")

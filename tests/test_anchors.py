"""The anchor term of CLIP-OS (docs/robustness.md): the shots' ID-relevant features must not be *unknown*."""

import math

import pytest
import torch
import torch.nn.functional as F

from clipos_lab.clipos.prompts import PromptConfig, PromptLearner, TrainingData, not_unknown_loss, train_prompts
from clipos_lab.features import FeatureBank
from clipos_lab.methods import build_method

CLASSES = ["circle", "star", "heart"]


def test_not_unknown_loss_is_minus_log_one_minus_p_unknown():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    p_unknown = logits.softmax(-1)[:, -1]
    expected = float((-torch.log(1 - p_unknown)).mean())
    assert float(not_unknown_loss(logits)) == pytest.approx(expected, rel=1e-6)
    assert float(not_unknown_loss(torch.tensor([[0.0, 0.0, -1e4]]))) == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(float(not_unknown_loss(torch.tensor([[-1e4, -1e4, 1e4]]))))  # no log(0)


def _p_unknown(learner, x):
    with torch.no_grad():
        return (learner.backbone.logit_scale * F.normalize(x, dim=-1) @ learner().T).softmax(-1)[:, -1]


def test_anchor_term_keeps_anchors_out_of_unknown(tiny_backbone):
    # outliers sit right next to the anchors: without the term, training pulls the anchors into unknown too
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(6, 16, generator=g), dim=-1)
    labels = torch.arange(6) % 3
    anchors = F.normalize(torch.randn(6, 16, generator=g), dim=-1)
    outliers = F.normalize(anchors + 0.3 * torch.randn(6, 16, generator=g), dim=-1)
    cfg = PromptConfig(n_ctx=4, epochs=40, lr=0.5, progress=False)
    p = {}
    for weight in (0.0, 1.0):
        learner = PromptLearner(tiny_backbone, CLASSES, n_ctx=4, unknown=True, seed=0)
        history = train_prompts(learner, TrainingData(feats, labels, outliers=lambda e: outliers, anchors=anchors),
                                cfg, beta=1.0, anchor_weight=weight)
        assert ("loss_anchor" in history[0]) == (weight > 0)
        p[weight] = float(_p_unknown(learner, anchors).mean())
    assert p[1.0] < p[0.0] - 0.05


def _bank(n=6):
    g = torch.Generator().manual_seed(5)
    return FeatureBank(torch.randn(n, 16, generator=g), torch.randn(n, 16, 16, generator=g).half(),
                       torch.randn(n, 16, 16, generator=g).half(), torch.arange(n) % 3,
                       [f"img{i}" for i in range(n)], CLASSES, (4, 4),
                       extra={"local": torch.randn(n, 16, 16, generator=g).half()})


def test_clipos_anchor_term_is_an_option_and_off_keeps_the_old_loss(tiny_backbone):
    prompt = PromptConfig(n_ctx=4, epochs=2, progress=False)
    new = build_method("CLIP-OS", seed=1, prompt=prompt, anchor_weight=0.1).fit(tiny_backbone, _bank())
    old = build_method("CLIP-OS", seed=1, prompt=prompt).fit(tiny_backbone, _bank())
    assert old.anchor_weight == 0.0  # the default, chosen on validation draws (docs/robustness.md)
    assert all("loss_anchor" in row for row in new.history_)
    assert all("loss_anchor" not in row for row in old.history_)
    # the outliers and the ID term are the same draws either way: only the anchor term differs
    assert new.history_[0]["loss_id"] == pytest.approx(old.history_[0]["loss_id"])
    assert new.history_[0]["loss"] == pytest.approx(old.history_[0]["loss"]
                                                    + new.anchor_weight * new.history_[0]["loss_anchor"], rel=1e-5)


def test_bad_anchor_weight_is_refused_at_fit(tiny_backbone):
    with pytest.raises(ValueError, match="anchor_weight"):
        build_method("CLIP-OS", anchor_weight=-0.1, prompt=PromptConfig(n_ctx=4, epochs=1, progress=False)).fit(
            tiny_backbone, _bank())

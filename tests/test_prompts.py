import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipos_lab.clipos.prompts import (
    PromptConfig,
    PromptLearner,
    TrainingData,
    locoop_entropy,
    train_prompts,
)
from clipos_lab.features import FeatureBank
from clipos_lab.methods import build_method

CLASSES = ["circle", "star", "heart"]


def test_logits_have_an_unknown_column(tiny_backbone):
    plain = PromptLearner(tiny_backbone, CLASSES, n_ctx=4)
    with_unknown = PromptLearner(tiny_backbone, CLASSES, n_ctx=4, unknown=True)
    assert plain().shape == (3, 16) and with_unknown().shape == (4, 16)
    torch.testing.assert_close(plain(), with_unknown()[:3])  # same context -> same ID class embeddings


def test_context_initialised_from_phrase_reproduces_the_plain_prompt(tiny_backbone):
    learner = PromptLearner(tiny_backbone, CLASSES, n_ctx=4, ctx_init="a photo of a")
    expected = tiny_backbone.encode_text([f"a photo of a {c}." for c in CLASSES])
    torch.testing.assert_close(learner(), expected, atol=1e-5, rtol=1e-5)


def test_prompt_too_long_for_context_is_a_clear_error(tiny_backbone):
    with pytest.raises(ValueError, match="do not fit the text context"):
        PromptLearner(tiny_backbone, CLASSES, n_ctx=40)


def planted(tiny_backbone, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, 16, generator=g), dim=-1)
    labels = torch.arange(n) % 3
    return feats, labels


def test_training_lowers_the_loss_and_touches_only_prompt_parameters(pocket_backbone):
    # planted problem on a trained text tower: each class's images look like the *next* class's prompt, and the
    # outliers look like a fourth shape; the context and unknown token must move to fit both
    text = pocket_backbone.encode_text([f"a photo of a {c}." for c in CLASSES + ["ring"]])
    labels = torch.arange(12) % 3
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(text[(labels + 1) % 3] + 0.05 * torch.randn(12, text.shape[1], generator=g), dim=-1)
    outliers = F.normalize(text[3:4] + 0.05 * torch.randn(8, text.shape[1], generator=g), dim=-1)
    learner = PromptLearner(pocket_backbone, CLASSES, n_ctx=4, unknown=True)
    frozen = {k: v.clone() for k, v in pocket_backbone.model.state_dict().items()}
    cfg = PromptConfig(n_ctx=4, epochs=40, lr=0.01, progress=False)
    history = train_prompts(learner, TrainingData(feats, labels, outliers=lambda epoch: outliers), cfg, beta=1.0)
    assert np.mean([h["loss"] for h in history[-5:]]) < 0.7 * np.mean([h["loss"] for h in history[:5]])
    assert {n for n, p in learner.named_parameters() if p.requires_grad} == {"ctx", "unknown_token"}
    for k, v in pocket_backbone.model.state_dict().items():
        assert torch.equal(v, frozen[k]), f"backbone weight {k} changed"
    assert all(p.grad is None for p in pocket_backbone.model.parameters())


def test_training_is_deterministic_per_seed(tiny_backbone):
    feats, labels = planted(tiny_backbone)
    runs = []
    for _ in range(2):
        learner = PromptLearner(tiny_backbone, CLASSES, n_ctx=4, seed=3)
        cfg = PromptConfig(n_ctx=4, epochs=5, batch_size=4, seed=3, progress=False)
        train_prompts(learner, TrainingData(feats, labels), cfg)
        runs.append(learner.ctx.detach().clone())
    torch.testing.assert_close(runs[0], runs[1])


def few_shot_bank(tiny_backbone, n=6):
    g = torch.Generator().manual_seed(5)
    return FeatureBank(torch.randn(n, 16, generator=g), torch.randn(n, 16, 16, generator=g).half(),
                       torch.randn(n, 16, 16, generator=g).half(), torch.arange(n) % 3,
                       [f"img{i}" for i in range(n)], CLASSES, (4, 4),
                       extra={"local": torch.randn(n, 16, 16, generator=g).half()})


@pytest.mark.parametrize("name", ["CoOp", "LoCoOp", "CLIP-OS", "CLIP-OS w/o unknown"])
def test_methods_fit_score_and_round_trip(tiny_backbone, tmp_path, name):
    bank = few_shot_bank(tiny_backbone)
    method = build_method(name, seed=1, prompt=PromptConfig(n_ctx=4, epochs=2, progress=False)).fit(tiny_backbone,
                                                                                                   bank)
    scores = method.score(bank)
    assert set(scores) >= {"MCM", "GL-MCM"}
    assert ("1-p(unknown)" in scores) == (name == "CLIP-OS")
    assert all(len(v) == len(bank) and np.isfinite(v).all() for v in scores.values())
    method.save(tmp_path / "prompts.safetensors")
    reloaded = type(method).load(tmp_path / "prompts.safetensors", tiny_backbone)
    for key, values in reloaded.score(bank).items():
        np.testing.assert_allclose(values, scores[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.5, None])
def test_scores_use_the_score_temperature_and_unknown_keeps_the_logit_scale(tiny_backbone, tmp_path, temperature):
    bank = few_shot_bank(tiny_backbone)
    method = build_method("CLIP-OS", seed=1, prompt=PromptConfig(n_ctx=4, epochs=2, progress=False),
                          score_temperature=temperature).fit(tiny_backbone, bank)
    cos = F.normalize(bank.global_, dim=-1) @ method.text_.T
    scale = tiny_backbone.logit_scale if temperature is None else 1.0 / temperature
    k = len(CLASSES)
    expected_mcm = (scale * cos).softmax(-1)[:, :k].amax(-1)  # over K + 1 columns, max over the K ID ones
    expected_unknown = 1 - (tiny_backbone.logit_scale * cos).softmax(-1)[:, -1]
    scores = method.score(bank)
    np.testing.assert_allclose(scores["MCM"], expected_mcm.numpy(), rtol=1e-5)
    np.testing.assert_allclose(scores["1-p(unknown)"], expected_unknown.numpy(), rtol=1e-5)
    method.save(tmp_path / "p.safetensors")
    assert type(method).load(tmp_path / "p.safetensors", tiny_backbone).score_temperature == temperature


def test_bad_options_are_refused_at_fit_and_unknown_ones_at_build(tiny_backbone):
    method = build_method("CoOp", score_temperature=0.0)  # scikit-learn style: __init__ only stores
    assert method.score_temperature == 0.0
    with pytest.raises(ValueError, match="score_temperature"):
        method.fit(tiny_backbone, None)
    with pytest.raises(ValueError, match="puc_k"):
        build_method("CLIP-OS", puc_k=0).fit(tiny_backbone, None)
    with pytest.raises(ValueError, match="does not take the options.*synthesis"):
        build_method("CoOp", synthesis=True)  # CoOp's signature has no synthesis switch


# ------------------------------------------------------------------------------- LoCoOp as its reference trains
def test_locoop_entropy_selects_outside_top_k_and_uses_log_p_plus_eps():
    # classes e0, e1, e2 at scale 1; one image of class 0 with local features e0 (class 0 first: kept out) and
    # e1 (class 0 shares 2nd place with class 2)
    text = torch.eye(3)
    local = torch.stack([text[0], text[1]])[None]
    hook = locoop_entropy(local, torch.tensor([0]), top_k=1)
    entropy, n = hook(torch.tensor([0]), text, 1.0)
    p = torch.tensor([1.0, math.e, 1.0]) / (math.e + 2)  # softmax of (0, 1, 0)
    assert n == 1
    assert entropy.item() == pytest.approx(float(-(p * (p + 1e-5).log()).sum()), rel=1e-6)
    # top-2 keeps exactly two classes: class 0 ties with class 2 for 2nd place and (lower index) is inside
    entropy, n = locoop_entropy(local, torch.tensor([0]), top_k=2)(torch.tensor([0]), text, 1.0)
    assert n == 0 and entropy.item() == 0.0


def test_locoop_entropy_keeps_no_feature_back_when_all_are_irrelevant():
    text = torch.eye(3)
    local = torch.stack([text[1], text[2], text[1] + text[2]])[None]  # class 0 is last everywhere
    _, n = locoop_entropy(local, torch.tensor([0]), top_k=1)(torch.tensor([0]), text, 100.0)
    assert n == 3


def test_per_step_hook_sees_the_current_prompts_every_step(tiny_backbone):
    feats, labels = planted(tiny_backbone, n=6)
    learner = PromptLearner(tiny_backbone, CLASSES, n_ctx=4, seed=0)
    local = torch.randn(6, 4, 16, generator=torch.Generator().manual_seed(1))
    inner = locoop_entropy(local, labels, top_k=1)
    seen = []

    def hook(idx, text, scale):
        torch.testing.assert_close(text.detach(), learner().detach())  # the prompts as they are at this step
        seen.append(text.detach().clone())
        return inner(idx, text, scale)

    cfg = PromptConfig(n_ctx=4, epochs=3, batch_size=6, lr=0.05, progress=False)
    history = train_prompts(learner, TrainingData(feats, labels, local_entropy=hook), cfg, gamma=0.25)
    assert len(seen) == 3 and not torch.equal(seen[0], seen[-1])
    assert all("n_irrelevant" in row and "entropy" in row for row in history)


def test_warmup_holds_the_constant_rate_then_follows_the_cosine():
    feats, labels = planted(None, n=6)

    class Tiny(torch.nn.Module):  # a learner stand-in: the schedule does not depend on the text tower
        classnames, n_classes = CLASSES, 3
        backbone = type("B", (), {"logit_scale": 1.0})()

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)))

        def forward(self):
            return F.normalize(self.w, dim=-1)

    cfg = PromptConfig(epochs=4, batch_size=6, lr=0.002, progress=False)
    plain = [row["lr"] for row in train_prompts(Tiny(), TrainingData(feats, labels), cfg)]
    warm = [row["lr"] for row in train_prompts(Tiny(), TrainingData(feats, labels),
                                               PromptConfig(**{**cfg.__dict__, "warmup_epochs": 2}))]
    # "lr" is the rate each step was taken at: the cosine at step s of 4 (per-step schedule, continued after the
    # two warm-up steps, one step per epoch here)
    cosine = [0.002 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in (0, 1, 2, 3)]
    assert plain == pytest.approx(cosine)
    assert warm == pytest.approx([1e-5, 1e-5] + cosine[2:])
    # Dassl (CoOp / LoCoOp's trainer): warm-up recount, one scheduler step per epoch; two steps per epoch here
    dassl = [row["lr"] for row in train_prompts(Tiny(), TrainingData(feats, labels), PromptConfig(
        **{**cfg.__dict__, "warmup_epochs": 1, "schedule": "dassl", "batch_size": 3}))]
    per_epoch = [1e-5] + [0.002 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in (0, 1, 2)]
    assert dassl == pytest.approx([lr for lr in per_epoch for _ in range(2)])


def test_dassl_schedule_equals_the_reference_trainer_over_ten_epochs():
    """LoCoOp's trainer (Dassl): CosineAnnealingLR(T_max=10) behind a one-epoch constant warm-up that recounts,
    stepped at the end of each epoch. Rebuilt here from torch's own schedulers, stepped the same way."""
    from clipos_lab.clipos.prompts import learning_rate

    cfg = PromptConfig(epochs=10, lr=0.002, warmup_epochs=1, warmup_lr=1e-5, schedule="dassl", progress=False)
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([param], lr=cfg.lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=10)
    reference = []
    for epoch in range(10):
        if epoch < 1:  # the constant warm-up epoch
            rate = cfg.warmup_lr
        else:  # recount: the cosine starts its own epoch 0 when the warm-up ends
            rate = optim.param_groups[0]["lr"]
            optim.step()  # (no gradient: only keeps torch from warning about the order)
            cosine.step()
        reference.append(rate)
    ours = [learning_rate(cfg, e, 10) for e in range(10)]
    assert ours == pytest.approx(reference, rel=1e-12)
    assert ours[1] == pytest.approx(cfg.lr) and ours[-1] > 0  # restarted at lr, never reaches 0
    # the project's per-step schedule differs from it by up to 0.155 x lr over these 10 epochs
    per_step = [cfg.warmup_lr] + [0.5 * cfg.lr * (1 + math.cos(math.pi * e / 10)) for e in range(1, 10)]
    assert max(abs(a - b) for a, b in zip(per_step, ours)) / cfg.lr == pytest.approx(0.155, abs=0.002)


def test_locoop_defaults_follow_the_reference_and_zero_shot_selection_stays_available(tiny_backbone):
    bank = few_shot_bank(tiny_backbone)
    cfg = PromptConfig(n_ctx=4, epochs=2, progress=False)
    faithful = build_method("LoCoOp", seed=1, prompt=cfg).fit(tiny_backbone, bank)
    assert faithful.selection == "per-step" and faithful.patch_tokens == "local"
    assert faithful.relevance_ is None  # nothing selected before training
    assert all("n_irrelevant" in row for row in faithful.history_)
    assert faithful.warmup_epochs == 1
    once = build_method("LoCoOp", seed=1, prompt=cfg, selection="zero-shot").fit(tiny_backbone, bank)
    assert once.relevance_ is not None and once.relevance_.rule == "topk"
    assert all("n_irrelevant" not in row for row in once.history_)
    with pytest.raises(ValueError, match="selection='each'"):
        build_method("LoCoOp", selection="each").fit(tiny_backbone, bank)

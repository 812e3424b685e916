"""FA's forced-prompt logits / loss / score and GalLoP's top-k, prompt dropout, loss and scores, from formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipos_lab.learners import fa, gallop


def test_forced_logits_loss_and_score():
    f = torch.tensor([[1.0, 0.0]])
    learned = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    frozen = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    logits = fa.forced_logits(f, learned, frozen, k=3, scale=10.0)
    assert logits.tolist() == [[10.0, 0.0] + [6.0, 0.0] * 3]
    # target = the learned prompt of class 0, against the frozen block counted 3 times
    expect = -math.log(math.exp(10) / (math.exp(10) + 1 + 3 * (math.exp(6) + 1)))
    assert fa.forced_loss(logits, torch.tensor([0])).item() == pytest.approx(expect, rel=1e-5)
    assert fa.forced_logits(f, learned, frozen, k=0, scale=10.0).shape == (1, 2)  # K = 0 is CoOp
    # MCM at T = 1 over cosines, max over all (1 + K) C entries
    mcm = fa.forced_mcm(f, learned, frozen, k=3)
    assert mcm.item() == pytest.approx(math.e / (math.e + 1 + 3 * (math.exp(0.6) + 1)), rel=1e-6)
    local = torch.stack([f, torch.tensor([[0.0, 1.0]])], dim=1)  # (1, 2, D)
    assert fa.forced_mcm(local, learned, frozen, k=3).shape == (1, 2)


def test_forced_training_moves_learned_prompt_past_frozen(tiny_backbone):
    from clipos_lab.clipos.prompts import PromptLearner

    names = ["cat", "dog"]
    learner = PromptLearner(tiny_backbone, names, n_ctx=4, ctx_init="a photo of a")
    with torch.no_grad():
        frozen = learner()
    torch.manual_seed(0)
    feats = F.normalize(frozen + 0.3 * torch.randn(2, frozen.shape[1]), dim=-1).repeat(3, 1)
    labels = torch.tensor([0, 1] * 3)
    before = fa.forced_loss(fa.forced_logits(feats, frozen, frozen, 3, tiny_backbone.logit_scale), labels).item()
    # the frozen prompts are the initial learned ones: the learned block starts tied, loss = log(4 C / ... )
    hist = fa.train_forced(learner, frozen, feats, labels, k=3, epochs=20, batch_size=4, lr=0.05)
    assert len(hist) == 20 * 2 and hist[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine per step to 0
    assert hist[0]["loss"] == pytest.approx(before, rel=1e-4)
    assert hist[-1]["loss"] < before


def test_topk_reduce_per_prompt_k():
    # (B=1, P=4, C=1, m=2): prompt 0 takes the top 1, prompt 1 the top 3 of its column
    x = torch.tensor([[1.0, 10.0], [4.0, 20.0], [2.0, 40.0], [3.0, 30.0]]).reshape(1, 4, 1, 2)
    out = gallop.topk_reduce(x, [1, 3])
    assert out.tolist() == [[[4.0, 30.0]]]
    assert gallop.topk_reduce(x, [2]).tolist() == [[[3.5, 35.0]]]
    assert gallop.topk_reduce(x, [9]).tolist() == [[[2.5, 25.0]]]  # k capped at P
    with pytest.raises(ValueError, match="one per local prompt"):
        gallop.topk_reduce(x, [1, 2, 3])


def test_prompt_dropout_and_loss():
    g = torch.arange(24, dtype=torch.float).reshape(2, 3, 4)  # (B, C, n = 4 prompts)
    gen = torch.Generator().manual_seed(5)
    kept = gallop.prompt_dropout(g, 0.75, generator=gen)  # keep max(4 - 3, 1) = 1 prompt per image
    idx = torch.randint(4, (2, 1, 1), generator=torch.Generator().manual_seed(5))
    assert torch.equal(kept, g.gather(-1, idx.expand(-1, 3, -1)).mean(-1))
    labels = torch.tensor([2, 0])
    local = torch.randn(2, 5, 3, 2)
    loss = gallop.gallop_loss(g / 24, local, labels, 10.0, topk=[1, 2], generator=torch.Generator().manual_seed(5))
    expect = F.cross_entropy(10 * kept / 24, labels) + F.cross_entropy(
        10 * gallop.topk_reduce(local, [1, 2]), labels[:, None].expand(-1, 2))
    assert loss.item() == pytest.approx(expect.item(), rel=1e-6)


def test_gallop_scores_and_prediction():
    g = torch.tensor([[[0.2, 0.4], [0.1, 0.1]]])  # (1, C=2, n=2)
    loc = torch.tensor([[[[0.5], [0.0]], [[0.0], [0.3]]]])  # (1, P=2, C=2, m=1)
    s = gallop.gallop_scores(g, loc)
    mcm = torch.tensor([0.3, 0.1]).softmax(-1).max()
    assert s["MCM"].item() == pytest.approx(mcm.item())
    assert s["GL-MCM"].item() == pytest.approx((mcm + torch.tensor([0.5, 0.0]).softmax(-1).max()).item())
    probs = gallop.gallop_probs(g, loc, 10.0, topk=[1])
    assert torch.allclose(probs, (10 * (torch.tensor([0.3, 0.1]) + torch.tensor([0.5, 0.3])) / 2).softmax(-1))


def test_multi_prompts_start_as_the_template(tiny_backbone):
    names = ["cat", "red car"]
    p = gallop.MultiPrompts(tiny_backbone, names, n_prompts=3, init="A photo of a")
    with torch.no_grad():
        feats = p()
    assert feats.shape == (2, 3, tiny_backbone.embed_dim)
    plain = tiny_backbone.encode_text([f"A photo of a {n}" for n in names])  # no period, as the reference
    assert torch.allclose(feats[:, 0], plain, atol=1e-5) and torch.allclose(feats[:, 2], plain, atol=1e-5)


def test_gallop_text_in_one_pass_is_each_prompt_set_alone(tiny_backbone):
    """The one-call text pass must split its output back into the right (set, prompt, class) slots."""
    torch.manual_seed(0)
    names = ["cat", "red car", "dog"]
    p = gallop.GalLoPPrompts(tiny_backbone, names, n_global=2, n_local=3)
    with torch.no_grad():
        p.global_prompts.ctx.add_(torch.randn_like(p.global_prompts.ctx))  # sets and prompts now all differ
        p.local_prompts.ctx.add_(torch.randn_like(p.local_prompts.ctx))
        g, loc = p.text()
        assert g.shape == (3, 2, tiny_backbone.embed_dim) and loc.shape == (3, 3, tiny_backbone.embed_dim)
        assert torch.allclose(g, p.global_prompts(), atol=1e-6) and torch.allclose(loc, p.local_prompts(), atol=1e-6)
        assert not torch.allclose(g[:, 0], g[:, 1], atol=1e-3)

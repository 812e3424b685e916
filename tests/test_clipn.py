"""CLIPN: scores and losses against hand-computed values, the no tower's persistence and identity, the released
layout, training (seeded, resumable) and the method through the runner."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from helpers import clipn_full_and_resumed

from clipos_lab.clipn import NoTextEncoder, atd, attach, ctw, load_released, p_yes
from clipos_lab.clipn import losses as L
from clipos_lab.errors import BackboneError, WeightsNotFoundError
from clipos_lab.pocket import world as W


def sig(x):
    return 1 / (1 + math.exp(-x))


def softplus(x):
    return math.log(1 + math.exp(x))


# ------------------------------------------------------------------------------------------- ATD and CTW
def test_atd_and_ctw_match_hand_computed_values():
    # two classes in 3-d; yes embeddings e1, e2; no embeddings e3 and (0.6, 0.8, 0); scale 2
    yes = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    no = torch.tensor([[0, 0, 1.0], [0.6, 0.8, 0]])
    feats = torch.tensor([[3.0, 0, 0], [0, 0.5, 0]])  # not normalised: the scores normalise
    # image 1: cos_yes (1, 0), cos_no (0, 0.6) -> p_yes (sig(2), sig(-1.2)); softmax of (2, 0)
    p1 = (sig(2.0), sig(-1.2))
    soft1 = (math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1))
    # image 2: cos_yes (0, 1), cos_no (0, 0.8) -> p_yes (sig(0), sig(0.4)); softmax of (0, 2)
    p2 = (0.5, sig(0.4))
    soft2 = (soft1[1], soft1[0])
    expected_atd = [p1[0] * soft1[0] + p1[1] * soft1[1], p2[0] * soft2[0] + p2[1] * soft2[1]]
    expected_ctw = [p1[0], p2[1]]  # p_yes at the yes branch's argmax: class 1, then class 2
    assert torch.allclose(p_yes(feats, yes, no, 2.0), torch.tensor([p1, p2]), atol=1e-6)
    assert torch.allclose(atd(feats, yes, no, 2.0), torch.tensor(expected_atd), atol=1e-6)
    assert torch.allclose(ctw(feats, yes, no, 2.0), torch.tensor(expected_ctw), atol=1e-6)
    assert expected_atd[0] == pytest.approx(0.803396, abs=1e-6) and expected_ctw[1] == pytest.approx(0.598688, abs=1e-6)


# -------------------------------------------------------------------------------------------- the losses
IMAGES = torch.tensor([[1.0, 0], [0, 1.0], [0.6, 0.8]])
YES = torch.tensor([[1.0, 0], [0, 1.0], [0.8, 0.6]])
NO = torch.tensor([[0, 1.0], [-1.0, 0], [0, 1.0]])
# cos(image i, yes j) - cos(image i, no j), worked out by hand
MARGIN = [[1 - 0, 0 + 1, 0.8 - 0],
          [0 - 1, 1 - 0, 0.6 - 1],
          [0.6 - 0.8, 0.8 + 0.6, 0.96 - 0.8]]


def test_itbo_matches_hand_computed_values_with_diagonal_and_exact_targets():
    s = 1.5
    loss_yes, loss_no = L.itbo_loss(IMAGES, YES, NO, s)  # default: the diagonal is true
    hand_yes = sum(softplus(-s * MARGIN[i][i]) for i in range(3)) / 3
    hand_no = sum(softplus(s * MARGIN[i][j]) for i in range(3) for j in range(3) if i != j) / 6
    assert loss_yes.item() == pytest.approx(hand_yes, abs=1e-6)
    assert loss_no.item() == pytest.approx(hand_no, abs=1e-6)
    # caption 0 is also true of image 2: one more yes pair, one fewer no pair, each term over its own count
    positives = torch.eye(3, dtype=torch.bool)
    positives[2, 0] = True
    loss_yes, loss_no = L.itbo_loss(IMAGES, YES, NO, s, positives)
    assert loss_yes.item() == pytest.approx((3 * hand_yes + softplus(-s * MARGIN[2][0])) / 4, abs=1e-6)
    assert loss_no.item() == pytest.approx((6 * hand_no - softplus(s * MARGIN[2][0])) / 5, abs=1e-6)
    # -log p[yes] is the two-way softmax over (s cos_yes, s cos_no)
    two_way = torch.tensor([s * 1.0, s * 0.0]).softmax(0)[0]
    assert softplus(-s * MARGIN[0][0]) == pytest.approx(-math.log(two_way), abs=1e-6)


def test_tso_matches_hand_computed_values():
    # yes . no = 0, 0, 0.6 -> distances sqrt(2), sqrt(2), sqrt(0.8)
    hand = (2 * (2 - math.sqrt(2)) + (2 - math.sqrt(0.8))) / 3
    assert L.tso_loss(YES, NO, eps=0.0).item() == pytest.approx(hand, abs=1e-6)
    assert L.tso_loss(YES, NO).item() == pytest.approx(hand, abs=1e-4)  # the default eps barely moves it
    assert L.tso_loss(YES, YES).item() == pytest.approx(2 - math.sqrt(1e-4), abs=1e-6)  # copies: the maximum


def test_exact_targets_follow_the_caption_constraints():
    red_star = W.Scene("object", "solid", (W.DrawnObject("star", "red", "small", 0.0, (0, 0, 1, 1)),))
    blue_star = W.Scene("object", "dots", (W.DrawnObject("star", "blue", "large", 0.0, (0, 0, 1, 1)),))
    empty = W.Scene("background", "dots")
    captions = [{"shape": "star"}, {"colour": "red", "scene": "object"}, {"scene": "background", "background": "dots"}]
    truth = L.exact_targets([red_star, blue_star, empty], captions)
    assert truth.tolist() == [[True, True, False], [True, False, False], [False, False, True]]
    # the reference's targets see only each image's own caption
    own = L.own_caption_targets(["a photo of a star.", "a photo of a star.", "x"], ["a photo of a star.", "x"])
    assert own.tolist() == [[True, False], [True, False], [False, True]]


# ---------------------------------------------------------------------------------------- the no tower
@pytest.fixture(scope="module")
def other_backbone(tiny_files):
    """The tiny architecture with other random weights: another yes tower."""
    from clipos_lab.backbone import Backbone

    config, _ = tiny_files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Backbone.load(config=config, random_weights=True, seed=7, surgery_blocks=1)


TEXTS = ["a photo of a star.", "a red shape.", "an empty dotted background."]


def test_a_fresh_no_tower_is_the_yes_tower(tiny_backbone):
    encoder = NoTextEncoder.from_backbone(tiny_backbone)
    assert encoder.n_prompts == 16 and not encoder.prompts.any()
    assert torch.allclose(encoder.encode(tiny_backbone, TEXTS), tiny_backbone.encode_text(TEXTS), atol=1e-5)
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert {"prompts", "token_embedding.weight", "text_projection"} <= trainable
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())  # the yes tower stays frozen


def test_save_load_round_trip_and_refusals(tiny_backbone, other_backbone, tmp_path):
    encoder = NoTextEncoder.from_backbone(tiny_backbone)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        encoder.prompts.copy_(torch.randn(encoder.prompts.shape, generator=gen) * 0.1)
        encoder.text_projection.add_(torch.randn(encoder.text_projection.shape, generator=gen) * 0.1)
    before = encoder.encode(tiny_backbone, TEXTS)
    assert not torch.allclose(before, tiny_backbone.encode_text(TEXTS), atol=1e-3)
    path = encoder.save(tmp_path / "no.safetensors", extra={"note": "test"})
    loaded = NoTextEncoder.load(path, tiny_backbone)
    assert torch.allclose(loaded.encode(tiny_backbone, TEXTS), before, atol=1e-6)
    assert loaded.meta == {"note": "test"}
    with pytest.raises(FileExistsError):
        encoder.save(path)
    with pytest.raises(BackboneError, match="not for"):
        NoTextEncoder.load(path, other_backbone)
    with pytest.raises(BackboneError, match="made for"):
        attach(other_backbone, loaded)
    with pytest.raises(WeightsNotFoundError):
        NoTextEncoder.load(tmp_path / "missing.safetensors", tiny_backbone)


def test_released_layout_loader(tiny_files, tiny_backbone, other_backbone, tmp_path):
    """A tiny random CLIPN saved as the reference's training script saves it: 'state_dict' with 'module.' keys."""
    from open_clip.model import CLIP

    torch.manual_seed(123)  # the tiny backbone's weights: CLIPN's yes tower is the frozen stock one
    stock = CLIP(**json.loads(tiny_files[0].read_text())).state_dict()
    gen = torch.Generator().manual_seed(1)
    no_branch = {}
    for key, value in stock.items():
        if key.startswith("transformer.") or key in ("token_embedding.weight", "positional_embedding",
                                                     "text_projection") or key.startswith("ln_final."):
            name = key.replace("transformer.", "transformer_no.", 1) if key.startswith("transformer.") else \
                key.replace("ln_final.", "ln_final_no.").replace("token_embedding.", "token_embedding_no.") \
                .replace("positional_embedding", "positional_embedding_no").replace("text_projection",
                                                                                     "text_projection_no")
            no_branch[name] = value + 0.05 * torch.randn(value.shape, generator=gen)
    no_branch["prompt_no"] = 0.1 * torch.randn(16, 32, 32, generator=gen)
    state = {f"module.{k}": v for k, v in {**stock, **no_branch}.items()}
    path = tmp_path / "epoch_10.pt"
    torch.save({"epoch": 10, "name": "tiny", "state_dict": state}, path)

    encoder = load_released(path, tiny_backbone, attach_to_backbone=False)
    assert torch.equal(encoder.prompts, no_branch["prompt_no"])
    assert torch.equal(encoder.transformer.resblocks[0].attn.in_proj_weight,
                       no_branch["transformer_no.resblocks.0.attn.in_proj_weight"])
    assert torch.equal(encoder.token_embedding.weight, no_branch["token_embedding_no.weight"])
    # it computes what the reference's inference does: (tokens + positions + mean prompt) -> tower -> EOT -> proj
    tokens = tiny_backbone.tokenize(TEXTS)
    x = (no_branch["token_embedding_no.weight"][tokens] + no_branch["positional_embedding_no"]
         + no_branch["prompt_no"].mean(0))
    x = encoder.transformer(x, attn_mask=encoder.attn_mask)
    x = torch.nn.functional.layer_norm(x, (32,), no_branch["ln_final_no.weight"], no_branch["ln_final_no.bias"])
    hand = x[torch.arange(len(TEXTS)), tokens.argmax(-1)] @ no_branch["text_projection_no"]
    assert torch.allclose(encoder.encode(tiny_backbone, TEXTS, normalize=False), hand, atol=1e-5)
    # another backbone's yes tower: refused; a stock checkpoint without the no branch: refused
    with pytest.raises(BackboneError, match="another model"):
        load_released(path, other_backbone)
    torch.save({"state_dict": stock}, tmp_path / "stock.pt")
    with pytest.raises(BackboneError, match="prompt_no"):
        load_released(tmp_path / "stock.pt", tiny_backbone)


# -------------------------------------------------------------------------------------------- training
def test_training_is_seeded_and_resumes_exactly(pocket_backbone, tmp_path):
    from clipos_lab.clipn import train as T

    full, resumed, cfg = clipn_full_and_resumed(pocket_backbone, tmp_path)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    log = (tmp_path / "full" / "training_log.csv").read_text().splitlines()
    assert len(log) == 5 and log[0].startswith("step,loss,itbo_yes,itbo_no,tso")
    assert not torch.equal(full.prompts, torch.zeros_like(full.prompts))  # it learned something
    # exact targets mark more true pairs than the reference's diagonal
    pool = T.build_pool(pocket_backbone, 40, 0, T.POOL_FIRST_STEP, cfg, cache=tmp_path / "cache", progress=False)
    _, _, exact = T.draw_batch(pool, 0, cfg)
    _, _, own = T.draw_batch(pool, 0, T.ClipnConfig(batch_size=16, targets="reference"))
    assert exact.shape == own.shape and (exact | own).equal(exact) and exact.sum() > own.sum()
    with pytest.raises(ValueError, match="targets"):
        T.ClipnConfig.from_dict({"targets": "guess"})


# --------------------------------------------------------------------------------------------- the method
def test_clipn_method_through_the_runner(pocket_backbone, tmp_path):
    from clipos_lab.data import BenchmarkSpec
    from clipos_lab.evaluation.runner import run_benchmark
    from clipos_lab.methods import build_method

    spec = BenchmarkSpec.from_dict({
        "name": "tiny-world",
        "id": {"type": "world", "kind": "object", "shapes": ["circle", "square", "star"], "n_per_class": 6,
               "seed": 5},
        "ood": {"textures": {"type": "world", "kind": "background", "n": 8, "seed": 7}}}, base_dir=tmp_path)
    result = run_benchmark(spec, pocket_backbone, methods=["MCM", "CLIPN"], shots=(1,), seeds=(1,),
                           cache=tmp_path / "cache", progress=False, keep_fitted=True)
    scores = {(r["method"], r["score"]) for r in result.rows}
    assert {("CLIPN", "ATD"), ("CLIPN", "CTW"), ("CLIPN", "MCM")} <= scores
    assert {r["shots"] for r in result.rows if r["method"] == "CLIPN"} == {0}  # zero-shot: scored once
    mcm = {(r["ood"], r["metric"]): r["value"] for r in result.rows if (r["method"], r["score"]) == ("MCM", "MCM")}
    yes_mcm = {(r["ood"], r["metric"]): r["value"] for r in result.rows
               if (r["method"], r["score"]) == ("CLIPN", "MCM")}
    assert yes_mcm == mcm  # the yes branch is zero-shot MCM
    method = result.fitted[("CLIPN", 0, 0)]
    bank = result.scores[("CLIPN", 0, 0)]
    assert set(bank["id"]) == {"ATD", "CTW", "MCM"} and np.all((bank["id"]["ATD"] > 0) & (bank["id"]["ATD"] < 1))
    assert pocket_backbone.no_text is not None  # the shipped pocket no tower was loaded and attached
    # zero-shot: class names are enough
    alone = build_method("CLIPN").fit(pocket_backbone, classnames=["circle", "square", "star"])
    assert torch.allclose(alone.text_no_, method.text_no_)
    with pytest.raises(ValueError, match="class names"):
        build_method("CLIPN").fit(pocket_backbone)


def test_stock_weights_have_no_no_branch(tiny_backbone):
    from clipos_lab.methods import build_method

    with pytest.raises(WeightsNotFoundError, match="no CLIPN no-text encoder"):
        build_method("CLIPN").fit(tiny_backbone, classnames=["a", "b"])


def test_cli_runs_clipn(tmp_path, capsys):
    import yaml

    from clipos_lab.cli import main

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny-cli", "id": {"type": "world", "kind": "object", "shapes": ["circle", "star"], "n_per_class": 4,
                                   "seed": 5},
        "ood": {"textures": {"type": "world", "kind": "background", "n": 6, "seed": 7}}}))
    code = main(["evaluate", str(spec), "--methods", "MCM,CLIPN", "--out", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    rows = [line.replace(" ", "") for line in printed.splitlines() if "CLIPN" in line]
    assert any("|CLIPN|ATD|0|" in r for r in rows) and any("|CLIPN|CTW|0|" in r for r in rows), printed

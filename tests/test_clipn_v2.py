"""CLIPN's no tower on world v2 (pocket v2): which world a backbone gets, captions that never name an unseen
concept, exact targets by world v2's rule, the pool cache's scene JSON, seeded and resumable training, and
loading pocket v2's shipped tower (a clear error while it does not exist). Random-weights pocket v2 only."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from helpers import clipn_full_and_resumed

from clipos_lab.clipn import encoder as E
from clipos_lab.clipn import train as T
from clipos_lab.clipn import worlds as CW
from clipos_lab.errors import WeightsNotFoundError
from clipos_lab.pocket import train as P
from clipos_lab.pocket import world2 as W2
from clipos_lab.pocket.captions2 import candidates
from clipos_lab.pocket.train2 import Train2Config


@pytest.fixture(scope="module")
def pocket2_backbone():
    """Pocket v2's architecture (112 px, 14 x 14 grid) with seeded random weights."""
    from clipos_lab.backbone import Backbone

    return Backbone.load(model="pocket2", random_weights=True)


@pytest.fixture(scope="module")
def drawings():
    """World v2 as CLIPN's pool draws it (the shipped pack), and 300 pool scenes."""
    world = CW.DrawingsPool(112, 14)
    _, scenes = world.draw(0, T.POOL_FIRST_STEP, 0, 300)
    return world, scenes


def said(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_the_world_follows_the_backbone(pocket2_backbone, pocket_backbone, tiny_backbone):
    assert CW.resolve_world(pocket_backbone) == "v1"  # weights id "pocket-vit:sha256:..."
    assert CW.resolve_world(pocket2_backbone) == "v2"  # random weights: by pocket v2's 112 px and 14 x 14 grid
    assert CW.resolve_world(tiny_backbone) == "v1"
    assert CW.resolve_world(tiny_backbone, "v2") == "v2"  # a named world wins
    with pytest.raises(ValueError, match="world='v3'"):
        CW.resolve_world(pocket_backbone, "v3")
    with pytest.raises(ValueError, match="world"):
        T.ClipnConfig.from_dict({"world": "drawings"})


def test_v2_pool_is_drawn_like_pocket2_training_from_unused_scenes(drawings):
    world, scenes = drawings
    pack = world.pack
    allowed = {r["file"] for r in pack.select(("pretrain", "extra"))}
    files = {o.file for s in scenes for o in s.objects if o.family == "drawing"}
    assert files and files <= allowed  # never a val / eval / unseen drawing
    assert {s.kind for s in scenes} == set(W2.KINDS)  # pocket v2's mix of scene kinds
    # the very scenes of pocket v2's training stream, at indices its training never reaches
    cfg = Train2Config()
    first = T.POOL_FIRST_STEP * CW.V2_INDICES_PER_STEP
    assert first > cfg.steps * cfg.batch_size
    image, scene = world.world.render(P.TRAIN_STREAM, first + 7)  # seed 0's stream
    images, again = world.draw(0, T.POOL_FIRST_STEP, 0, 8)
    assert np.array_equal(images[7], image) and again[7] == scene == scenes[7]
    # the validation pool is other scenes
    _, val = world.draw(0, T.VAL_FIRST_STEP, 0, 8)
    assert [s.objects for s in val] != [s.objects for s in again]


def test_v2_captions_never_name_an_unseen_concept(drawings):
    world, scenes = drawings
    forbidden = frozenset(world.pack.manifest["forbidden_words"])
    assert world.forbidden == forbidden and forbidden
    # pre-training drawings whose titles, keywords or superclass would name one ("teddy bear", "meats and eggs")
    risky = [r for r in world.world.pool
             if said(" ".join([r["title"], *r["keywords"], r["superclass"].replace("_", " ")])) & forbidden][:40]
    rendered = [world.world.render(5, i, kind="object", drawing=r)[1] for i, r in enumerate(risky)]
    unfiltered = [t for s in rendered for t, _ in candidates(s) if said(t) & forbidden]
    assert len(unfiltered) >= 5, "the pack has too few pre-training drawings whose captions could name a held-out word"
    for k, scene in enumerate(rendered + list(scenes)):
        rng = np.random.default_rng([k, 3])
        for _ in range(20):
            text, _ = world.caption(scene, rng)
            assert not said(text) & forbidden, text
    # and through training's own draw: every caption of a few batches
    pool = T.Pool(torch.zeros(len(scenes), 4), list(scenes), world)
    for step in range(5):
        _, texts, _ = T.draw_batch(pool, step, T.ClipnConfig(batch_size=128))
        assert not any(said(t) & forbidden for t in texts)


def test_v2_exact_targets_are_world2_matches(drawings):
    world, scenes = drawings
    pool = T.Pool(torch.zeros(len(scenes), 4), list(scenes), world)
    cfg = T.ClipnConfig(batch_size=128)
    rows, texts, exact = T.draw_batch(pool, 3, cfg)
    rng = np.random.default_rng([cfg.seed, 7, 3])  # draw_batch's stream: the rows, then one caption per image
    assert np.array_equal(rng.choice(len(scenes), size=128, replace=False), rows.numpy())
    constraints = dict(world.caption(scenes[i], rng) for i in rows.tolist())
    assert sorted(constraints) == texts
    for i, r in enumerate(rows.tolist()):
        for j, t in enumerate(texts):
            assert bool(exact[i, j]) == W2.matches(constraints[t], scenes[r])
    _, _, own = T.draw_batch(pool, 3, T.ClipnConfig(batch_size=128, targets="reference"))
    assert (exact | own).equal(exact) and exact.sum() > own.sum()  # every own caption is true, and more


def test_v2_scene_json_round_trip(drawings):
    world, scenes = drawings
    states = [world.world.render(1, i, kind="object", drawing=world.world.pool[i], state="torn")[1] for i in range(5)]
    sample = list(scenes) + states
    assert any(o.state for s in states for o in s.objects) and {s.kind for s in sample} == set(W2.KINDS)
    back = [world.from_json(item) for item in json.loads(json.dumps([world.to_json(s) for s in sample]))]
    assert back == sample


def test_v2_training_is_seeded_and_resumes_exactly(pocket2_backbone, tmp_path):
    full, resumed, cfg = clipn_full_and_resumed(pocket2_backbone, tmp_path)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(full.prompts, torch.zeros_like(full.prompts))
    state = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)
    assert state["config"]["world"] == "v2" and full.meta["config"]["world"] == "v2"  # stored resolved
    assert state["world"]["world"] == "v2" and state["world"]["pack"] == CW.DrawingsPool(112, 14).pack.manifest_sha256
    log = (tmp_path / "full" / "training_log.csv").read_text().splitlines()
    assert len(log) == 5 and all(row.split(",")[7] for row in log[2::2][:2])  # val_pair_acc at steps 2 and 4
    # the cached pool holds the same scenes it was drawn with
    pool = T.build_pool(pocket2_backbone, 40, 0, T.POOL_FIRST_STEP, cfg, cache=tmp_path / "cache", progress=False)
    drawn = T.build_pool(pocket2_backbone, 40, 0, T.POOL_FIRST_STEP, cfg, cache=False, progress=False)
    assert pool.scenes == drawn.scenes and torch.allclose(pool.features, drawn.features, atol=1e-6)
    # a checkpoint of another pool world is refused on resume
    state["world"] = {**state["world"], "pack": "0" * 64}
    torch.save(state, tmp_path / "split" / "checkpoint.pt")
    with pytest.raises(RuntimeError, match="another pool world"):
        T.train(pocket2_backbone, tmp_path / "split", None, progress=False, cache=tmp_path / "cache")


def test_pocket2_no_tower_loads_from_assets_or_says_how_to_train_it(pocket2_backbone, tmp_path, monkeypatch):
    import copy

    backbone = copy.copy(pocket2_backbone)  # the shipped model's weights id, on random weights
    backbone.weights_id = "pocket2-vit:sha256:" + "ab" * 32
    backbone.no_text = None
    assert E.is_pocket2(backbone) and not E.is_pocket(backbone)
    monkeypatch.setattr(E, "POCKET2_NO_TEXT", tmp_path / "pocket2-clipn.safetensors")
    with pytest.raises(WeightsNotFoundError, match="clipn train --model pocket2"):
        E.no_text_of(backbone)
    # a tower trained for it, exported there, is what no_text_of loads (after its sha256 check)
    cfg = T.ClipnConfig(steps=2, batch_size=8, pool_size=16, val_size=8, warmup_steps=1, threads=1)
    threads = torch.get_num_threads()
    try:
        trained = T.train(backbone, tmp_path / "run", cfg, progress=False, cache=tmp_path / "cache")
    finally:
        torch.set_num_threads(threads)
    T.export(backbone, tmp_path / "run", tmp_path / "pocket2-clipn.safetensors")
    loaded = E.no_text_of(backbone)
    assert backbone.no_text is loaded
    texts = ["a photo of an apple.", "a drawing from the tools collection."]
    assert torch.allclose(loaded.encode(backbone, texts), trained.encode(backbone, texts), atol=2e-3)  # float16
    (tmp_path / "pocket2-clipn.safetensors.sha256").write_text("0" * 64 + "  pocket2-clipn.safetensors\n")
    backbone.no_text = None
    with pytest.raises(Exception, match="checksum"):
        E.no_text_of(backbone)


def test_cli_trains_a_pocket2_no_tower(tmp_path, monkeypatch, capsys):
    from clipos_lab.cli import main

    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    options = json.dumps({"steps": 1, "batch_size": 8, "pool_size": 8, "val_size": 8, "warmup_steps": 1,
                          "threads": 1})
    threads = torch.get_num_threads()
    try:
        code = main(["clipn", "train", "--model", "pocket2", "--random-weights", "--device", "cpu", "--out",
                     str(tmp_path / "run"), "--options", options, "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0 and capsys.readouterr().out.strip() == "1"
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["config"]["world"] == "v2" and state["world"]["world"] == "v2"
    assert list((tmp_path / "cache" / "clipn_pool").glob("*.safetensors"))  # the pool was encoded and cached

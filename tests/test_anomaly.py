"""Anomaly maps: metrics on hand-built masks, methods on constructed tokens, defect masks, loaders, runner."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from clipos_lab.anomaly import metrics as AM
from clipos_lab.anomaly.data import AnomalySpec, mvtec_category, world_category
from clipos_lab.anomaly.masks import fit_mask
from clipos_lab.anomaly.memory import PatchMemory, nearest_distance
from clipos_lab.anomaly.mutual import MutualScoring, aggregate_neighbours, mutual_scores
from clipos_lab.anomaly.tokens import TokenBank
from clipos_lab.data.errors import DataError
from clipos_lab.pocket import products as P
from clipos_lab.pocket import world as W
from clipos_lab.resources import BENCHMARKS


# ------------------------------------------------------------------------------------------------- metrics
def _two_region_case(normal_scores):
    """One 4x4 image: region A (2 px) scores 0.9, region B (4 px) half 0.9 half 0.1, normals as given."""
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, 0, 0:2] = True  # region A
    mask[0, 2:4, 2:4] = True  # region B, not touching A
    scores = np.zeros((1, 4, 4))
    scores[0, 0, 0:2] = 0.9
    scores[0, 2, 2:4] = 0.9
    scores[0, 3, 2:4] = 0.1
    scores[~mask] = normal_scores
    return mask, scores


def test_aupro_on_hand_built_masks():
    mask, scores = _two_region_case(np.full(10, 0.5))
    # at 0.9: FPR 0 and PRO (1 + 1/2) / 2 = 0.75, flat until FPR 1: the area up to 0.3 is 0.75 of the box
    assert AM.aupro(mask, scores) == pytest.approx(0.75)
    normals = np.full(10, 0.5)
    normals[:2] = 0.95  # two normal pixels above every defect: FPR 0.2 before any region pixel is found
    mask, scores = _two_region_case(normals)
    assert AM.aupro(mask, scores) == pytest.approx(0.75 * 0.1 / 0.3)
    assert AM.aupro(mask, mask.astype(float)) == pytest.approx(1.0)
    assert AM.aupro(mask, -mask.astype(float)) == pytest.approx(0.0)


def _aupro_by_definition(masks, maps, max_fpr=0.3):
    from scipy import ndimage

    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        fprs.append((above & ~masks).sum() / (~masks).sum())
        pros.append(np.mean([above[i][r].mean() for i, r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    grid = np.linspace(0, max_fpr, 30001)
    # the curve is a step-and-ramp polyline: integrate it finely
    return float(np.trapezoid(np.interp(grid, fprs, pros), grid) / max_fpr)


def test_aupro_matches_the_definition_on_random_maps():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 12, 12), dtype=bool)
    masks[0, 2:5, 2:6] = True
    masks[0, 8:11, 8:10] = True
    masks[1, 5:9, 1:3] = True
    maps = rng.random((3, 12, 12)).round(2) + 0.4 * masks  # ties included
    assert AM.aupro(masks, maps) == pytest.approx(_aupro_by_definition(masks, maps), abs=2e-4)


def test_image_and_pixel_metrics():
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert AM.image_auroc(labels, scores) == pytest.approx(0.75)
    assert AM.f1_max(labels, scores) == pytest.approx(0.8)  # threshold 0.35: precision 2/3, recall 1
    assert AM.best_threshold(labels, scores) == pytest.approx(0.35)
    mask, scores = _two_region_case(np.full(10, 0.5))
    # 6 positives, 10 negatives at 0.5: 4 positives above all negatives, 2 below
    assert AM.pixel_auroc(mask, scores) == pytest.approx(4 / 6)
    out = AM.anomaly_metrics([0, 1], [0.2, 0.9], np.stack([mask[0] * 0, mask[0]]), np.stack([scores[0], scores[0]]))
    assert set(out) == set(AM.METRICS)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="both normal and anomalous"):
        AM.image_auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="differ in shape"):
        AM.pixel_auroc(np.zeros((1, 4, 4)), np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        AM.image_auroc([0, 1], [0.1, np.nan])


# ------------------------------------------------------------------------------------------------- methods
def _bank(tokens: torch.Tensor, grid=(2, 2), size=8) -> TokenBank:
    n = len(tokens)
    return TokenBank([f"i{k}" for k in range(n)], torch.zeros(n, dtype=torch.long), tokens.mean(1), {1: tokens},
                     None, grid, size, {"depth": 1})


def test_nearest_distance_is_the_cosine_distance_to_the_closest_memory_row():
    memory = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    queries = torch.tensor([[2.0, 0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    d = nearest_distance(queries, memory)
    assert torch.allclose(d, torch.tensor([0.0, 1.0, 1 - 2 ** -0.5]), atol=1e-6)
    assert torch.allclose(nearest_distance(queries, memory, neighbours=2)[2], torch.tensor(1 - 2 ** -0.5))
    with pytest.raises(ValueError, match="neighbours"):
        nearest_distance(queries, memory, neighbours=3)


def test_patch_memory_finds_the_one_foreign_patch():
    e = torch.eye(4)
    normal = torch.stack([torch.stack([e[0], e[1], e[0], e[1]])] * 2)  # 2 normal images of 4 patches
    test = torch.stack([torch.stack([e[0], e[1], e[0], e[1]]), torch.stack([e[0], e[1], e[3], e[1]])])
    method = PatchMemory(layers=(-1,), sigma=0.0).fit(_bank(normal))
    patches = method.patch_scores(_bank(test))
    assert torch.allclose(patches, torch.tensor([[0, 0, 0, 0], [0, 0, 1.0, 0]]), atol=1e-6)
    scores = method.score(_bank(test))
    assert scores.image.tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert scores.maps.shape == (2, 8, 8)
    peak = np.unravel_index(scores.maps[1].argmax(), (8, 8))
    assert peak[0] >= 4 and peak[1] < 4  # patch 2 of a 2x2 grid is the lower-left quarter
    with pytest.raises(RuntimeError, match="before fit"):
        PatchMemory().score(_bank(test))
    with pytest.raises(ValueError, match="normal images"):
        PatchMemory().fit(None)


def test_mutual_scores_single_and_repeated_defects():
    e = torch.eye(8)
    n = 10
    tokens = torch.stack([torch.stack([e[0], e[1], e[2], e[3]])] * n).clone()
    tokens[0, 2] = e[6]  # a defect seen in image 0 only
    scores = mutual_scores(tokens, fraction=0.3)
    assert scores[0, 2] == pytest.approx(1.0) and scores[1:].abs().max() < 1e-6 and scores[0, [0, 1, 3]].max() < 1e-6
    tokens[1, 3] = e[7]
    tokens[2, 3] = e[7]  # the same defect in two images: each still finds it in only 1 of 9 others
    scores = mutual_scores(tokens, fraction=0.3)  # mean of the 3 smallest of 9 distances: (0 + 1 + 1) / 3
    assert scores[1, 3] == pytest.approx(2 / 3) and scores[2, 3] == pytest.approx(2 / 3)
    assert mutual_scores(tokens, fraction=0.1)[1, 3] == pytest.approx(0.0)  # 1 of 9: the twin hides it
    method = MutualScoring(layers=(-1,), radii=(1,), fraction=0.3, sigma=0.0)
    assert method.score(_bank(tokens)).image.argmax() == 0
    with pytest.raises(ValueError, match="at least 2"):
        mutual_scores(tokens[:1])


def test_aggregate_neighbours_averages_the_grid_window():
    tokens = torch.arange(9, dtype=torch.float32).reshape(1, 9, 1)  # a 3x3 grid holding 0..8
    out = aggregate_neighbours(tokens, (3, 3), 3)[0, :, 0]
    assert out[4] == pytest.approx(4.0)  # centre: all nine
    assert out[0] == pytest.approx((0 + 1 + 3 + 4) / 4)  # corner: its four real neighbours
    assert torch.equal(aggregate_neighbours(tokens, (3, 3), 1), tokens)
    with pytest.raises(ValueError, match="odd"):
        aggregate_neighbours(tokens, (3, 3), 2)


# ----------------------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("shape", ["circle", "star", "cross", "ring"])
@pytest.mark.parametrize("index", [0, 7])
def test_defect_masks_are_exactly_the_drawn_pixels(shape, index):
    normal, empty, _ = P.render_product(5, index, shape)
    assert not empty.any()
    for defect in P.DEFECTS:
        image, mask, product = P.render_product(5, index, shape, defect)
        changed = (image != normal).any(-1)
        assert np.array_equal(changed, mask), (shape, defect)
        assert product.defect_area == mask.sum() > 0
        if shape != "ring":  # thin shapes (ring) may lose part of a scratch to their hole; the products are solid
            assert mask.sum() >= 40, f"{defect} on {shape} covers {mask.sum()} px, under a 64-px patch"


def test_existing_scene_kinds_are_unchanged():
    w = W.World(64)
    h = hashlib.sha256()
    for kind in W.SCENES:
        for i in range(5):
            h.update(w.render(3, i, kind=kind)[0].tobytes())
    # digest of the same renders before the product kind was added
    assert h.hexdigest() == "314ce56517bd1872108c53f169ea4682b83de4cb30cdc65a256c3155e71c5227"


def test_world_category_sets():
    cat = world_category("heart", n_train=3, n_good=2, n_per_defect=1, defects=["stain", "hole"], seed=1)
    assert cat.test.classnames == ["good", "stain", "hole"] and cat.test.labels.tolist() == [0, 0, 1, 2]
    masks = cat.test.masks(64)
    assert masks.shape == (4, 64, 64) and not masks[:2].any() and masks[2:].any(axis=(1, 2)).all()
    train_ids = {np.asarray(cat.train.load(i)).tobytes() for i in range(3)}
    assert not train_ids & {np.asarray(cat.test.load(i)).tobytes() for i in range(2)}
    with pytest.raises(DataError, match="unknown product"):
        world_category("blob")


def _png(path, size=(16, 16), value=128, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(path)


def _mvtec_tree(root, masks=True):
    cat = root / "widget"
    for i in range(2):
        _png(cat / "train" / "good" / f"{i:03d}.png")
    _png(cat / "test" / "good" / "000.png")
    _png(cat / "test" / "crack" / "000.png")
    _png(cat / "test" / "crack" / "001.png")
    if masks:
        m = np.zeros((16, 16), dtype=np.uint8)
        m[4:8, 4:8] = 255
        Image.fromarray(m).save(_mk(cat / "ground_truth" / "crack" / "000_mask.png"))
        Image.fromarray(m).save(_mk(cat / "ground_truth" / "crack" / "001_mask.png"))
    return cat


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_mvtec_folder_with_masks(tmp_path):
    _mvtec_tree(tmp_path)
    cat = mvtec_category(tmp_path, "widget")
    assert len(cat.train) == 2 and cat.train.classnames == ["good"]
    assert cat.test.classnames == ["good", "crack"] and cat.test.labels.tolist() == [0, 1, 1]
    assert cat.test.has_masks
    mask = cat.test.mask(1)
    assert mask.shape == (16, 16) and mask.sum() == 16 and mask[4:8, 4:8].all()
    assert cat.test.mask(1, size=8)[2:4, 2:4].all() and cat.test.mask(1, size=8).sum() == 4
    assert cat.test.masks(8).shape == (3, 8, 8)


def test_mvtec_folder_without_masks(tmp_path):
    _mvtec_tree(tmp_path, masks=False)
    cat = mvtec_category(tmp_path, "widget")
    assert not cat.test.has_masks and cat.test.mask(1) is None and cat.test.masks(8) is None
    assert cat.test.mask(0).shape == (16, 16)  # good images have an empty mask all the same


def test_mvtec_bad_inputs_get_clear_errors(tmp_path):
    root = _mvtec_tree(tmp_path)
    _png(root / "ground_truth" / "crack" / "001_mask.png", size=(8, 8), mode="L")  # wrong size
    cat = mvtec_category(tmp_path, "widget")
    with pytest.raises(DataError, match=r"001_mask.png is 8x8 but its image .* is 16x16"):
        cat.test.mask(2)
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataError, match="no mask for .*001.png"):
        mvtec_category(tmp_path, "widget")
    (root / "test" / "good" / "000.png").rename(root / "000.png")
    (root / "test" / "good").rmdir()
    with pytest.raises(DataError, match=r"test/good does not exist: the test set needs normal images"):
        mvtec_category(tmp_path, "widget")
    for f in (root / "train" / "good").iterdir():
        f.unlink()
    (root / "train" / "good").rmdir()
    with pytest.raises(DataError, match=r"train/good does not exist"):
        mvtec_category(tmp_path, "widget")
    with pytest.raises(DataError, match="plain folder name"):
        mvtec_category(tmp_path, "../widget")


def test_fit_mask_follows_resize_and_centre_crop():
    mask = np.zeros((20, 40), dtype=bool)
    mask[:, :10] = True  # the left quarter: cut away by the centre crop of a wide image
    assert not fit_mask(mask, 10).any()
    mask[:, 15:25] = True
    fitted = fit_mask(mask, 10)  # resized to 10x20: the band is columns 7.5-12.5, i.e. 2.5-7.5 after the crop
    assert fitted[:, 3:7].all() and not fitted[:, :2].any() and not fitted[:, 8:].any()


def test_paper_mvtec_spec_says_how_to_get_the_data(tmp_path):
    spec = AnomalySpec.from_yaml(BENCHMARKS / "paper-mvtec.yaml")
    spec.data["root"] = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"does not exist\. How to get it: .*mvtec\.com"):
        spec.categories()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "data": {"type": "world", "colour": "red"}}))
    with pytest.raises(DataError, match="unknown keys"):
        AnomalySpec.from_yaml(bad)


# ------------------------------------------------------------------------------------------------- runner
TINY = {"name": "tiny-anomaly", "data": {"type": "world", "products": ["circle", "star"], "defects": ["stain", "hole"],
                                         "n_train": 3, "n_good": 4, "n_per_defect": 2, "seed": 9}}


def test_runner_and_cli_write_the_tables(tmp_path, monkeypatch, capsys, pocket_backbone):
    from clipos_lab.anomaly import run_anomaly
    from clipos_lab.cli import main

    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    result = run_anomaly(spec, pocket_backbone, shots=[0, 2], seeds=[1], progress=False, keep_scores=True)
    rows = result.rows
    assert {(r["method"], r["shots"]) for r in rows} == {("mutual", 0), ("state-prompts", 0), ("patch-memory", 2)}
    assert {r["category"] for r in rows} == {"circle", "star", "mean"}
    assert {r["defect"] for r in rows} == {"all", "stain", "hole"}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
    scores = result.scores[("patch-memory", 2, 1, "star")]
    assert scores.maps.shape == (8, 64, 64) and scores.image.shape == (8,)
    assert main(["anomaly", str(spec), "--methods", "patch-memory", "--shots", "1", "--seeds", "3",
                 "--options", '{"patch-memory": {"layers": [3, 4]}}', "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert re.search(r"\|\s*patch-memory\s*\|\s*1\s*\|", capsys.readouterr().out)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["method_options"]["patch-memory"]["layers"] == [3, 4]
    assert (tmp_path / "out" / "manifests" / "star-shots1-seed3.json").is_file()
    listed = {f["path"] for f in json.loads((tmp_path / "out" / "run.json").read_text())["files"]}
    assert {"results.csv", "metrics.json", "manifests/star-shots1-seed3.json"} <= listed
    again = ["anomaly", str(spec), "--methods", "patch-memory", "--shots", "1", "--seeds", "3", "--out",
             str(tmp_path / "out"), "--no-progress"]
    assert main(again) == 2 and "earlier run" in capsys.readouterr().err  # never overwritten unasked
    assert main([*again, "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["anomaly", str(spec), "--methods", "nope", "--no-progress"]) == 2
    assert "unknown anomaly methods" in capsys.readouterr().err
    assert main(["anomaly", str(spec), "--methods", "mutual", "--shots", "4", "--no-progress"]) == 2
    assert "need shots 0" in capsys.readouterr().err
    assert main(["anomaly", str(spec), "--options", '{"mutual": {"radius": 3}}', "--no-progress"]) == 2
    assert "its options are ['layers', 'radii', 'fraction'" in capsys.readouterr().err


def test_single_picture_heat_map_matches_the_cached_path(tmp_path, monkeypatch, pocket_backbone):
    from clipos_lab.anomaly import encode_tokens, tokens_of_images

    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    cat = world_category("star", n_train=2, n_good=1, n_per_defect=1, defects=["stain"], seed=4)
    normal = tokens_of_images([cat.train.load(i) for i in range(2)], pocket_backbone)
    picture = tokens_of_images([cat.test.load(1)], pocket_backbone)
    single = PatchMemory().fit(normal).score(picture)
    cached = PatchMemory().fit(encode_tokens(cat.train, pocket_backbone, (-3, -2, -1)))
    batch = cached.score(encode_tokens(cat.test, pocket_backbone, (-3, -2, -1)))
    assert single.maps.shape == (1, 64, 64)
    # the cache stores float16 tokens: same map up to that rounding
    assert np.allclose(single.maps[0], batch.maps[1], atol=2e-3)
    with pytest.raises(ValueError, match="at least one image"):
        tokens_of_images([], pocket_backbone)


@pytest.mark.parametrize("masks", [True, False], ids=["with-masks", "without-masks"])
def test_runner_on_an_mvtec_style_folder(tmp_path, monkeypatch, pocket_backbone, masks):
    from clipos_lab.anomaly import run_anomaly

    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    _mvtec_tree(tmp_path / "data", masks=masks)
    spec = tmp_path / "mine.yaml"
    spec.write_text(yaml.safe_dump({"name": "mine", "data": {"type": "mvtec", "root": "data"}}))  # relative
    result = run_anomaly(spec, pocket_backbone, methods=["patch-memory", "mutual"], shots=[0, 1], seeds=[1],
                         progress=False)
    metrics = {r["metric"] for r in result.rows}
    expected = set(AM.METRICS) if masks else {"image_AUROC", "image_F1max"}
    assert metrics == expected
    assert {r["category"] for r in result.rows} == {"widget"} and {r["defect"] for r in result.rows} == {"all", "crack"}


def test_shipped_world_specs_build_and_validation_uses_other_images():
    test = AnomalySpec.from_yaml(BENCHMARKS / "world-anomaly.yaml")
    validation = AnomalySpec.from_yaml(BENCHMARKS / "world-anomaly-validation.yaml")
    assert validation.data["seed"] != test.data["seed"]
    cats = test.categories()
    assert [c.name for c in cats] == ["circle", "square", "triangle", "star", "heart", "cross"]
    assert len(cats[0].test) == 40 + 4 * 15 and len(cats[0].train) == 16
    assert len(validation.categories()) == 6


def test_state_prompts_speak_the_words_they_are_given(pocket_backbone):
    from clipos_lab.anomaly.prompts import NORMAL_STATES, TEMPLATES, StatePrompts, state_prompts

    normal, abnormal = state_prompts("star")
    assert len(normal) == len(NORMAL_STATES) * len(TEMPLATES) and "a photo of a flawless star." in normal
    normal, abnormal = state_prompts("star", ["intact {}"], ["damaged {}", "torn {}"], ["a {}."])
    assert (normal, abnormal) == (["a intact star."], ["a damaged star.", "a torn star."])
    own = StatePrompts(normal_states=["intact {}"], abnormal_states=["damaged {}"], templates=["a {}."])
    own.fit(backbone=pocket_backbone, category="star")
    winclip = StatePrompts().fit(backbone=pocket_backbone, category="star")
    expected = torch.nn.functional.normalize(pocket_backbone.encode_text(["a damaged star."]).mean(0), dim=-1)
    assert torch.allclose(own.text[1], expected, atol=1e-6) and not torch.allclose(own.text, winclip.text)
    assert own.options()["abnormal_states"] == ["damaged {}"]
    for bad in ({"normal_states": "intact {}"}, {"abnormal_states": ["damaged"]}, {"templates": []}):
        with pytest.raises(ValueError, match="one '{}'"):
            StatePrompts(**bad)

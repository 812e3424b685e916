"""WinCLIP windows and WinCLIP+, and the PatchCore coreset of the patch memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from clipos_lab.anomaly.memory import PatchMemory, greedy_coreset
from clipos_lab.anomaly.tokens import TokenBank
from clipos_lab.anomaly.windows import encode_windows, harmonic_to_patches, window_index


def test_window_index_and_harmonic_aggregation():
    idx = window_index((3, 3), 2)
    assert idx.tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    scores = torch.tensor([[0.5, 0.25, 1.0, 0.5]])
    patches = harmonic_to_patches(scores, (3, 3), 2)[0]
    assert patches[0] == pytest.approx(0.5)  # one window
    assert patches[1] == pytest.approx(2 / (1 / 0.5 + 1 / 0.25))  # two windows: their harmonic mean
    assert patches[4] == pytest.approx(4 / (2 + 4 + 1 + 2))  # the centre: all four
    with pytest.raises(ValueError, match="does not fit"):
        window_index((3, 3), 4)


def test_a_window_over_the_whole_grid_is_the_image_embedding(tiny_backbone):
    """With every patch in the window, masking drops nothing: the window embedding is CLIP's image embedding."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    whole = encode_windows(images, tiny_backbone, k=tiny_backbone.grid[0])
    with torch.no_grad():
        full = F.normalize(tiny_backbone.model.encode_image(images).float(), dim=-1)
    assert whole.shape == (2, 1, full.shape[1])
    assert torch.allclose(whole[:, 0], full, atol=1e-5)
    small = encode_windows(images, tiny_backbone, k=2)
    assert small.shape == (2, 9, full.shape[1]) and not torch.allclose(small[:, 0], full, atol=1e-3)
    # a window sees only its own patches: changing a patch outside it leaves its embedding alone
    changed = images.clone()
    changed[:, :, 24:, 24:] += 3.0  # the bottom-right patch
    after = encode_windows(changed, tiny_backbone, k=2)
    assert torch.allclose(after[:, 0], small[:, 0], atol=1e-6) and not torch.allclose(after[:, 8], small[:, 8])


def test_winclip_and_winclip_plus_run_on_the_defect_world(tmp_path, monkeypatch, pocket_backbone):
    from clipos_lab.anomaly import run_anomaly

    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({"name": "tiny", "data": {"type": "world", "products": ["circle"],
                                                             "defects": ["stain"], "n_train": 4, "n_good": 6,
                                                             "n_per_defect": 6, "seed": 9}}))
    result = run_anomaly(spec, pocket_backbone, methods=["winclip", "winclip+"], shots=[0, 2], seeds=[1],
                         progress=False, keep_scores=True)
    assert {(r["method"], r["shots"]) for r in result.rows} == {("winclip", 0), ("winclip+", 2)}
    zero, few = result.scores[("winclip", 0, 0, "circle")], result.scores[("winclip+", 2, 1, "circle")]
    assert zero.maps.shape == few.maps.shape == (12, 64, 64)
    assert np.isfinite(few.maps).all() and not np.allclose(few.maps, zero.maps)
    auroc = {r["method"]: r["value"] for r in result.rows if r["metric"] == "pixel_AUROC" and r["defect"] == "all"}
    assert auroc["winclip+"] > 0.8  # the few-shot windows find stains on the pocket model


def test_greedy_coreset_keeps_one_patch_per_cluster_and_the_memory_still_finds_defects():
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(6)[:4] * 10
    points = torch.cat([c + 0.01 * torch.randn(25, 6, generator=gen) for c in centres])
    chosen = greedy_coreset(points, 4, seed=1, projection_dim=0)
    assert sorted((chosen // 25).tolist()) == [0, 1, 2, 3]  # the farthest-point rule reaches every cluster
    assert len(set(greedy_coreset(points, 50, seed=2).tolist())) == 50
    with pytest.raises(ValueError, match="coreset of 0 rows"):
        greedy_coreset(points, 0)
    e = torch.eye(8)
    normal = torch.stack([torch.stack([e[k % 4] for k in range(16)])] * 4)  # 64 memory patches, 4 distinct
    test = normal[:2].clone()
    test[1, 5] = e[7]
    bank = lambda t: TokenBank([f"i{k}" for k in range(len(t))], torch.zeros(len(t), dtype=torch.long),  # noqa: E731
                               t.mean(1), {1: t}, None, (4, 4), 16, {"depth": 1})
    method = PatchMemory(layers=(-1,), sigma=0.0, coreset=0.0625).fit(bank(normal))
    assert len(method.memory[-1]) == 4  # 1/16 of 64 patches: one per distinct token
    assert torch.allclose(method.patch_scores(bank(test)), PatchMemory(layers=(-1,), sigma=0.0).fit(
        bank(normal)).patch_scores(bank(test)), atol=1e-6)
    with pytest.raises(ValueError, match="coreset=1.5"):
        PatchMemory(coreset=1.5)


def test_winclip_needs_the_pictures_and_withimages_keeps_their_order():
    from clipos_lab.anomaly.dataset import AnomalyDataset
    from clipos_lab.anomaly.windows import WinCLIP, WinCLIPPlus, WithImages
    from clipos_lab.data.datasets import Sample

    tokens = torch.randn(2, 4, 8)
    bank = TokenBank(["a", "b"], torch.zeros(2, dtype=torch.long), tokens.mean(1), {1: tokens}, None, (2, 2), 8,
                     {"depth": 1})
    with pytest.raises(ValueError, match="WinCLIP needs the test images"):
        WinCLIP().score(bank)
    with pytest.raises(ValueError, match="WinCLIP needs the normal images"):
        WinCLIPPlus().fit(bank, backbone=None, category="x")
    dataset = AnomalyDataset("d", ["good"], [Sample("b", 0), Sample("a", 0)])
    with pytest.raises(ValueError, match="in order"):
        WithImages(bank, dataset)
    assert WithImages(bank, dataset.select(["a", "b"])).grid == (2, 2)

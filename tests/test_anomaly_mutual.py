"""Mutual scoring: the MuSc preset against MuSc's formula written out step by step, and RsCIN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipos_lab.anomaly.mutual import MuSc, MutualScoring, kept_count
from clipos_lab.anomaly.rescore import rscin
from clipos_lab.anomaly.runner import build_anomaly_method
from clipos_lab.anomaly.tokens import TokenBank


def _bank(layers: dict, grid, global_=None) -> TokenBank:
    n = len(next(iter(layers.values())))
    global_ = torch.randn(n, 4) if global_ is None else global_
    return TokenBank([f"i{k}" for k in range(n)], torch.zeros(n, dtype=torch.long), global_, layers, None, grid,
                     4 * grid[0], {"depth": max(layers)})


def _musc_by_the_formula(layers: list[torch.Tensor], grid, radii=(1, 3, 5), fraction=0.3) -> torch.Tensor:
    """MuSc's patch scores written out literally, one image pair at a time, in float64.

    Per layer and image: LayerNorm over (C, H, W) (no affine, eps 1e-5); per radius r: the r x r window of every
    position, zero-padded at the edges, averaged per channel; unit length; for image i and each other image j the
    Euclidean distance of each patch to its nearest patch of j; the mean of the floor(0.3 (N - 1)) smallest;
    averaged over layers, then radii.
    """
    h, w = grid
    per_radius = []
    for r in radii:
        per_layer = []
        for tokens in layers:
            n, p, c = tokens.shape
            x = tokens.double().permute(0, 2, 1).reshape(n, c, h, w)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            var = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) / torch.sqrt(var + 1e-5)
            pad = (r - 1) // 2
            windows = F.unfold(x, kernel_size=r, padding=pad).reshape(n, c, r * r, p)  # zero padding
            z = windows.sum(2) / (r * r)
            z = z.permute(0, 2, 1)
            z = z / z.norm(dim=-1, keepdim=True)
            k = int(fraction * (n - 1))
            scores = torch.zeros(n, p, dtype=torch.float64)
            for i in range(n):
                per_image = torch.stack([torch.cdist(z[i], z[j]).min(1).values for j in range(n) if j != i], 1)
                scores[i] = per_image.sort(1).values[:, :k].mean(1)
            per_layer.append(scores)
        per_radius.append(torch.stack(per_layer).mean(0))
    return torch.stack(per_radius).mean(0)


def test_musc_preset_matches_musc_formula_on_constructed_tokens():
    gen = torch.Generator().manual_seed(0)
    grid, n = (5, 6), 12
    base = torch.randn(1, 30, 16, generator=gen) * 2 + 0.5  # a shared "product" with offsets the LayerNorm removes
    layers = {k: base + 0.4 * torch.randn(n, 30, 16, generator=gen) + 3 * k for k in (1, 2)}
    layers[2][3, 7] += 4.0  # a defect
    method = MuSc(layers=(1, 2))
    got = method.patch_scores(_bank(layers, grid))
    want = _musc_by_the_formula([layers[1], layers[2]], grid)
    assert torch.allclose(got.double(), want, atol=1e-5, rtol=0)
    assert got[3].argmax() == 7
    scores = method.score(_bank(layers, grid))  # no blur, image score = the largest patch score
    assert scores.image == pytest.approx(want.max(1).values.numpy(), abs=1e-5)
    # the project's defaults are a different method: cosine, ceil(0.1 (N - 1)), radii 1 and 3, no LayerNorm
    other = MutualScoring(layers=(1, 2)).patch_scores(_bank(layers, grid))
    assert (other.double() - want).abs().max() > 1e-2


def test_musc_preset_options_and_kept_count():
    assert kept_count(11, 0.3, "floor") == 3 and kept_count(11, 0.3, "ceil") == 4
    assert kept_count(2, 0.3, "floor") == 1  # never zero
    options = build_anomaly_method("musc").options()
    assert options["radii"] == [1, 3, 5] and options["fraction"] == 0.3 and options["layer_norm"]
    assert options["distance"] == "euclidean" and options["padding"] == "zeros" and options["sigma"] == 0
    assert build_anomaly_method("musc", radii=[1, 3]).options()["radii"] == [1, 3]
    with pytest.raises(ValueError, match="distance"):
        MutualScoring(distance="manhattan")
    with pytest.raises(ValueError, match="its options are .*layer_norm"):
        build_anomaly_method("musc", bogus=1)


def _rscin_by_the_formula(scores, embeddings, ks):
    s = (scores - scores.min()) / (scores.max() - scores.min())
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    w = e @ e.T
    out = []
    for k in ks:
        new = np.zeros_like(s)
        for i in range(len(s)):
            keep = np.argsort(-w[i])[:k]
            new[i] = (w[i, keep] * s[keep]).sum() / w[i, keep].sum()
        out.append(new)
    return np.mean(out, 0)


def test_rscin_matches_its_formula_and_helps_a_faint_defect():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(9, 5)) + 3.0  # positive similarities, as CLIP's image embeddings of one product
    scores = rng.random(9)
    got = rscin(scores, torch.from_numpy(emb), (1, 2, 3))
    assert got == pytest.approx(_rscin_by_the_formula(scores, emb, (1, 2, 3)), abs=1e-6)
    assert rscin(scores, torch.from_numpy(emb), (1,)) == pytest.approx((scores - scores.min()) / np.ptp(scores))
    # two views of a defective product look alike; one of them scored faintly: its twin lifts it above the normals
    emb = np.stack([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0.2], [0, 1, 0.25], [0, 1, 0.3], [0.1, 1, 0.2]], dtype=float)
    scores = np.array([0.9, 0.3, 0.35, 0.32, 0.1, 0.2])  # 0, 1 anomalous; 1 scores below normal 2
    new = rscin(scores, torch.from_numpy(emb), (1, 2))
    assert new[1] > new[[2, 3, 4, 5]].max()
    with pytest.raises(ValueError, match="rscin"):
        rscin(scores, torch.from_numpy(emb), (0,))


def test_mutual_scoring_with_rscin_rescores_image_scores():
    gen = torch.Generator().manual_seed(2)
    layers = {1: torch.randn(6, 4, 8, generator=gen)}
    glob = torch.randn(6, 3, generator=gen)
    plain = MutualScoring(layers=(1,), radii=(1,), sigma=0.0)
    rescored = MutualScoring(layers=(1,), radii=(1,), sigma=0.0, rscin=[1, 2])
    bank = _bank(layers, (2, 2), glob)
    base = plain.score(bank).image
    assert rescored.score(bank).image == pytest.approx(rscin(base, glob, (1, 2)), abs=1e-6)
    assert not math.isclose(float(np.abs(rescored.score(bank).image - base).max()), 0.0)

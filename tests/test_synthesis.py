import pytest
import torch
import torch.nn.functional as F

from clipos_lab.clipos import synthesis as S


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def setup(n_per_class=(1, 2, 3, 1), d=6, seed=0):
    labels = torch.cat([torch.full((m,), c) for c, m in enumerate(n_per_class)])
    feats = torch.randn(len(labels), d, generator=gen(seed)) * 3
    return feats, labels


def test_feature_outliers_follow_the_mixing_formula_and_never_mix_one_class():
    r, labels = setup()
    out = S.synthesize(r, labels, 400, seed=3)
    assert len(out) == out.n_drawn == 400 and out.features.dtype == torch.float32
    torch.testing.assert_close(out.features.norm(dim=-1), torch.ones(400))
    assert (out.labels_first != out.labels_second).all()
    assert torch.equal(out.labels_first, labels[out.first]) and torch.equal(out.labels_second, labels[out.second])
    assert ((out.lam > 0) & (out.lam < 1)).all()
    rn = F.normalize(r, dim=-1)
    lam = out.lam[:, None]
    expected = F.normalize(lam * rn[out.first] + (1 - lam) * rn[out.second], dim=-1)
    torch.testing.assert_close(out.features, expected, atol=1e-6, rtol=1e-5)
    # every image is used on both sides, and every other-class image is reachable as a partner of image 0
    assert set(out.first.tolist()) == set(range(len(labels)))
    assert set(out.second[out.first == 0].tolist()) == set(range(1, len(labels)))
    p = out.provenance(7)
    assert p["first"] == int(out.first[7]) and p["label_first"] != p["label_second"]
    assert 0 < p["lam"] < 1


def test_lam_follows_beta_alpha():
    r, labels = setup()
    lam = S.synthesize(r, labels, 4000, alpha=2.0, seed=1).lam
    assert lam.mean().item() == pytest.approx(0.5, abs=0.02)
    assert lam.var().item() == pytest.approx(0.05, abs=0.005)  # Beta(2, 2): var = 1/20
    spread = S.synthesize(r, labels, 4000, alpha=0.5, seed=1).lam.var().item()
    assert spread == pytest.approx(0.125, abs=0.01)  # Beta(0.5, 0.5): var = 1/8


def test_same_seed_reproduces_and_other_seed_differs():
    r, labels = setup()
    a, b, c = (S.synthesize(r, labels, 50, seed=s) for s in (5, 5, 6))
    for name in ("features", "first", "second", "lam"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.features, c.features)


def test_patch_mode_uses_only_id_relevant_patches_of_both_images():
    n, p = 4, 5
    labels = torch.tensor([0, 0, 1, 2])
    # one basis vector per (image, patch): an outlier's support tells exactly which patches built it
    patches = torch.eye(n * p).reshape(n, p, n * p) * 2.0
    masks = torch.zeros(n, p, dtype=torch.bool)
    masks[:, :3] = True
    masks[2] = torch.tensor([False, True, False, True, True])
    relevant = -0.1 - torch.rand(n, n * p, generator=gen(2))  # all negative: a fallback has no positive entry
    out = S.synthesize(relevant, labels, 300, seed=0, mode="patch", patches=patches, masks=masks)
    torch.testing.assert_close(out.features.norm(dim=-1), torch.ones(300))
    feature_mix = S.synthesize(relevant, labels, 300, seed=0)
    assert torch.equal(out.first, feature_mix.first) and torch.equal(out.lam, feature_mix.lam)
    fell_back = 0
    for m in range(300):
        used = (out.features[m].reshape(n, p) > 1e-6)
        if not used.any():  # no patch drawn: the feature mix is used instead
            torch.testing.assert_close(out.features[m], feature_mix.features[m])
            fell_back += 1
            continue
        i, j = int(out.first[m]), int(out.second[m])
        allowed = torch.zeros(n, p, dtype=torch.bool)
        allowed[i], allowed[j] = masks[i], masks[j]
        assert not (used & ~allowed).any()
        w = out.features[m][out.features[m] > 1e-6]
        torch.testing.assert_close(w, torch.full_like(w, w[0].item()))  # an unweighted mean
    assert 0 < fell_back < 30  # the fallback path is exercised, but rare
    with pytest.raises(ValueError, match="patch"):
        S.synthesize(relevant, labels, 3, mode="patch")
    with pytest.raises(ValueError, match="feature, patch"):
        S.synthesize(relevant, labels, 3, mode="pixels")


def test_confidence_filter_drops_confident_outliers_only():
    text = torch.eye(3)
    labels = torch.tensor([0, 1, 2])
    r = torch.eye(3)
    flt = S.confidence_filter(text, threshold=0.9, scale=20.0)
    full = S.synthesize(r, labels, 200, seed=4)
    kept = S.synthesize(r, labels, 200, seed=4, filter_fn=flt)
    conf = flt.confidence(full.features)
    keep = conf < 0.9
    assert 0 < keep.sum() < 200  # extreme lam is confident, balanced lam is not
    assert len(kept) == int(keep.sum()) and kept.n_drawn == 200
    torch.testing.assert_close(kept.features, full.features[keep])
    assert torch.equal(kept.first, full.first[keep])
    assert (flt.confidence(kept.features) < 0.9).all()
    assert kept.options["filter"] == {"threshold": 0.9, "scale": 20.0}
    with pytest.raises(ValueError):
        S.confidence_filter(text, threshold=0.0)


def test_one_class_is_an_error_and_default_count():
    with pytest.raises(ValueError, match="at least two ID classes"):
        S.synthesize(torch.randn(3, 4), torch.zeros(3, dtype=torch.long), 5)
    assert S.default_n_outliers(3) == 16 and S.default_n_outliers(100) == 100
    r, labels = setup()
    assert len(S.synthesize(r, labels)) == 16


def test_global_shift_moves_outliers_to_the_global_feature_region():
    import torch.nn.functional as F

    from clipos_lab.clipos.synthesis import global_shift, shift_outliers, synthesize

    g = torch.Generator().manual_seed(0)
    offset = torch.zeros(8)
    offset[0] = 3.0
    relevant = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    global_ = F.normalize(relevant * 0.3 + offset, dim=-1)  # same images, another region of the space
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    out = synthesize(relevant, labels, 32, seed=1)
    moved = shift_outliers(out, global_shift(relevant, global_))
    assert torch.allclose(moved.features.norm(dim=-1), torch.ones(32), atol=1e-5)
    assert torch.equal(moved.first, out.first) and torch.equal(moved.lam, out.lam)
    before = (out.features @ F.normalize(global_, dim=-1).mean(0)).mean()
    after = (moved.features @ F.normalize(global_, dim=-1).mean(0)).mean()
    assert after > before + 0.3

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from clipos_lab.clipos import relevance as R


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def brute_puc(patches, grid, k):
    """Loop reference: mean over the k x k window of existing patches, row-major grid."""
    h, w = grid
    x = patches.float().reshape(patches.shape[0], h, w, -1)
    out = torch.zeros_like(x)
    r = k // 2
    for a in range(h):
        for b in range(w):
            win = x[:, max(0, a - r):a + r + 1, max(0, b - r):b + r + 1]
            out[:, a, b] = win.reshape(x.shape[0], -1, x.shape[-1]).mean(1)
    return out.reshape(patches.shape[0], h * w, -1)


def surgery_reference(patches, text, classes):
    """CLIP Surgery's literal formula on the full (N, P, K, D) product."""
    f = F.normalize(patches.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    prod = f[:, :, None, :] * t[None, None, :, :]
    sim = (prod - prod.mean(dim=2, keepdim=True)).sum(-1)
    return sim[torch.arange(f.shape[0]), :, classes]


# ------------------------------------------------------------------------------------------------- PUC
@pytest.mark.parametrize("k", [3, 5])
def test_puc_constant_grid_stays_constant_including_borders(k):
    v = torch.tensor([1.5, -2.0, 0.25])
    x = v.expand(2, 12, 3).to(torch.float16)
    out = R.patch_uniform_conv(x, (3, 4), k)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, v.expand(2, 12, 3), atol=1e-6, rtol=0)


def test_puc_hot_interior_patch_spreads_to_its_3x3_neighbourhood():
    h, w = 5, 5
    x = torch.zeros(1, h * w, 2)
    x[0, 2 * w + 2] = torch.tensor([9.0, -18.0])
    out = R.to_grid(R.patch_uniform_conv(x, (h, w), 3)[..., 0], (h, w))[0]
    expected = torch.zeros(h, w)
    expected[1:4, 1:4] = 1.0
    torch.testing.assert_close(out, expected)


def test_puc_corner_windows_average_existing_patches_only():
    h, w = 4, 5
    x = torch.zeros(1, h * w, 1)
    x[0, 0] = 36.0  # top-left corner
    out = R.to_grid(R.patch_uniform_conv(x, (h, w), 3)[..., 0], (h, w))[0]
    expected = torch.zeros(h, w)
    expected[0, 0] = 36 / 4  # corner window: 4 existing patches
    expected[0, 1] = 36 / 6  # top edge window: 6 existing patches
    expected[1, 0] = 36 / 6
    expected[1, 1] = 36 / 9  # interior window
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("k", [3, 5])
def test_puc_matches_loop_reference_on_non_square_grid(k):
    x = torch.randn(2, 3 * 5, 4, generator=gen(1))
    torch.testing.assert_close(R.patch_uniform_conv(x, (3, 5), k), brute_puc(x, (3, 5), k), atol=1e-6, rtol=1e-5)


def test_puc_k1_is_identity_and_bad_k_is_rejected():
    x = torch.randn(2, 6, 3, generator=gen(2)).half()
    out = R.patch_uniform_conv(x, (2, 3), 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x.float())
    for bad in (2, 4, 0, -1, 3.0):
        with pytest.raises(ValueError, match="k"):
            R.patch_uniform_conv(x, (2, 3), bad)
    with pytest.raises(ValueError, match="grid"):
        R.patch_uniform_conv(x, (3, 3), 3)


def test_to_grid_is_row_major():
    g = R.to_grid(torch.arange(6.0)[None], (2, 3))[0]
    assert g[1, 0] == 3 and g[0, 2] == 2


# ------------------------------------------------------------------------------------------------ maps
def test_raw_map_is_cosine_with_the_class_of_each_image():
    p = torch.randn(3, 4, 5, generator=gen(3)) * 7
    t = torch.randn(6, 5, generator=gen(4))
    labels = torch.tensor([0, 5, 2])
    expected = torch.stack([F.cosine_similarity(p[n], t[labels[n]][None], dim=-1) for n in range(3)])
    torch.testing.assert_close(R.raw_map(p, t, labels), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(R.raw_map(p, t, 5)[1], expected[1], atol=1e-6, rtol=1e-5)


def test_surgery_closed_form_equals_literal_formula():
    p = (torch.randn(3, 6, 8, generator=gen(5)) * 3).half()
    t = F.normalize(torch.randn(7, 8, generator=gen(6)), dim=-1)
    labels = torch.tensor([0, 6, 3])
    torch.testing.assert_close(R.surgery_map(p, t, labels), surgery_reference(p, t, labels), atol=1e-5, rtol=0)
    torch.testing.assert_close(R.surgery_map(p, t, 4), surgery_reference(p, t, torch.full((3,), 4)),
                               atol=1e-5, rtol=0)


def test_minmax_per_image_and_constant_map_gives_zeros():
    m = torch.tensor([[2.0, 4.0, 3.0], [5.0, 5.0, 5.0]])
    out = R.minmax(m)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]))
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------------------------- discrepancy rule
def test_id_proportion_clips_fraction_zero_and_one():
    assert R.id_proportion(-torch.ones(1, 10)).item() == pytest.approx(0.1)
    assert R.id_proportion(torch.ones(1, 10)).item() == pytest.approx(0.9)
    assert R.id_proportion(torch.tensor([[1.0, -1, 0, 2]])).item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        R.id_proportion(torch.ones(1, 3), 0.8, 0.2)


def test_n_relevant_is_ceil_without_float_overshoot():
    rho = torch.tensor([0.3, 0.9, 0.1, 0.25, 0.0], dtype=torch.float32)
    assert R.n_relevant(rho, 10).tolist() == [3, 9, 1, 3, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discrepancy_masks_on_random_inputs(seed):
    g = gen(seed)
    grid, n, d, k_cls = (3, 4), 5, 8, 6
    raw = torch.randn(n, 12, d, generator=g).half()
    sur = torch.randn(n, 12, d, generator=g).half()
    text = F.normalize(torch.randn(k_cls, d, generator=g), dim=-1)
    labels = torch.randint(0, k_cls, (n,), generator=g)
    res = R.discrepancy_masks(raw, sur, text, labels, grid)
    assert res.raw.shape == res.surgery.shape == res.mask.shape == (n, 12)
    assert ((res.rho >= 0.1 - 1e-6) & (res.rho <= 0.9 + 1e-6)).all()
    frac = (res.discrepancy > 0).float().mean(1)
    torch.testing.assert_close(res.rho, frac.clamp(0.1, 0.9))
    for i in range(n):
        count = int(res.mask[i].sum())
        assert count == math.ceil(round(res.rho[i].item() * 12, 6))
        # the mask holds the top of the surgery map
        if count < 12:
            assert res.surgery[i][res.mask[i]].min() >= res.surgery[i][~res.mask[i]].max()
    torch.testing.assert_close(res.relevant_features.norm(dim=-1), torch.ones(n))
    torch.testing.assert_close(res.puc_patches.norm(dim=-1), torch.ones(n, 12))
    # r_i is the normalised mean of the normalised PUC'd patches in the mask
    puc = F.normalize(R.patch_uniform_conv(raw, grid, 3), dim=-1)
    r0 = F.normalize(puc[0][res.mask[0]].mean(0), dim=0)
    torch.testing.assert_close(res.relevant_features[0], r0, atol=1e-6, rtol=1e-5)


def test_discrepancy_fraction_zero_is_clipped_to_rho_min():
    # text t1 = -t0: the class mean is 0, so the surgery map equals the raw map and no discrepancy is positive
    d, grid = 4, (3, 4)
    t0 = F.normalize(torch.randn(d, generator=gen(7)), dim=0)
    text = torch.stack([t0, -t0])
    raw = torch.randn(2, 12, d, generator=gen(8))
    res = R.discrepancy_masks(raw, raw, text, torch.tensor([0, 1]), grid, k=1)
    assert (res.discrepancy <= 1e-6).all()
    torch.testing.assert_close(res.rho, torch.full((2,), 0.1))
    assert res.mask.sum(1).tolist() == [2, 2]  # ceil(0.1 * 12)


def test_discrepancy_fraction_near_one_is_clipped_to_rho_max():
    # A fraction of exactly 1 cannot occur after min-max (the surgery minimum has discrepancy <= 0), so build
    # the largest one: raw map 0 except one spike, surgery map 1 except one dip -> (P - 2) / P positive.
    e = torch.eye(3)
    text = e[:2]  # classes e0, e1; surgery sim for class 0 is (f0 - f1) / 2
    grid, p = (6, 6), 36
    raw = e[2].expand(1, p, 3).clone()
    raw[0, 5] = e[0]
    sur = e[0].expand(1, p, 3).clone()
    sur[0, 20] = e[1]
    res = R.discrepancy_masks(raw, sur, text, torch.tensor([0]), grid, k=1)
    assert (res.discrepancy > 0).sum().item() == p - 2
    torch.testing.assert_close(res.rho, torch.tensor([0.9]))
    assert res.mask.sum().item() == math.ceil(0.9 * p) == 33
    assert not res.mask[0, 20]  # the dip is the least relevant patch of the surgery map


def test_missing_surgery_tokens_fall_back_to_raw_patches():
    raw = torch.randn(2, 9, 5, generator=gen(9))
    text = F.normalize(torch.randn(3, 5, generator=gen(10)), dim=-1)
    a = R.discrepancy_masks(raw, None, text, torch.tensor([0, 2]), (3, 3))
    b = R.discrepancy_masks(raw, raw, text, torch.tensor([0, 2]), (3, 3))
    torch.testing.assert_close(a.surgery, b.surgery)
    assert torch.equal(a.mask, b.mask)


# --------------------------------------------------------------------------------------------- top-k rule
def test_topk_marks_patch_whose_class_is_outside_top_k_irrelevant():
    e = torch.eye(5)
    patches = torch.stack([
        e[0] + 0.1 * e[1],                      # class 0 ranks first -> relevant
        e[3] + 0.8 * e[4] + 0.5 * e[2] + 0.1 * e[0],  # class 0 ranks fourth -> irrelevant with top_k=2
        e[1] + 0.5 * e[0],                      # class 0 ranks second -> relevant
        -e[0] + e[2],                           # class 0 ranks last -> irrelevant
    ])[None]
    res = R.topk_masks(patches, e, torch.tensor([0]), (2, 2), k_puc=1, top_k=2)
    assert res.mask[0].tolist() == [True, False, True, False]
    assert res.irrelevant[0].tolist() == [False, True, False, True]
    assert res.rho.item() == pytest.approx(0.5)
    torch.testing.assert_close(res.relevant_features.norm(dim=-1), torch.ones(1))


def test_topk_matches_torch_topk_reference_and_default_k():
    g = gen(11)
    p = torch.randn(3, 9, 6, generator=g)
    text = F.normalize(torch.randn(10, 6, generator=g), dim=-1)
    labels = torch.tensor([1, 4, 9])
    res = R.topk_masks(p, text, labels, (3, 3))  # default top_k = round(0.2 * 10) = 2
    assert res.options["top_k"] == 2
    f = F.normalize(R.patch_uniform_conv(p, (3, 3), 3), dim=-1)
    idx = torch.topk(f @ text.T, k=2, dim=-1).indices
    expected = (idx == labels[:, None, None]).any(-1)
    empty = ~expected.any(1)
    assert torch.equal(res.mask[~empty], expected[~empty])
    assert res.mask.any(1).all()
    assert R.default_top_k(1000) == 200 and R.default_top_k(2) == 1
    assert R.topk_masks(p, text, labels, (3, 3), top_k=99).options["top_k"] == 10


# ----------------------------------------------------------------------------------------------- dispatch
def test_relevance_dispatches_rules_and_rejects_unknown():
    g = gen(12)
    bank = SimpleNamespace(patches=torch.randn(2, 4, 3, generator=g).half(),
                           surgery=torch.randn(2, 4, 3, generator=g).half(),
                           labels=torch.tensor([0, 1]), grid=(2, 2))
    text = F.normalize(torch.randn(2, 3, generator=g), dim=-1)
    a = R.relevance(bank, text)
    b = R.discrepancy_masks(bank.patches, bank.surgery, text, bank.labels, bank.grid)
    assert torch.equal(a.mask, b.mask) and a.rule == "discrepancy"
    assert R.relevance(bank, text, rule="topk", top_k=1).rule == "topk"
    t1 = R.relevance(bank, text, rule="topk", k=1, top_k=1)  # k names the PUC size for both rules
    assert t1.options["k_puc"] == 1
    assert torch.equal(t1.mask, R.topk_masks(bank.patches, text, bank.labels, (2, 2), k_puc=1, top_k=1).mask)
    with pytest.raises(ValueError, match="discrepancy, topk"):
        R.relevance(bank, text, rule="bogus")
    with pytest.raises(ValueError, match="patch"):
        R.relevance(SimpleNamespace(patches=None, surgery=None, labels=bank.labels, grid=(2, 2)), text)


def test_topk_image_without_relevant_patch_keeps_its_most_class_similar_patch():
    e = torch.eye(3)
    patches = torch.stack([e[1] - 0.9 * e[0], e[2] - 0.2 * e[0], e[1] + e[2] - 0.5 * e[0], e[1]])[None]
    res = R.topk_masks(patches, e, torch.tensor([0]), (2, 2), k_puc=1, top_k=1)
    assert res.mask[0].tolist() == [False, False, False, True]  # patch 3 has cosine 0 with class 0, the highest
    torch.testing.assert_close(res.relevant_features[0], e[1])


# ------------------------------------------------------------------------- surgery class weighting (reference)
def weighted_surgery_reference(patches, text, global_features, classes):
    """``clip_feature_surgery`` without redundant features, literally: weights from the global feature's softmax
    at 2 x cosine divided by their mean, element-wise products scaled by them, minus their class mean, summed."""
    f = F.normalize(patches.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    prob = (2 * F.normalize(global_features.float(), dim=-1) @ t.T).softmax(-1)
    w = prob / prob.mean(-1, keepdim=True)
    prod = f[:, :, None, :] * t[None, None, :, :] * w[:, None, :, None]
    sim = (prod - prod.mean(dim=2, keepdim=True)).sum(-1)
    return sim[torch.arange(f.shape[0]), :, classes]


def test_reference_surgery_weighting_on_a_hand_built_case():
    # classes e0, e1; the image's global feature is e0 and its one patch is (1, 1)/sqrt(2).
    # w = 2 softmax([2, 0]) = (2e^2, 2)/(e^2 + 1); class 0's map = (w0 - w1) / (2 sqrt 2) = (e^2 - 1)/((e^2 + 1) sqrt 2)
    e = torch.eye(2)
    patch = torch.tensor([[[1.0, 1.0]]])
    glob = e[:1]
    w = R.surgery_class_weights(glob, e)
    e2 = math.exp(2.0)
    torch.testing.assert_close(w, torch.tensor([[2 * e2 / (e2 + 1), 2 / (e2 + 1)]]))
    expected = (e2 - 1) / ((e2 + 1) * math.sqrt(2))
    got = R.surgery_map(patch, e, 0, weighting="reference", global_features=glob)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert R.surgery_map(patch, e, 0).item() == pytest.approx(0.0, abs=1e-7)  # uniform: the two classes cancel


def test_reference_surgery_weighting_equals_literal_formula_and_changes_rankings():
    p = torch.randn(3, 6, 8, generator=gen(21))
    t = F.normalize(torch.randn(7, 8, generator=gen(22)), dim=-1)
    g = torch.randn(3, 8, generator=gen(23)) * 4
    labels = torch.tensor([1, 6, 3])
    got = R.surgery_map(p, t, labels, weighting="reference", global_features=g)
    torch.testing.assert_close(got, weighted_surgery_reference(p, t, g, labels), atol=1e-5, rtol=0)
    uniform = R.surgery_map(p, t, labels)
    assert not torch.equal(got.argsort(-1), uniform.argsort(-1))
    with pytest.raises(ValueError, match="global_features"):
        R.surgery_map(p, t, labels, weighting="reference")
    with pytest.raises(ValueError, match="uniform, reference"):
        R.surgery_map(p, t, labels, weighting="softmax")


def test_relevance_passes_the_weighting_and_the_global_features():
    g = gen(24)
    bank = SimpleNamespace(patches=torch.randn(2, 4, 3, generator=g), surgery=torch.randn(2, 4, 3, generator=g),
                           global_=torch.randn(2, 3, generator=g), labels=torch.tensor([0, 1]), grid=(2, 2))
    text = F.normalize(torch.randn(3, 3, generator=g), dim=-1)
    res = R.relevance(bank, text, weighting="reference")
    direct = R.discrepancy_masks(bank.patches, bank.surgery, text, bank.labels, bank.grid, weighting="reference",
                                 global_features=bank.global_)
    assert torch.equal(res.mask, direct.mask) and res.options["weighting"] == "reference"
    torch.testing.assert_close(res.surgery, R.minmax(R.surgery_map(
        R.patch_uniform_conv(bank.surgery, (2, 2), 3), text, bank.labels, "reference", bank.global_)))


# ------------------------------------------------------------------------------- exact top-k (torch.topk)
def test_inside_topk_keeps_exactly_k_classes_even_with_ties():
    logits = torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 4)
    inside = R.inside_topk(logits, torch.arange(4), top_k=2)
    assert inside.tolist() == [True, True, False, False]  # class 2 ties with the 2nd but falls outside
    # without ties it agrees with torch.topk
    x = torch.randn(50, 9, generator=gen(25))
    c = torch.randint(0, 9, (50,), generator=gen(26))
    expected = (torch.topk(x, k=3, dim=-1).indices == c[:, None]).any(-1)
    assert torch.equal(R.inside_topk(x, c, 3), expected)


def test_relevance_reads_the_named_token_kind():
    g = gen(27)
    bank = SimpleNamespace(patches=torch.randn(2, 4, 3, generator=g), local=torch.randn(2, 4, 3, generator=g),
                           surgery=None, labels=torch.tensor([0, 1]), grid=(2, 2))
    text = F.normalize(torch.randn(3, 3, generator=g), dim=-1)
    res = R.relevance(bank, text, rule="topk", k=1, tokens="local")
    torch.testing.assert_close(res.puc_patches, F.normalize(bank.local, dim=-1))
    with pytest.raises(ValueError, match="token kind"):
        R.relevance(bank, text, tokens="values")

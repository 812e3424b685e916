"""ID-relevant / ID-irrelevant patch separation (CLIP-OS stage 1, ``docs/method.md`` section 1).

Every function here is batched over images: patch tensors are ``(N, P, D)`` with ``P = H * W`` patches in
row-major order of the ``(H, W)`` grid, patch-level maps are ``(N, P)`` and text embeddings are ``(K, D)``.
Feature banks store unnormalised float16 tokens, so every function computes in float32 and L2-normalises
wherever a cosine similarity is meant.

Two rules decide which patches are ID-relevant:

* ``"discrepancy"`` (CLIP-OS, the default): compare the min-max normalised CLIP Surgery map with the plain
  CLIP ("raw") map of the image's class; the fraction of patches where surgery beats raw gives the ID-relevant
  proportion ``rho``, and the top ``ceil(rho * P)`` patches of the surgery map are ID-relevant.
* ``"topk"`` (LoCoOp): a patch is ID-irrelevant when its ground-truth class is not among its own top-k
  predicted classes (exactly k classes, as ``torch.topk`` keeps; :func:`inside_topk`).

The surgery map weights classes as a named option (``SURGERY_WEIGHTINGS``): ``"uniform"`` subtracts the plain
mean over classes; ``"reference"`` first weights each class by CLIP Surgery's softmax of the image's global
feature (:func:`surgery_class_weights`), as the reference ``clip_feature_surgery`` does.

Which patch tokens stand for "the image's patches" is the bank field named by ``tokens`` in :func:`relevance`:
``"patches"`` (final-layer tokens) or ``"local"`` (GL-MCM / LoCoOp's value-path local features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..threads import threaded

RULES = ("discrepancy", "topk")
SURGERY_WEIGHTINGS = ("uniform", "reference")
DEFAULT_SURGERY_WEIGHTING = "uniform"
TOKEN_KINDS = ("patches", "local")

# Images handled per step where a (chunk, P, K) logits tensor is needed: bounds memory for large K.
_CHUNK = 64


# ------------------------------------------------------------------------------------------------ helpers
def _grid(grid) -> tuple[int, int]:
    h, w = (int(v) for v in grid)
    if h < 1 or w < 1:
        raise ValueError(f"grid must be two positive sizes, got {tuple(grid)}")
    return h, w


def _check_patches(patches: torch.Tensor, grid=None, name: str = "patches") -> torch.Tensor:
    if not torch.is_tensor(patches) or patches.dim() != 3:
        shape = tuple(patches.shape) if torch.is_tensor(patches) else type(patches).__name__
        raise ValueError(f"{name} must be a (N, P, D) tensor, got {shape}")
    if grid is not None:
        h, w = _grid(grid)
        if patches.shape[1] != h * w:
            raise ValueError(f"{name} has {patches.shape[1]} patches but grid {h}x{w} needs {h * w}")
    return patches.float()


def _check_text(text: torch.Tensor, dim: int) -> torch.Tensor:
    if not torch.is_tensor(text) or text.dim() != 2:
        raise ValueError("text must be a (K, D) tensor of class embeddings")
    if text.shape[1] != dim:
        raise ValueError(f"text has dimension {text.shape[1]} but the patches have {dim}")
    # Idempotent for already normalised text; protects against an unnormalised caller.
    return F.normalize(text.float(), dim=-1)


def _classes(labels_or_class, n: int, k: int, device=None) -> torch.Tensor:
    """One class index per image, from a per-image LongTensor/sequence or a single int (on ``device``)."""
    if isinstance(labels_or_class, int) or (torch.is_tensor(labels_or_class) and labels_or_class.dim() == 0):
        c = torch.full((n,), int(labels_or_class), dtype=torch.long, device=device)
    else:
        c = torch.as_tensor(labels_or_class).to(device).long().reshape(-1)
        if c.numel() != n:
            raise ValueError(f"got {c.numel()} class indices for {n} images")
    if n and (int(c.min()) < 0 or int(c.max()) >= k):
        raise ValueError(f"class indices must lie in [0, {k}), got range [{int(c.min())}, {int(c.max())}]")
    return c


def to_grid(maps: torch.Tensor, grid) -> torch.Tensor:
    """Reshape patch maps ``(N, P)`` (or one map ``(P,)``) to ``(N, H, W)`` (or ``(H, W)``) for plotting.

    Patches are row-major, so patch ``p`` sits at row ``p // W`` and column ``p % W``.
    """
    h, w = _grid(grid)
    if maps.shape[-1] != h * w:
        raise ValueError(f"maps have {maps.shape[-1]} patches but grid {h}x{w} needs {h * w}")
    return maps.reshape(*maps.shape[:-1], h, w)


# ---------------------------------------------------------------------------------------------------- PUC
def patch_uniform_conv(patches: torch.Tensor, grid, k: int = 3) -> torch.Tensor:
    """Patch uniform convolution: replace every patch token by the mean of its k x k grid neighbourhood.

    Gives each patch its neighbours' context before relevance is judged. Stride 1 and same-size output;
    border windows average only the patches that exist (no zero padding, which would shrink border tokens
    towards the origin). ``k = 1`` switches PUC off and returns the input as float32.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"k must be an odd positive integer, got k={k!r}")
    x = _check_patches(patches, grid)
    if k == 1:
        return x.clone() if x is patches else x
    n, p, d = x.shape
    h, w = _grid(grid)
    img = x.reshape(n, h, w, d).permute(0, 3, 1, 2)  # (N, D, H, W)
    out = F.avg_pool2d(img, kernel_size=k, stride=1, padding=k // 2, count_include_pad=False)
    return out.permute(0, 2, 3, 1).reshape(n, p, d).contiguous()


# --------------------------------------------------------------------------------------------------- maps
def raw_map(patches: torch.Tensor, text: torch.Tensor, labels_or_class, grid=None) -> torch.Tensor:
    """Plain CLIP relevance: cosine of every patch with its image's class embedding, ``(N, P)``.

    ``patches`` should already be PUC'd; ``grid`` is only used to validate the patch count.
    """
    f = F.normalize(_check_patches(patches, grid), dim=-1)
    t = _check_text(text, f.shape[-1])
    c = _classes(labels_or_class, f.shape[0], t.shape[0], t.device)
    return torch.einsum("npd,nd->np", f, t[c])


def surgery_class_weights(global_features: torch.Tensor, text: torch.Tensor, temperature: float = 2.0):
    """CLIP Surgery's class weights ``(N, K)``: ``softmax_k(2 cos(g, t_k))`` divided by its mean over classes.

    They average 1 over the classes of each image; classes the whole image looks like weigh more, which
    restrains their influence on the other classes' maps (the reference's comment).
    """
    if not torch.is_tensor(global_features) or global_features.dim() != 2:
        raise ValueError("global_features must be a (N, D) tensor, one global feature per image")
    g = F.normalize(global_features.float(), dim=-1)
    t = _check_text(text, g.shape[-1])
    prob = (temperature * g @ t.T).softmax(dim=-1)
    return prob / prob.mean(dim=-1, keepdim=True)


def surgery_map(patches: torch.Tensor, text: torch.Tensor, classes, weighting: str = DEFAULT_SURGERY_WEIGHTING,
                global_features: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP Surgery's feature-surgery similarity of every patch with its image's class, ``(N, P)``.

    CLIP Surgery forms the element-wise products ``f * t_k`` for all K classes, optionally scales the class-k
    product by a weight ``w_k``, subtracts their mean over classes (the class-agnostic "redundant" part) and
    sums over channels. Summing over channels is linear, so this equals ``w_c f . t_c - f . mean_k(w_k t_k)``:
    the same number without ever materialising the ``(N, P, K, D)`` product, which is too large for
    ImageNet-sized K. ``weighting="uniform"``: ``w_k = 1``; ``"reference"``: ``w`` from
    :func:`surgery_class_weights` of each image's ``global_features`` (required then).
    """
    if weighting not in SURGERY_WEIGHTINGS:
        raise ValueError(f"unknown surgery weighting {weighting!r}; choose one of {', '.join(SURGERY_WEIGHTINGS)}")
    f = F.normalize(_check_patches(patches), dim=-1)
    t = _check_text(text, f.shape[-1])
    c = _classes(classes, f.shape[0], t.shape[0], t.device)
    if weighting == "uniform":
        direction = t[c] - t.mean(dim=0, keepdim=True)  # (N, D)
    else:
        if global_features is None or len(global_features) != f.shape[0]:
            raise ValueError("weighting='reference' needs global_features, one (D,) row per image")
        w = surgery_class_weights(global_features.to(t.device), t)  # (N, K)
        own = w.gather(1, c[:, None])  # (N, 1)
        direction = own * t[c] - (w @ t) / t.shape[0]
    return torch.einsum("npd,nd->np", f, direction)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise every image's map over its patches to [0, 1]; a constant map becomes zeros.

    Makes raw and surgery maps comparable despite their different scales.
    """
    m = maps.float()
    lo = m.min(dim=-1, keepdim=True).values
    span = m.max(dim=-1, keepdim=True).values - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (m - lo) / safe, torch.zeros_like(m))


# ------------------------------------------------------------------------------------- masks and features
def id_proportion(discrepancy: torch.Tensor, rho_min: float = 0.1, rho_max: float = 0.9) -> torch.Tensor:
    """``rho`` per image: fraction of patches with positive discrepancy, clipped to [rho_min, rho_max].

    The clip keeps at least some patches on each side, whatever the maps look like.
    """
    if not 0.0 <= rho_min <= rho_max <= 1.0:
        raise ValueError(f"need 0 <= rho_min <= rho_max <= 1, got rho_min={rho_min}, rho_max={rho_max}")
    frac = (discrepancy > 0).float().mean(dim=-1)
    return frac.clamp(rho_min, rho_max)


def n_relevant(rho: torch.Tensor, n_patches: int) -> torch.Tensor:
    """``ceil(rho * P)`` per image as integers, at least 1 so an image always has an ID-relevant feature.

    A relative tolerance of 1e-6 absorbs float error (e.g. ``rho = 3/10`` must give 3, not 4).
    """
    x = rho.double() * n_patches
    return torch.ceil(x - 1e-6 * torch.clamp(x, min=1.0)).long().clamp(1, n_patches)


def top_fraction_mask(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Boolean ``(N, P)`` mask of the ``counts[i]`` highest-scoring patches of each image.

    Ties are broken by patch order (stable sort), so the mask size is exact and deterministic.
    """
    n, p = scores.shape
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(p, device=scores.device).expand(n, p))
    return ranks < counts.to(scores.device)[:, None]


def masked_mean_features(patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``r_i`` = normalise(mean of image i's normalised patches inside its mask), ``(N, D)``.

    Patches are normalised first so every ID-relevant patch weighs the same, whatever its token norm.
    """
    f = F.normalize(patches.float(), dim=-1)
    m = mask.float()
    total = torch.einsum("np,npd->nd", m, f)
    return F.normalize(total / m.sum(dim=1, keepdim=True).clamp(min=1.0), dim=-1)


@dataclass
class RelevanceResult:
    """Everything stage 1 produces for N images; maps are ``(N, P)``, use :func:`to_grid` to plot them.

    ``surgery`` and ``discrepancy`` are None for the top-k rule. ``mask`` is True on ID-relevant patches.
    """

    raw: torch.Tensor
    surgery: torch.Tensor | None
    discrepancy: torch.Tensor | None
    rho: torch.Tensor
    mask: torch.Tensor
    relevant_features: torch.Tensor
    puc_patches: torch.Tensor
    grid: tuple[int, int]
    rule: str = "discrepancy"
    options: dict | None = None

    @property
    def irrelevant(self) -> torch.Tensor:
        """ID-irrelevant patches (e.g. for LoCoOp's entropy term)."""
        return ~self.mask

    def __len__(self) -> int:
        return self.mask.shape[0]

    def grid_maps(self) -> dict[str, torch.Tensor]:
        """All maps reshaped to ``(N, H, W)``, for notebooks."""
        maps = {"raw": self.raw, "surgery": self.surgery, "discrepancy": self.discrepancy, "mask": self.mask}
        return {k: to_grid(v, self.grid) for k, v in maps.items() if v is not None}


def discrepancy_masks(raw_patches: torch.Tensor, surgery_patches: torch.Tensor | None, text: torch.Tensor,
                      labels, grid, k: int = 3, rho_min: float = 0.1, rho_max: float = 0.9,
                      weighting: str = DEFAULT_SURGERY_WEIGHTING,
                      global_features: torch.Tensor | None = None) -> RelevanceResult:
    """CLIP-OS's CLIP-surgery-discrepancy rule (``docs/method.md``, section 1).

    Both token sets get the same PUC. ``surgery_patches`` should be the value-value tokens of CLIP Surgery;
    when a backbone could not provide them (None), the raw patches are used for the surgery map too, so
    the discrepancy then only reflects feature surgery, not the v-v attention path. ``weighting`` and
    ``global_features`` go to :func:`surgery_map`.
    """
    grid = _grid(grid)
    _check_patches(raw_patches[:0], grid, "raw patches")  # shape check only: no float32 copy of every image
    if surgery_patches is not None and tuple(surgery_patches.shape) != tuple(raw_patches.shape):
        raise ValueError(f"surgery patches {tuple(surgery_patches.shape)} do not match raw patches "
                         f"{tuple(raw_patches.shape)}")
    n, p, d = raw_patches.shape
    device = text.device
    t = _check_text(text, d)
    c = _classes(labels, n, t.shape[0], device)
    raw, sur, rho = torch.empty(n, p, device=device), torch.empty(n, p, device=device), torch.empty(n, device=device)
    mask = torch.empty(n, p, dtype=torch.bool, device=device)
    normed, relevant = torch.empty(n, p, d, device=device), torch.empty(n, d, device=device)
    for s in range(0, n, _CHUNK):  # memory: the outputs plus O(chunk), whatever N
        rows = slice(s, s + _CHUNK)
        puc_raw = patch_uniform_conv(raw_patches[rows].to(device), grid, k)
        puc_sur = puc_raw if surgery_patches is None else \
            patch_uniform_conv(surgery_patches[rows].to(device).float(), grid, k)
        glob = None if global_features is None else global_features[rows].to(device)
        raw[rows] = minmax(raw_map(puc_raw, text, c[rows]))
        sur[rows] = minmax(surgery_map(puc_sur, text, c[rows], weighting, glob))
        rho[rows] = id_proportion(sur[rows] - raw[rows], rho_min, rho_max)
        mask[rows] = top_fraction_mask(sur[rows], n_relevant(rho[rows], p))
        normed[rows] = F.normalize(puc_raw, dim=-1)
        relevant[rows] = masked_mean_features(normed[rows], mask[rows])
    return RelevanceResult(raw, sur, sur - raw, rho, mask, relevant, normed, grid,
                           "discrepancy", {"k": k, "rho_min": rho_min, "rho_max": rho_max,
                                           "surgery_tokens": surgery_patches is not None, "weighting": weighting})


def default_top_k(n_classes: int) -> int:
    """LoCoOp uses top-200 of ImageNet's 1000 classes; keep that 20 % ratio for other K, at least 1."""
    return max(1, round(0.2 * n_classes))


def inside_topk(logits: torch.Tensor, classes: torch.Tensor, top_k: int) -> torch.Tensor:
    """Whether each row's class is among its ``top_k`` highest logits: ``(..., K)`` logits, ``(...)`` classes.

    Exactly ``top_k`` classes are inside, as with ``torch.topk`` (LoCoOp's reference); among classes tied
    with the k-th, the lower class index is inside (``torch.topk`` leaves the order of ties unspecified).
    The own-class logit is read from the same tensor, so a class never ranks "above itself" by rounding.
    """
    own = logits.gather(-1, classes[..., None].long())
    index = torch.arange(logits.shape[-1], device=logits.device)
    ahead = (logits > own) | ((logits == own) & (index < classes[..., None]))
    return ahead.sum(dim=-1) < top_k


def topk_masks(patches: torch.Tensor, text: torch.Tensor, labels, grid, k_puc: int = 3,
               top_k: int | None = None) -> RelevanceResult:
    """LoCoOp's rule: a patch is ID-irrelevant when its class is not among its top-``top_k`` predictions.

    Prediction = softmax over the K classes of patch-text cosines; softmax and logit scale are monotone,
    so ranking cosines is equivalent. Exactly ``top_k`` classes are inside (:func:`inside_topk`).
    ``top_k`` defaults to :func:`default_top_k` and is clamped to [1, K]. ``k_puc = 1`` gives LoCoOp exactly
    (it has no PUC). An image whose patches are all irrelevant keeps its single most class-similar patch,
    so that every image has an ID-relevant feature.
    """
    grid = _grid(grid)
    _check_patches(patches[:0], grid)  # shape check only: no float32 copy of every image
    n, p, d = patches.shape
    t = _check_text(text, d)
    n_cls = t.shape[0]
    c = _classes(labels, n, n_cls, t.device)
    top_k = default_top_k(n_cls) if top_k is None else int(top_k)
    top_k = min(max(top_k, 1), n_cls)
    f = torch.empty(n, p, d, device=t.device)
    cos_c = torch.empty(n, p, device=t.device)
    mask = torch.empty(n, p, dtype=torch.bool, device=t.device)
    for s in range(0, n, _CHUNK):  # memory: the outputs plus O(chunk), whatever N
        f[s:s + _CHUNK] = F.normalize(patch_uniform_conv(patches[s:s + _CHUNK].to(t.device), grid, k_puc), dim=-1)
        logits = f[s:s + _CHUNK] @ t.T  # (chunk, P, K)
        # The own-class score must come from these same logits: a separately computed dot product can differ
        # in the last bit and make the class look "higher" than itself.
        classes = c[s:s + _CHUNK, None].expand(-1, p)
        cos_c[s:s + _CHUNK] = logits.gather(-1, classes[..., None])[..., 0]
        mask[s:s + _CHUNK] = inside_topk(logits, classes, top_k)
    empty = ~mask.any(dim=1)
    if empty.any():
        best = cos_c[empty].argmax(dim=1)
        mask[empty.nonzero().squeeze(1), best] = True
    rho = mask.float().mean(dim=1)
    return RelevanceResult(minmax(cos_c), None, None, rho, mask, masked_mean_features(f, mask), f, grid, "topk",
                           {"k_puc": k_puc, "top_k": top_k})


# ----------------------------------------------------------------------------------------------- dispatch
def _field(bank: Any, name: str):
    if isinstance(bank, dict):
        return bank.get(name)
    return getattr(bank, name, None)


def _chunk_work(bank: Any, text: torch.Tensor, *args, tokens: str = "patches", **options) -> float:
    """Multiply-adds of one chunk's patch-by-class products, which size the thread count (clipos_lab.threads)."""
    patches = _field(bank, tokens) if tokens in TOKEN_KINDS else None
    return 0.0 if patches is None else float(min(len(patches), _CHUNK) * patches[0].numel() * len(text))


@threaded(_chunk_work)
def relevance(bank: Any, text: torch.Tensor, rule: str = "discrepancy", labels=None, tokens: str = "patches",
              **options) -> RelevanceResult:
    """Run a separation rule on a FeatureBank-like object (attributes or keys patches, surgery, labels, grid).

    ``labels`` overrides the bank's labels (e.g. to inspect another class's map). ``tokens`` names the bank
    field used as the image's patch tokens (``TOKEN_KINDS``). ``options`` go to the rule: ``k``, ``rho_min``,
    ``rho_max``, ``weighting`` for "discrepancy" (the bank's ``global_`` features feed the reference weighting);
    ``k_puc`` (or ``k``, so that callers can name the PUC size the same way for both rules), ``top_k`` for "topk".
    """
    if rule not in RULES:
        raise ValueError(f"unknown relevance rule {rule!r}; choose one of {', '.join(RULES)}")
    if tokens not in TOKEN_KINDS:
        raise ValueError(f"unknown token kind {tokens!r}; choose one of {', '.join(TOKEN_KINDS)}")
    patches = _field(bank, tokens)
    if patches is None:
        raise ValueError(f"the feature bank has no {tokens!r} tokens; encode it again (FeatureBank.encode stores "
                         "patch, surgery and local tokens) to separate patches")
    labels = _field(bank, "labels") if labels is None else labels
    grid = _field(bank, "grid")
    if rule == "discrepancy":
        if options.get("weighting") == "reference" and options.get("global_features") is None:
            options["global_features"] = _field(bank, "global_")
        return discrepancy_masks(patches, _field(bank, "surgery"), text, labels, grid, **options)
    if "k" in options:
        if "k_puc" in options:
            raise ValueError("give the PUC size once: k or k_puc, not both")
        options["k_puc"] = options.pop("k")
    return topk_masks(patches, text, labels, grid, **options)


__all__ = ["RULES", "SURGERY_WEIGHTINGS", "TOKEN_KINDS", "RelevanceResult", "default_top_k", "discrepancy_masks",
           "id_proportion", "inside_topk", "surgery_class_weights",
           "masked_mean_features", "minmax", "n_relevant", "patch_uniform_conv", "raw_map", "relevance",
           "surgery_map", "to_grid", "top_fraction_mask", "topk_masks"]

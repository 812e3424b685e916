"""Outlier synthesis from ID-relevant features (CLIP-OS stage 2, ``docs/method.md`` section 2).

Few-shot OOD detection lacks OOD supervision, so CLIP-OS makes it: mix the ID-relevant features of two images
of *different* classes, ``o = normalise(lam * r_i + (1 - lam) * r_j)`` with ``lam ~ Beta(alpha, alpha)``.
The result sits between two classes in the joint embedding space, i.e. looks like neither: an outlier the
prompts learn to call "unknown". Outliers stay features (never pixels), so they can be plotted next to real
ID and OOD features; :meth:`Outliers.provenance` says where each one came from.

Randomness: one ``numpy.random.default_rng(seed)`` drives every draw, in a fixed order (first images, second
images, lam, then the patch choices), so a seed reproduces the outliers exactly, and the feature and patch
modes use the same pairs and weights for the same seed. CLIP-OS resamples every epoch: pass a new seed per
epoch (e.g. ``seed = base_seed * 100_003 + epoch``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

MODES = ("feature", "patch")
MIN_OUTLIERS = 16

# Outliers built per step in patch mode: bounds the (chunk, P, D) gathered patches.
_CHUNK = 256


def default_n_outliers(n_id: int) -> int:
    """As many outliers as ID images (so the two loss terms see balanced batches), at least 16.

    The floor keeps 1-shot runs on few classes from training "unknown" on a handful of points.
    """
    if n_id < 0:
        raise ValueError(f"n_id must be non-negative, got {n_id}")
    return max(int(n_id), MIN_OUTLIERS)


@dataclass
class Outliers:
    """Synthesised outlier features ``(M, D)`` (unit norm, float32) and where each came from.

    ``first``/``second`` index the source images (rows of the ``relevant`` tensor given to
    :func:`synthesize`), ``lam`` is the weight of the first image, ``n_drawn`` how many were drawn before the
    optional filter.
    """

    features: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    lam: torch.Tensor
    labels_first: torch.Tensor
    labels_second: torch.Tensor
    mode: str = "feature"
    seed: int = 0
    n_drawn: int = 0
    options: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.features.shape[0]

    def provenance(self, i: int) -> dict:
        """Source images, their labels and the mixing weight of outlier ``i``, as plain Python values."""
        return {"first": int(self.first[i]), "second": int(self.second[i]), "lam": float(self.lam[i]),
                "label_first": int(self.labels_first[i]), "label_second": int(self.labels_second[i]),
                "mode": self.mode}

    def subset(self, keep: torch.Tensor) -> "Outliers":
        """Rows selected by a boolean or index tensor; bookkeeping follows the features."""
        host = keep.cpu()  # provenance lives on the host, features where they were made
        return replace(self, features=self.features[keep.to(self.features.device)], first=self.first[host],
                       second=self.second[host], lam=self.lam[host], labels_first=self.labels_first[host],
                       labels_second=self.labels_second[host], options=dict(self.options))


@dataclass(frozen=True, eq=False)
class ConfidenceFilter:
    """Keeps outliers that zero-shot CLIP does *not* confidently assign to one ID class.

    An outlier whose max softmax over the K ID classes (logits ``scale * cos``) reaches ``threshold`` still
    looks like an ID class; training it towards "unknown" would contradict the ID supervision.
    """

    text: torch.Tensor = field(repr=False)
    threshold: float = 0.9
    scale: float = 100.0

    def confidence(self, features: torch.Tensor) -> torch.Tensor:
        """Max softmax probability over the ID classes, ``(M,)``."""
        f = F.normalize(features.float(), dim=-1)
        t = F.normalize(self.text.float(), dim=-1)
        return torch.softmax(self.scale * f @ t.T, dim=-1).max(dim=-1).values

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.confidence(features) < self.threshold


def confidence_filter(text: torch.Tensor, threshold: float = 0.9, scale: float = 100.0) -> ConfidenceFilter:
    """Filter for :func:`synthesize`: keep outliers whose max ID softmax is below ``threshold``.

    ``scale`` defaults to 100, the logit scale zero-shot CLIP classifies with; pass the backbone's own
    ``logit_scale`` for other models. Both defaults are ours (``docs/method.md``, section 2).
    """
    if not torch.is_tensor(text) or text.dim() != 2:
        raise ValueError("text must be a (K, D) tensor of class embeddings")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return ConfidenceFilter(text.detach(), float(threshold), float(scale))


def _draw_pairs(labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``i`` uniform over images, then ``j`` uniform over the images of any *other* class."""
    first = rng.integers(len(labels), size=n)
    second = np.empty(n, dtype=np.int64)
    u = rng.random(n)  # one uniform per outlier, mapped into that outlier's candidate list
    for c in np.unique(labels[first]):
        rows = labels[first] == c
        others = np.flatnonzero(labels != c)
        second[rows] = others[np.minimum((u[rows] * len(others)).astype(np.int64), len(others) - 1)]
    return first, second


def _patch_mix(patches: torch.Tensor, masks: torch.Tensor, first: np.ndarray, second: np.ndarray,
               lam: np.ndarray, fallback: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each ID-relevant patch of image i kept with prob. lam, of image j with prob. 1 - lam; mean, normalise.

    An outlier that picks no patch at all falls back to the feature mix, so none is undefined.
    """
    m, p = len(first), patches.shape[1]
    device = patches.device
    pick_i = torch.from_numpy(rng.random((m, p)) < lam[:, None]).to(device) & masks[first]
    pick_j = torch.from_numpy(rng.random((m, p)) < (1.0 - lam)[:, None]).to(device) & masks[second]
    first, second = torch.from_numpy(first).to(device), torch.from_numpy(second).to(device)
    out = torch.empty(m, patches.shape[2], device=device)
    for s in range(0, m, _CHUNK):
        sl = slice(s, s + _CHUNK)
        total = (torch.einsum("mp,mpd->md", pick_i[sl].float(), patches[first[sl]])
                 + torch.einsum("mp,mpd->md", pick_j[sl].float(), patches[second[sl]]))
        out[sl] = total
    count = pick_i.sum(1) + pick_j.sum(1)
    out = F.normalize(out / count.clamp(min=1)[:, None].float(), dim=-1)
    none = count == 0
    out[none] = fallback[none]
    return out


def synthesize(relevant: torch.Tensor, labels, n_outliers: int | None = None, alpha: float = 2.0, seed: int = 0,
               mode: str = "feature", patches: torch.Tensor | None = None, masks: torch.Tensor | None = None,
               filter_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Outliers:
    """Synthesise outliers by mixing ID-relevant features of two images of different classes.

    ``relevant`` ``(N, D)``: the images' ID-relevant features (``RelevanceResult.relevant_features``).
    ``n_outliers`` defaults to :func:`default_n_outliers`. ``mode="patch"`` needs ``patches`` ``(N, P, D)``
    (normalised PUC'd patches, ``RelevanceResult.puc_patches``) and ``masks`` ``(N, P)`` (ID-relevant).
    ``filter_fn(features) -> bool (M,)`` drops outliers after drawing (e.g. :func:`confidence_filter`), so
    fewer than ``n_outliers`` may be returned; the draws themselves do not depend on the filter.
    """
    if mode not in MODES:
        raise ValueError(f"unknown synthesis mode {mode!r}; choose one of {', '.join(MODES)}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if not torch.is_tensor(relevant) or relevant.dim() != 2:
        raise ValueError("relevant must be a (N, D) tensor")
    lab = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64).reshape(-1)
    if len(lab) != relevant.shape[0]:
        raise ValueError(f"got {len(lab)} labels for {relevant.shape[0]} features")
    if len(np.unique(lab)) < 2:
        raise ValueError("synthesis needs at least two ID classes")
    n_out = default_n_outliers(len(lab)) if n_outliers is None else int(n_outliers)
    if n_out < 0:
        raise ValueError(f"n_outliers must be non-negative, got {n_out}")

    rng = np.random.default_rng(seed)
    first, second = _draw_pairs(lab, n_out, rng)
    lam = rng.beta(alpha, alpha, size=n_out)

    device = relevant.device  # mixing runs where the features live; the draws come from numpy, on the host
    r = F.normalize(relevant.detach().float(), dim=-1)
    w = torch.from_numpy(lam).float().to(device)[:, None]
    first_d, second_d = torch.from_numpy(first).to(device), torch.from_numpy(second).to(device)
    feats = F.normalize(w * r[first_d] + (1 - w) * r[second_d], dim=-1)
    if mode == "patch":
        if patches is None or masks is None:
            raise ValueError("mode='patch' needs patches (N, P, D) and masks (N, P)")
        if patches.dim() != 3 or patches.shape[0] != len(lab) or masks.shape != patches.shape[:2]:
            raise ValueError(f"patches {tuple(patches.shape)} and masks {tuple(masks.shape)} do not match "
                             f"{len(lab)} images")
        pf = F.normalize(patches.detach().to(device).float(), dim=-1)
        feats = _patch_mix(pf, masks.detach().to(device).bool(), first, second, lam, feats, rng)

    lab_t = torch.from_numpy(lab)
    first_t, second_t = torch.from_numpy(first), torch.from_numpy(second)
    out = Outliers(feats, first_t, second_t, torch.from_numpy(lam).float(), lab_t[first_t], lab_t[second_t],
                   mode, int(seed), n_out, {"alpha": alpha})
    if filter_fn is not None:
        keep = torch.as_tensor(filter_fn(out.features)).bool().reshape(-1)
        if keep.numel() != len(out):
            raise ValueError(f"filter_fn returned {keep.numel()} flags for {len(out)} outliers")
        out = out.subset(keep)
        out.options["filter"] = repr(filter_fn) if not isinstance(filter_fn, ConfidenceFilter) else \
            {"threshold": filter_fn.threshold, "scale": filter_fn.scale}
    return out


def global_shift(relevant: torch.Tensor, global_features: torch.Tensor) -> torch.Tensor:
    """The mean offset from ID-relevant (patch-pooled) features to global features of the same images, ``(D,)``.

    ID-relevant features are averages of patch tokens, and patch tokens occupy another region of the joint
    space than the global (class-token) features every test image is scored with. Outliers mixed from patch
    features would teach the *unknown* class "looks like a patch" instead of "lies between classes"; adding this
    offset moves them to where global features live while keeping their between-class direction. (Ours.)
    """
    return F.normalize(global_features.float(), dim=-1).mean(0) - F.normalize(relevant.float(), dim=-1).mean(0)


def shift_outliers(outliers: Outliers, shift: torch.Tensor) -> Outliers:
    """The same outliers (same provenance) moved by ``shift`` and renormalised."""
    moved = F.normalize(outliers.features + shift.to(outliers.features.dtype), dim=-1)
    return replace(outliers, features=moved, options={**outliers.options, "shifted": True})


__all__ = ["ConfidenceFilter", "MODES", "Outliers", "confidence_filter", "default_n_outliers", "global_shift",
           "shift_outliers", "synthesize"]

"""MuSc-style zero-shot mutual scoring: the unlabeled test images of a product score each other's patches.

The idea of MuSc (Li et al., ICLR 2024): most test images of a product are mostly normal, so a normal patch
finds a close match in almost every other image, while a defect patch finds one in few. For each patch of image
``i`` and each other image ``j`` take the distance to its nearest patch in ``j``; the patch's score is the mean
of the smallest ``fraction`` of those per-image distances (MuSc's interval average), so a defect that recurs in
a minority of images still scores high. Tokens may first be averaged over ``r x r`` grid neighbours (MuSc's
LNAMD, ``radii``), which lets a defect larger than a patch be seen as one; scores of every layer and radius are
averaged. No normal image and no text are needed.

:class:`MutualScoring` has the defaults validated on the pocket defect world; :class:`MuSc` is the same method
set up as MuSc's reference code (``xrli-U/MuSc``, ``models/musc.py``, ``models/modules/_LNAMD.py`` and
``_MSM.py``): a per-image LayerNorm over all channels and positions before aggregating, zero-padded windows,
Euclidean distance between unit vectors, ``floor(0.3 (N - 1))`` per-image distances kept, radii 1, 3, 5, no
blur, image score = the largest patch score (docs/anomaly.md lists every difference that remains).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import AnomalyMethod
from .rescore import rscin

DISTANCES = ("cosine", "euclidean")
ROUNDINGS = ("ceil", "floor")
PADDINGS = ("neighbours", "zeros")


def aggregate_neighbours(tokens: torch.Tensor, grid: tuple[int, int], radius: int,
                         padding: str = "neighbours") -> torch.Tensor:
    """``(N, P, D)`` tokens averaged over their ``radius x radius`` grid neighbourhood; radius 1 returns them
    unchanged. At the edges ``padding="neighbours"`` averages the real neighbours only, ``"zeros"`` counts the
    missing ones as zero vectors (MuSc's unfold with zero padding)."""
    if radius == 1:
        return tokens
    if radius < 1 or radius % 2 == 0:
        raise ValueError(f"radius={radius}: use odd sizes such as 1, 3, 5")
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r}: choose from {PADDINGS}")
    n, p, d = tokens.shape
    x = tokens.transpose(1, 2).reshape(n, d, *grid)
    x = F.avg_pool2d(x, radius, stride=1, padding=radius // 2, count_include_pad=padding == "zeros")
    return x.reshape(n, d, p).transpose(1, 2)


def image_layer_norm(tokens: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each image's ``(P, D)`` tokens standardised together: minus the mean over all positions and channels,
    divided by their (biased) standard deviation, as ``torch.nn.LayerNorm([C, H, W])`` without affine does."""
    return F.layer_norm(tokens.float(), tokens.shape[1:], eps=eps)


def kept_count(n_others: int, fraction: float, rounding: str = "ceil") -> int:
    """How many of the ``n_others`` per-image distances a patch averages (at least one)."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding={rounding!r}: choose from {ROUNDINGS}")
    raw = fraction * n_others
    return max(1, math.ceil(raw) if rounding == "ceil" else int(math.floor(raw)))


def mutual_scores(tokens: torch.Tensor, fraction: float = 0.3, chunk: int = 8, distance: str = "cosine",
                  rounding: str = "ceil") -> torch.Tensor:
    """``(N, P)`` scores of ``(N, P, D)`` tokens by mutual scoring (see the module docstring).

    ``distance``: ``"cosine"`` (1 - cosine similarity) or ``"euclidean"`` (between the unit vectors, MuSc's);
    the nearest patch is the same for both, only the averaged values differ."""
    n, p, d = tokens.shape
    if n < 2:
        raise ValueError(f"mutual scoring needs at least 2 test images, got {n}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} must be in (0, 1]")
    if distance not in DISTANCES:
        raise ValueError(f"distance={distance!r}: choose from {DISTANCES}")
    x = F.normalize(tokens.float(), dim=-1)
    flat = x.reshape(n * p, d)
    keep = kept_count(n - 1, fraction, rounding)
    out = []
    for start in range(0, n, chunk):
        block = x[start: start + chunk]  # (b, P, D)
        b = len(block)
        nearest = (block.reshape(b * p, d) @ flat.T).reshape(b, p, n, p).amax(-1)  # (b, P, N) best match per image
        dist = 1.0 - nearest if distance == "cosine" else (2.0 - 2.0 * nearest).clamp_min(0).sqrt()
        own = torch.arange(start, start + b)
        dist[torch.arange(b), :, own] = float("inf")  # an image never scores itself
        out.append(dist.topk(keep, dim=-1, largest=False).values.mean(-1))
    return torch.cat(out)


class MutualScoring(AnomalyMethod):
    """Zero-shot: scores a whole test set at once from its own patch tokens.

    Defaults chosen on the validation split of the pocket defect world (``benchmarks/anomaly_tune.py``): the last
    three blocks, radii 1 and 3, the smallest 10% of the per-image distances, image score = mean of the top 10%
    of patches. MuSc itself averages about the smallest 30% (its interval average); 0.1 scored higher here. The
    price: a defect that recurs almost identically in more than 10% of the test images hides behind its twins.

    ``layer_norm`` standardises each image's tokens over positions and channels before aggregating (MuSc's);
    ``distance``, ``rounding`` (of ``fraction x (N - 1)``) and ``padding`` (of the windows) choose between this
    project's and MuSc's conventions; ``rscin`` (e.g. ``[1, 2, 3]``) re-scores images with RsCIN
    (:func:`clipos_lab.anomaly.rescore.rscin`), ``None`` leaves them.
    """

    kind = "zero-shot"

    def __init__(self, layers: Sequence[int | str] = (-3, -2, -1), radii: Sequence[int] = (1, 3),
                 fraction: float = 0.1, sigma: float = 4.0, image_score: str = "top10", layer_norm: bool = False,
                 distance: str = "cosine", rounding: str = "ceil", padding: str = "neighbours",
                 rscin: Sequence[int] | None = None):
        super().__init__(sigma=sigma, image_score=image_score)
        if not layers or not radii:
            raise ValueError("layers and radii must each name at least one value")
        for name, value, allowed in (("distance", distance, DISTANCES), ("rounding", rounding, ROUNDINGS),
                                     ("padding", padding, PADDINGS)):
            if value not in allowed:
                raise ValueError(f"{name}={value!r}: choose from {allowed}")
        if not 0 < float(fraction) <= 1:
            raise ValueError(f"fraction={fraction} must be in (0, 1]")
        if rscin is not None and (not rscin or any(int(k) < 1 for k in rscin)):
            raise ValueError(f"rscin={rscin!r}: give neighbour counts >= 1 (e.g. [1, 2, 3]) or null")
        self.layers, self.radii, self.fraction = tuple(layers), tuple(int(r) for r in radii), float(fraction)
        self.layer_norm, self.distance, self.rounding, self.padding = bool(layer_norm), distance, rounding, padding
        self.rscin = None if rscin is None else tuple(int(k) for k in rscin)

    def patch_scores(self, test) -> torch.Tensor:
        total = 0.0
        for layer in self.layers:
            tokens = test.tokens(layer)
            if self.layer_norm:
                tokens = image_layer_norm(tokens)
            for r in self.radii:
                total = total + mutual_scores(aggregate_neighbours(tokens, test.grid, r, self.padding),
                                              self.fraction, distance=self.distance, rounding=self.rounding)
        return total / (len(self.layers) * len(self.radii))

    def image_scores(self, test, patches: torch.Tensor) -> np.ndarray:
        scores = super().image_scores(test, patches)
        return scores if self.rscin is None else rscin(scores, test.global_, self.rscin)

    def options(self) -> dict:
        return {"layers": list(self.layers), "radii": list(self.radii), "fraction": self.fraction,
                "layer_norm": self.layer_norm, "distance": self.distance, "rounding": self.rounding,
                "padding": self.padding, "rscin": None if self.rscin is None else list(self.rscin),
                **super().options()}


MUSC_PRESET = {"radii": (1, 3, 5), "fraction": 0.3, "sigma": 0.0, "image_score": "max", "layer_norm": True,
               "distance": "euclidean", "rounding": "floor", "padding": "zeros"}


class MuSc(MutualScoring):
    """Mutual scoring set up as MuSc's reference code (:data:`MUSC_PRESET`; any option may still be changed).

    RsCIN is off by default so the preset's maps and patch scores are MuSc's; ``rscin=[1, 2, 3]`` (MuSc on
    MVTec-AD) or ``[1, 8, 9]`` (VisA) adds its image re-scoring.
    """

    def __init__(self, layers: Sequence[int | str] = (-3, -2, -1), **options):
        super().__init__(layers=layers, **{**MUSC_PRESET, **options})

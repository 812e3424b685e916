"""MuSc-style zero-shot mutual scoring: the unlabeled test images of a product score each other's patches.

The idea of MuSc (Li et al., ICLR 2024): most test images of a product are mostly normal, so a normal patch
finds a close match in almost every other image, while a defect patch finds one in few. For each patch of image
``i`` and each other image ``j`` take the cosine distance to its nearest patch in ``j``; the patch's score is the
mean of the smallest ``fraction`` of those per-image distances (MuSc's interval average), so a defect that
recurs in a minority of images still scores high. Tokens may first be averaged over ``r x r`` grid neighbours
(MuSc's LNAMD, ``radii``), which lets a defect larger than a patch be seen as one; scores of every layer and
radius are averaged. No normal image and no text are needed.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .base import AnomalyMethod


def aggregate_neighbours(tokens: torch.Tensor, grid: tuple[int, int], radius: int) -> torch.Tensor:
    """``(N, P, D)`` tokens averaged over their ``radius x radius`` grid neighbourhood (edges: real neighbours
    only); radius 1 returns them unchanged."""
    if radius == 1:
        return tokens
    if radius < 1 or radius % 2 == 0:
        raise ValueError(f"radius={radius}: use odd sizes such as 1, 3, 5")
    n, p, d = tokens.shape
    x = tokens.transpose(1, 2).reshape(n, d, *grid)
    x = F.avg_pool2d(x, radius, stride=1, padding=radius // 2, count_include_pad=False)
    return x.reshape(n, d, p).transpose(1, 2)


def mutual_scores(tokens: torch.Tensor, fraction: float = 0.3, chunk: int = 8) -> torch.Tensor:
    """``(N, P)`` scores of ``(N, P, D)`` tokens by mutual scoring (see the module docstring)."""
    n, p, d = tokens.shape
    if n < 2:
        raise ValueError(f"mutual scoring needs at least 2 test images, got {n}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} must be in (0, 1]")
    x = F.normalize(tokens.float(), dim=-1)
    flat = x.reshape(n * p, d)
    keep = max(1, math.ceil(fraction * (n - 1)))
    out = []
    for start in range(0, n, chunk):
        block = x[start: start + chunk]  # (b, P, D)
        b = len(block)
        nearest = (block.reshape(b * p, d) @ flat.T).reshape(b, p, n, p).amax(-1)  # (b, P, N) best match per image
        dist = 1.0 - nearest
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
    """

    zero_shot = True

    def __init__(self, layers: Sequence[int | str] = (-3, -2, -1), radii: Sequence[int] = (1, 3),
                 fraction: float = 0.1, sigma: float = 4.0, image_score: str = "top10"):
        super().__init__(sigma=sigma, image_score=image_score)
        if not layers or not radii:
            raise ValueError("layers and radii must each name at least one value")
        self.layers, self.radii, self.fraction = tuple(layers), tuple(int(r) for r in radii), float(fraction)

    def patch_scores(self, test) -> torch.Tensor:
        total = 0.0
        for layer in self.layers:
            tokens = test.tokens(layer)
            for r in self.radii:
                total = total + mutual_scores(aggregate_neighbours(tokens, test.grid, r), self.fraction)
        return total / (len(self.layers) * len(self.radii))

    def options(self) -> dict:
        return {"layers": list(self.layers), "radii": list(self.radii), "fraction": self.fraction,
                **super().options()}

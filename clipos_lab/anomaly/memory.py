"""Few-shot patch memory: a test patch is as anomalous as it is far from every patch of k normal images.

The training-free few-shot branch of WinCLIP+ and APRIL-GAN and, with a coreset, PatchCore: keep the patch
tokens of the k normal shots, and score each test patch by its cosine distance to its nearest memory patch
(optionally the mean over its ``neighbours`` nearest). With several layers, the distances are averaged.

``coreset`` keeps only that fraction of each layer's memory, chosen by PatchCore's greedy k-center selection
(Roth et al., CVPR 2022): start from a random patch, then repeatedly add the patch farthest from those already
kept, on a random projection to 128 dimensions. Nearest-patch search then costs that fraction; the kept
patches still cover every normal patch within the largest remaining gap.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..methods.base import NotFittedError
from .base import AnomalyMethod


def nearest_distance(queries: torch.Tensor, memory: torch.Tensor, neighbours: int = 1,
                     chunk: int = 4096) -> torch.Tensor:
    """Cosine distance of each query ``(Q, D)`` to its nearest ``neighbours`` rows of ``memory`` ``(M, D)``
    (mean over them), in chunks so the ``Q x M`` similarity matrix never has to fit at once."""
    if neighbours < 1 or neighbours > len(memory):
        raise ValueError(f"neighbours={neighbours}: must be between 1 and the memory size {len(memory)}")
    q, m = F.normalize(queries.float(), dim=-1), F.normalize(memory.float(), dim=-1)
    out = []
    for start in range(0, len(q), chunk):
        sims = q[start: start + chunk] @ m.T
        out.append(1.0 - sims.topk(neighbours, dim=1).values.mean(1))
    return torch.cat(out)


def greedy_coreset(features: torch.Tensor, n: int, seed: int = 0, projection_dim: int = 128) -> torch.Tensor:
    """Indices of ``n`` rows of ``features`` ``(M, D)`` by greedy k-center selection (PatchCore's coreset)."""
    m = len(features)
    if not 1 <= n <= m:
        raise ValueError(f"coreset of {n} rows from a memory of {m}: choose 1..{m}")
    gen = torch.Generator().manual_seed(int(seed))
    x = features.float()
    if projection_dim and x.shape[1] > projection_dim:
        x = x @ (torch.randn(x.shape[1], projection_dim, generator=gen) / math.sqrt(projection_dim))
    chosen = [int(torch.randint(m, (1,), generator=gen))]
    gap = ((x - x[chosen[0]]) ** 2).sum(1)
    for _ in range(n - 1):
        i = int(gap.argmax())
        chosen.append(i)
        gap = torch.minimum(gap, ((x - x[i]) ** 2).sum(1))
    return torch.tensor(chosen, dtype=torch.long)


class PatchMemory(AnomalyMethod):
    """Nearest-normal-patch distance. ``layers``: token layers (1-based blocks, ``-1`` last, ``"surgery"``).

    Defaults chosen on the validation split of the pocket defect world at 4 shots
    (``benchmarks/anomaly_tune.py``, ``benchmarks/results/anomaly-tuning.txt``): the last three blocks (middle
    blocks keep small defects visible), one neighbour, a blur of 8 px at 224 px, image score = mean of the top
    10% of patches.
    """

    def __init__(self, layers: Sequence[int | str] = (-3, -2, -1), neighbours: int = 1, sigma: float = 8.0,
                 image_score: str = "top10", coreset: float | None = None, coreset_seed: int = 0):
        super().__init__(sigma=sigma, image_score=image_score)
        if not layers:
            raise ValueError("layers is empty: name at least one token layer")
        if coreset is not None and not 0 < float(coreset) <= 1:
            raise ValueError(f"coreset={coreset}: give the fraction of the memory to keep, in (0, 1], or null")
        self.layers, self.neighbours = tuple(layers), int(neighbours)
        self.coreset, self.coreset_seed = None if coreset is None else float(coreset), int(coreset_seed)
        self.memory: dict = {}

    def fit(self, normal, backbone=None, category: str = "") -> "PatchMemory":
        if normal is None or len(normal) == 0:
            raise ValueError("PatchMemory needs normal images to fit (shots >= 1)")
        self.memory = {layer: normal.tokens(layer).flatten(0, 1) for layer in self.layers}
        if self.coreset is not None:
            for layer, memory in self.memory.items():
                n = max(self.neighbours, math.ceil(self.coreset * len(memory)))
                keep = greedy_coreset(F.normalize(memory.float(), dim=-1), n, self.coreset_seed)
                self.memory[layer] = memory[keep]
        return self

    def patch_scores(self, test) -> torch.Tensor:
        if not self.memory:
            raise NotFittedError("PatchMemory.score before fit: fit it on normal images first")
        total = 0.0
        for layer, memory in self.memory.items():
            tokens = test.tokens(layer)
            n, p, d = tokens.shape
            total = total + nearest_distance(tokens.reshape(-1, d), memory, self.neighbours).reshape(n, p)
        return total / len(self.memory)

    def options(self) -> dict:
        return {"layers": list(self.layers), "neighbours": self.neighbours, "coreset": self.coreset,
                "coreset_seed": self.coreset_seed, **super().options()}


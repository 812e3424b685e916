"""RsCIN, MuSc's image-level re-scoring: an image's score is smoothed with those of the images most like it.

From MuSc (Li et al., ICLR 2024; ``xrli-U/MuSc``, ``models/modules/_RsCIN.py``). Image scores are first scaled
to [0, 1] over the test set. ``W = E E^T`` are the cosine similarities of the images' global embeddings. For each
``k`` of ``ks``, each row of ``W`` keeps its ``k`` largest entries (the image itself is one of them) and is
divided by their sum; the new score is that weighted mean of the scaled scores. The results of all ``k`` are
averaged. ``k = 1`` returns the scaled score; MuSc uses ``ks = (1, 2, 3)`` on MVTec-AD and ``(1, 8, 9)`` on VisA.
Why it helps: a defect that is faint in one view is rarely faint in every near-identical view of the product,
and a normal image whose score is high by chance is pulled down by its normal look-alikes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def rscin(scores: np.ndarray, embeddings: torch.Tensor, ks: Sequence[int] = (1, 2, 3)) -> np.ndarray:
    """Re-scored ``(N,)`` image scores from ``scores`` ``(N,)`` and global embeddings ``(N, D)``."""
    ks = [int(k) for k in ks]
    n = len(scores)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"rscin ks={ks}: give neighbour counts >= 1, e.g. [1, 2, 3]")
    if len(embeddings) != n:
        raise ValueError(f"rscin: {n} scores but {len(embeddings)} embeddings")
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    span = s.max() - s.min()
    s = (s - s.min()) / span if span > 0 else torch.zeros_like(s)
    e = F.normalize(embeddings.double(), dim=-1)
    sims = e @ e.T
    out = torch.zeros(n, dtype=torch.float64)
    for k in ks:
        k = min(k, n)
        top = sims.topk(k, dim=1)
        weights = torch.zeros_like(sims).scatter_(1, top.indices, top.values)
        out += (weights @ s) / weights.sum(1)
    return (out / len(ks)).numpy().astype(np.float32)

"""NegLabel's negative mining (Jiang et al., ICLR 2024), as pure tensor functions.

Reference: ``mmcls/models/classifiers/multi_modal.py`` of XueJiang16/NegLabel (commit 3253db68). Every candidate
word's distance to the ID labels is the ``q``-quantile (``torch.quantile``, linear interpolation; q = 0.95) of its
cosine similarities to the K ID label embeddings. Nouns and adjectives are ranked separately, ascending (far
from the ID labels first), and the first ``int(n * ratio)`` of each are kept (ratio 0.15). The kept nouns come
first, then the kept adjectives. CSP adds one rule (``exclude_above``): a candidate whose *largest* similarity
to an ID label exceeds 0.95 gets distance 1, i.e. is ranked last.

Ties in the ranking keep the lower candidate index first (a stable sort); the reference's ``torch.argsort`` does
not specify the order of ties.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def percentile_similarity(candidates: torch.Tensor, id_labels: torch.Tensor, q: float = 0.95,
                          exclude_above: float | None = None, chunk: int = 1000) -> torch.Tensor:
    """``(M,)`` the ``q``-quantile over ID labels of each candidate's cosine similarity (both sides are
    normalised here). ``exclude_above``: candidates with a maximum similarity above it get 1.0 (CSP)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"percentile q={q} must be between 0 and 1")
    pos = F.normalize(id_labels.float(), dim=-1)
    out = []
    for start in range(0, len(candidates), chunk):
        sim = F.normalize(candidates[start: start + chunk].float(), dim=-1) @ pos.T
        value = torch.quantile(sim, q=q, dim=-1)
        if exclude_above is not None:
            value[sim.max(dim=-1).values > exclude_above] = 1.0
        out.append(value)
    return torch.cat(out) if out else torch.empty(0, device=id_labels.device)


def mine_negatives(distance: torch.Tensor, is_adjective: torch.Tensor, ratio: float = 0.15) -> torch.Tensor:
    """Indices of the mined negatives: per part of speech the ``int(n * ratio)`` candidates of smallest
    ``distance`` (ascending, stable), nouns first then adjectives."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio={ratio} must be in (0, 1] (the share of each part of speech kept)")
    is_adjective = is_adjective.to(distance.device, torch.bool)
    picked = []
    for mask in (~is_adjective, is_adjective):
        idx = mask.nonzero().flatten()
        order = torch.sort(distance[idx], stable=True).indices
        picked.append(idx[order[: int(len(idx) * ratio)]])
    return torch.cat(picked)


def mine_fixed_count(distance: torch.Tensor, is_adjective: torch.Tensor, total: int) -> torch.Tensor:
    """AdaNeg's variant: ``total`` negatives split between parts of speech in proportion to their candidate
    counts (``n_adj = int(total * A / (A + N))``, nouns get the rest), each the smallest ``distance`` first;
    adjectives first, then nouns (the reference's order)."""
    is_adjective = is_adjective.to(distance.device, torch.bool)
    n_adj_all = int(is_adjective.sum())
    n_adj = int(total * (n_adj_all / max(len(distance), 1)))
    picked = []
    for mask, count in ((is_adjective, n_adj), (~is_adjective, total - n_adj)):
        idx = mask.nonzero().flatten()
        order = torch.sort(distance[idx], stable=True).indices
        picked.append(idx[order[:count]])
    return torch.cat(picked)


def sorted_index_similarity(candidates: torch.Tensor, id_labels: torch.Tensor, q: float = 0.95,
                            chunk: int = 1000) -> torch.Tensor:
    """AdaNeg's percentile: the similarity at index ``int(K * q)`` of the ascending sorted similarities (no
    interpolation), for :func:`mine_fixed_count`."""
    pos = F.normalize(id_labels.float(), dim=-1)
    k = min(int(pos.shape[0] * q), pos.shape[0] - 1)
    out = [torch.sort(F.normalize(candidates[s: s + chunk].float(), dim=-1) @ pos.T, dim=-1).values[:, k]
           for s in range(0, len(candidates), chunk)]
    return torch.cat(out) if out else torch.empty(0, device=id_labels.device)

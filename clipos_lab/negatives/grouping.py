"""The grouped ID-share score of NegLabel, CSP and AdaNeg, as a pure tensor function.

With ID logits ``s_k`` (K) and negative logits ``n_j`` (M), the score is the softmax mass on the ID labels,
``S = sum_k e^{s_k} / (sum_k e^{s_k} + sum_j e^{n_j})``. The references split the negatives into ``G`` groups
and average the per-group scores ("grouping"): the last ``M mod G`` negatives are dropped, the rest permuted by
``torch.randperm`` under seed 0 (the same permutation for every batch) and cut into G contiguous blocks.

Each group's score is computed in closed form, ``sigmoid(logsumexp(s) - logsumexp(n_g))``, which is the
softmax sum of the references without materialising the ``K + M/G`` softmax per group.
"""

from __future__ import annotations

import torch


def group_permutation(n_negatives: int, n_groups: int, permute: bool = True, seed: int = 0,
                      device: str = "cpu") -> torch.Tensor:
    """Column order of the kept negatives: the first ``n - n mod G`` indices, permuted as the references do
    (``torch.manual_seed(seed); torch.randperm(n)``). AdaNeg's reference draws on the CPU generator (the default
    here); NegLabel's and CSP's on the GPU's: ``device="cuda"`` draws there (same seed, same generator), so a
    GPU run reproduces their groups exactly."""
    if n_groups < 1:
        raise ValueError(f"n_groups={n_groups} must be at least 1")
    keep = n_negatives - n_negatives % n_groups
    if keep < n_groups:
        raise ValueError(f"{n_negatives} negative labels cannot fill {n_groups} groups: mine more or use fewer groups")
    if not permute:
        return torch.arange(keep)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randperm(keep, generator=gen, device=device).cpu()


def grouped_id_score(pos_logits: torch.Tensor, neg_logits: torch.Tensor, n_groups: int = 1,
                     permutation: torch.Tensor | None = None, n_fuse: int | None = None) -> torch.Tensor:
    """``(B,)`` mean over groups of the softmax mass on the ID labels.

    ``pos_logits`` (B, K) and ``neg_logits`` (B, M) are already scaled (e.g. 100 x cosine). ``permutation``
    (from :func:`group_permutation`) orders the kept negatives; None keeps the first ``M - M mod G`` in order.
    ``n_fuse`` reproduces the references' ``group_fuse_num``: only the first ``n_fuse - 1`` groups are averaged.
    With ``n_groups=1`` this is the plain score over all negatives.
    """
    if pos_logits.dim() != 2 or neg_logits.dim() != 2 or len(pos_logits) != len(neg_logits):
        raise ValueError(f"pos_logits (B, K) and neg_logits (B, M) expected, got {tuple(pos_logits.shape)} and "
                         f"{tuple(neg_logits.shape)}")
    if permutation is None:
        permutation = group_permutation(neg_logits.shape[1], n_groups, permute=False)
    if len(permutation) % n_groups:
        raise ValueError(f"the permutation has {len(permutation)} columns, not a multiple of {n_groups} groups")
    neg = neg_logits[:, permutation.to(neg_logits.device)].reshape(len(neg_logits), n_groups, -1)
    pos_lse = torch.logsumexp(pos_logits.float(), dim=-1, keepdim=True)  # (B, 1)
    neg_lse = torch.logsumexp(neg.float(), dim=-1)  # (B, G)
    scores = torch.sigmoid(pos_lse - neg_lse)
    if n_fuse is not None:
        scores = scores[:, : max(int(n_fuse) - 1, 0)]
    return scores.mean(-1)

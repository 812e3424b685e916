"""AdaNeg's test-time memory of proxies (Zhang & Zhang, NeurIPS 2024), as tensors and one step function.

Reference: ``openood/postprocessors/ttaprompt_postprocessor.py`` (``TTAPromptPostprocessor_noadagap``, the class
``scripts/ood/adaneg/imagenet.sh`` runs; ``TTAPromptPostprocessor`` for the adaptive gap) of YBZh/OpenOOD-VLM
(commit 804f3310). For each label (K ID + M negative) the memory holds the label's text embedding in slot 0 and
up to ``length - 1`` test features (the reference counts filled slots from 1 and calls a label full at
``length``, so its last slot stays zero). Per batch, in order:

1. **vanilla score** ``S_v``: the grouped ID share (:mod:`.grouping`) of the logits ``scale x cos`` to the labels;
2. **caching**: images with ``S_v > thres + gap (1 - thres)`` are written, one after the other, to the memory of
   their top ID label; images with ``S_v < thres - gap thres`` to that of their top negative label. Into a full
   memory, an image goes only if its entropy (softmax over the ID, resp. negative, logits; ``-sum p log(p + 1e-8)``)
   is below some cached entropy, replacing the cached feature of largest entropy (ties: the higher slot);
3. **proxies**: task-adaptive, the normalised mean of a label's memory; sample-adaptive (``samada``), per image
   the normalised sum of the memory weighted by ``exp(-beta (1 - cos))`` (``beta = int(5.5) = 5`` in the
   reference, which casts it to int);
4. **score** ``S_a``: the grouped ID share of the logits ``scale x cos`` to the proxies; the reported score is
   ``S_a + lambda S_v`` (``in_score="combine"``).

With ``gap="adaptive"`` the thresholds follow the share of ID pseudo-labels among the last 10,000 confident
images (window seeded with 100 of each), as the reference's ``TTAPromptPostprocessor`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .grouping import grouped_id_score

SCORE_MODES = ("combine", "adaonly", "vanillaonly", "multiply")
GAP_MODES = ("fixed", "adaptive")
WINDOW = 10_000


@dataclass
class ProxyMemory:
    """Per label: slot 0 = its text embedding (never rewritten), then cached test features and their entropies."""

    features: torch.Tensor  # (C, length + 1, D)
    entropy: torch.Tensor   # (C, length + 1)
    filled: torch.Tensor    # (C,) next slot to write (starts at 1)
    length: int
    recent: list = field(default_factory=list)  # adaptive gap: pseudo-labels 1 (ID) / 0 (OOD), oldest first
    text_gram: torch.Tensor | None = None  # (C,) slot 0's squared norm, as the memory's Gram matrix computes it

    @classmethod
    def new(cls, text: torch.Tensor, length: int = 10) -> "ProxyMemory":
        if length < 1:
            raise ValueError(f"memory length={length} must be at least 1")
        feats = torch.zeros(text.shape[0], length + 1, text.shape[1], device=text.device)
        feats[:, 0] = text.float()
        # from the same batched product as proxy_logits' full path, so that a label holding only its text gets
        # the bits that path gives it (a 1 x 1 product rounds differently)
        gram = torch.bmm(feats, feats.transpose(1, 2))[:, 0, 0]
        return cls(feats, torch.zeros(text.shape[0], length + 1, device=text.device),
                   torch.ones(text.shape[0], dtype=torch.long), int(length), [1, 0] * 100, gram)

    def put(self, label: int, feature: torch.Tensor, entropy: float) -> None:
        """Cache one feature under ``label`` (the reference's rule, see the module docstring)."""
        slot = int(self.filled[label])
        if slot == self.length:
            cached = self.entropy[label]
            if not bool((entropy < cached).any()):
                return
            slot = int(torch.sort(cached, stable=True).indices[-1])
        else:
            self.filled[label] += 1
        self.features[label, slot] = feature
        self.entropy[label, slot] = entropy


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    p = logits.float().softmax(-1)
    return -(p * torch.log(p + 1e-8)).sum(-1)


def thresholds(memory: ProxyMemory, conf: torch.Tensor, thres: float, gap: float, mode: str) -> tuple[float, float]:
    """(ID threshold, OOD threshold) for this batch; ``adaptive`` first records the batch's confident images."""
    high, low = thres + gap * (1 - thres), thres - gap * thres
    if mode == "fixed":
        return high, low
    for label in [1] * int((conf > high).sum()) + [0] * int((conf < low).sum()):
        if len(memory.recent) >= WINDOW:
            memory.recent.pop(0)
        memory.recent.append(label)
    ratio = sum(memory.recent) / len(memory.recent)
    if ratio > 0.5:
        return high, thres - ratio * thres
    if ratio < 0.5:
        return thres + (1 - ratio) * (1 - thres), low
    return high, low


def update_memory(memory: ProxyMemory, images: torch.Tensor, logits: torch.Tensor, n_id: int,
                  id_mask: torch.Tensor, ood_mask: torch.Tensor) -> None:
    """Write the confident images of a batch: all ID ones first, then all OOD ones, each in batch order."""
    pos, neg = logits[:, :n_id], logits[:, n_id:]
    for mask, part, offset in ((id_mask, pos, 0), (ood_mask, neg, n_id)):
        rows = mask.nonzero().flatten().tolist()
        if not rows:
            continue
        labels = (part[rows].argmax(-1) + offset).tolist()
        ent = entropy_of(part[rows]).tolist()
        for r, c, e in zip(rows, labels, ent):
            memory.put(c, images[r].float(), e)


# bytes of one (labels x slots x images) temporary of proxy_logits: below glibc's threshold for mapping a block on
# its own (4 MiB, evaluation/memory.py), temporaries are reused from the heap instead of being mapped and faulted
# in at every step; 0.32 -> 0.21 s per 256-image step for 10,043 labels on one thread, the same bits
# (benchmarks/results/adaneg_chunk.txt)
TEMP_BYTES = 2 << 20
TEXT_CHUNK = 2048  # labels per piece of proxy_logits' text-only path: (2,048 x 256-image) temporaries, 2 MiB


def proxy_logits(memory: ProxyMemory, images: torch.Tensor, scale: float, samada: bool, beta: float,
                 chunk: int | None = None) -> torch.Tensor:
    """``(B, C)`` logits ``scale x cos(image, proxy)``. The sample-adaptive proxy's norm comes from the memory's
    Gram matrix, so no ``(B, C, D)`` tensor is built (the reference builds it in 1,000-label pieces). Labels go
    ``chunk`` at a time (default: as many as keep a temporary within :data:`TEMP_BYTES`).

    Most labels (nearly all of the 10,000 negatives) hold only their text embedding. Their empty slots add exact
    zeros to every sum, so only slot 0 is computed for them (:func:`_text_only_logits`): the same bits as the
    full product, one slot's products instead of eleven (5.3x faster per step: ``benchmarks/adaneg_chunk.py``)."""
    images = images.float()
    n_labels, slots = memory.features.shape[:2]
    if chunk is None:
        chunk = max(1, TEMP_BYTES // (4 * slots * max(1, len(images))))
    if not samada:
        return torch.cat([scale * images @ F.normalize(memory.features[s: s + chunk].mean(1), dim=-1).T
                          for s in range(0, n_labels, chunk)], dim=1)
    out = images.new_empty(len(images), n_labels)
    holds = torch.linalg.vector_norm(memory.features[:, 1:], dim=(1, 2)) > 0  # labels with cached features
    if memory.text_gram is None:  # a memory built by hand, without slot 0's norms: the full path for all
        holds[:] = True
    for rows in holds.nonzero().flatten().split(chunk):
        if len(rows):
            out[:, rows] = _sample_adaptive_logits(memory.features[rows], images, scale, beta)
    for rows in (~holds).nonzero().flatten().split(TEXT_CHUNK):
        if len(rows):
            out[:, rows] = _text_only_logits(memory.features[rows, 0], memory.text_gram[rows], images, scale, beta)
    return out


def _sample_adaptive_logits(mem: torch.Tensor, images: torch.Tensor, scale: float, beta: float) -> torch.Tensor:
    """``(B, c)`` logits to the sample-adaptive proxies of memories ``mem`` ``(c, L, D)``."""
    sim = torch.einsum("cld,bd->clb", mem, images)
    w = torch.exp(-beta * (1.0 - sim))
    gram = torch.bmm(mem, mem.transpose(1, 2))  # (c, L, L)
    num = (w * sim).sum(1)  # (c, B)
    # w^T G w per (label, image) as two batched products: a three-operand einsum here was contracted through a
    # (c, L, B, L) intermediate, gigabytes for 10,000 labels
    den = (w * torch.bmm(gram, w)).sum(1).clamp_min(1e-24).sqrt()
    return scale * (num / den).T


def _text_only_logits(text: torch.Tensor, gram: torch.Tensor, images: torch.Tensor, scale: float,
                      beta: float) -> torch.Tensor:
    """``(B, c)``: :func:`_sample_adaptive_logits` of memories holding only ``text`` ``(c, D)``, whose squared norms
    ``gram`` come from the full Gram product: ``w s / sqrt(w g w)``, ``s`` the image-text cosine, ``w = exp(-beta
    (1 - s))``. The cosines go through the same einsum as the full path's slot 0 (same bits)."""
    sim = torch.einsum("cld,bd->clb", text[:, None], images)[:, 0]  # (c, B)
    w = torch.exp(-beta * (1.0 - sim))
    return scale * (w * sim / (w * (gram[:, None] * w)).clamp_min(1e-24).sqrt()).T


def adaneg_step(memory: ProxyMemory, images: torch.Tensor, text: torch.Tensor, n_id: int, scale: float,
                permutation: torch.Tensor, n_groups: int = 5, thres: float = 0.5, gap: float = 0.5,
                lambda_: float = 0.1, beta: float = 5.0, samada: bool = True, in_score: str = "combine",
                gap_mode: str = "fixed") -> dict[str, torch.Tensor]:
    """Score one test batch and update ``memory`` with it (the update comes first, as in the reference).

    ``images`` (B, D) and ``text`` (K + M, D) are normalised features. Returns the batch's ``score`` (per
    ``in_score``), the vanilla and adaptive scores, and ``pred`` (argmax of ``p_vanilla + lambda p_adaptive``
    over the ID labels, the reference's prediction).
    """
    if in_score not in SCORE_MODES:
        raise ValueError(f"in_score={in_score!r}: choose one of {', '.join(SCORE_MODES)}")
    if gap_mode not in GAP_MODES:
        raise ValueError(f"gap={gap_mode!r}: choose one of {', '.join(GAP_MODES)}")
    images = images.float()
    vanilla_logits = scale * images @ text.float().T
    vanilla = grouped_id_score(vanilla_logits[:, :n_id], vanilla_logits[:, n_id:], n_groups, permutation)
    high, low = thresholds(memory, vanilla, thres, gap, gap_mode)
    update_memory(memory, images, vanilla_logits, n_id, vanilla > high, vanilla < low)
    logits = proxy_logits(memory, images, scale, samada, beta)
    adaptive = grouped_id_score(logits[:, :n_id], logits[:, n_id:], n_groups, permutation)
    score = {"combine": adaptive + lambda_ * vanilla, "adaonly": adaptive, "vanillaonly": vanilla,
             "multiply": adaptive * vanilla}[in_score]
    prob = vanilla_logits.softmax(-1) + lambda_ * logits.softmax(-1)
    return {"score": score, "vanilla": vanilla, "adaptive": adaptive, "pred": prob[:, :n_id].argmax(-1)}

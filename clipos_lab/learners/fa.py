"""FA: forced prompt learning (ICCV 2025), its logits, loss, scores and training loop on cached features.

Reference: ``model.py`` and ``main.py`` of 0xFAFA/FA (commit 9cf7f88c). One CoOp prompt (context initialised
from ``"a photo of a"``, so CoOp's parameter count) is learned next to the frozen prompts
``"a photo of a {class}."``. The classifier's logits are ``100 x cos`` to ``[learned (C), frozen (C) x K]``
(the frozen block repeated ``K`` times; ``K = 3`` in the reference config): cross-entropy with the learned
prompt of the true class as target *forces* the learned prompt to beat the frozen one, weighted K times.

Scores (the reference's ``main.py``): MCM, the maximum softmax over all ``(1 + K) C`` logits at temperature 1
over cosines, and GL-MCM, MCM plus the same maximum over every local feature. The class prediction is the argmax
of the learned block. Training: SGD (lr 0.002, momentum 0.9, weight decay 5e-4), batch 160, 50 epochs, cosine
schedule stepped every batch, no warm-up. The reference augments images (random crops, flips, jitter); on
cached features there is one view per image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..clipos.prompts import PromptLearner


def forced_logits(features: torch.Tensor, learned: torch.Tensor, frozen: torch.Tensor, k: int,
                  scale: float) -> torch.Tensor:
    """``(..., (1 + K) C)``: ``scale x cos`` to the learned prompts, then to the frozen ones K times (K = 0:
    the learned block only, which is CoOp)."""
    if k < 0:
        raise ValueError(f"K={k} must be 0 or more")
    f = F.normalize(features.float(), dim=-1)
    learned_logits = scale * f @ F.normalize(learned.float(), dim=-1).T
    if k == 0:
        return learned_logits
    frozen_logits = scale * f @ F.normalize(frozen.float(), dim=-1).T
    return torch.cat([learned_logits] + [frozen_logits] * k, dim=-1)


def forced_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over all ``(1 + K) C`` logits; the target is the true class's *learned* prompt."""
    return F.cross_entropy(logits, labels.long())


def forced_mcm(features: torch.Tensor, learned: torch.Tensor, frozen: torch.Tensor, k: int,
               temperature: float = 1.0) -> torch.Tensor:
    """Max softmax over the ``(1 + K) C`` cosines / ``temperature`` (``(N,)`` for ``(N, D)``, ``(N, P)`` for
    local features ``(N, P, D)``)."""
    return forced_logits(features, learned, frozen, k, 1.0 / temperature).softmax(-1).amax(-1)


def train_forced(learner: PromptLearner, frozen: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                 k: int = 3, epochs: int = 50, batch_size: int = 160, lr: float = 0.002, momentum: float = 0.9,
                 weight_decay: float = 5e-4, seed: int = 0, progress: bool = False) -> list[dict]:
    """The reference's loop on cached features: shuffled batches (the last may be short), one SGD step each,
    ``CosineAnnealingLR(T_max = epochs x batches)`` stepped per batch. Returns one history row per step."""
    device = learner.ctx.device
    feats, labels = F.normalize(features.to(device).float(), dim=-1), labels.to(device).long()
    n = len(feats)
    if n == 0:
        raise ValueError("FA needs at least one few-shot feature to train on")
    steps = math.ceil(n / batch_size)
    params = [p for p in learner.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=epochs * steps)
    rng = np.random.default_rng(seed)
    scale = learner.backbone.logit_scale
    frozen = frozen.to(device)
    history = []
    for epoch in tqdm(range(epochs), disable=not progress, desc="FA", leave=False):
        order = torch.as_tensor(rng.permutation(n), device=device)
        for step in range(steps):
            idx = order[step * batch_size: (step + 1) * batch_size]
            logits = forced_logits(feats[idx], learner(), frozen, k, scale)
            loss = forced_loss(logits, labels[idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            history.append({"epoch": epoch, "step": len(history), "loss": loss.item(), "lr": sched.get_last_lr()[0]})
    return history

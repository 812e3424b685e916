"""Learnable prompts (CoOp-style context, optional *unknown* class) trained on cached features only.

The prompt of class k is ``[SOS] ctx_1 ... ctx_n  <class name tokens> . [EOS]``: the ``n_ctx`` context vectors
are shared by all classes and are the only trainable word embeddings. With ``unknown=True`` one more prompt,
``ctx_1 ... ctx_n  u .``, has a learnable token ``u`` and becomes class K + 1. Both towers stay frozen; only
the prompt parameters get gradients, and the image side is read from a FeatureBank, so training never runs the
image encoder.

The loss (CLIP-OS stage 3, ``docs/method.md`` section 3): cross-entropy of ID features to their class; ``beta`` x
cross-entropy of synthesised outliers to *unknown*; ``gamma`` x LoCoOp's entropy maximisation over the ID
classes on ID-irrelevant patches. CoOp is ``beta = gamma = 0`` without unknown; LoCoOp is CoOp with ``gamma``.

ID-irrelevant patches come either as a fixed set chosen before training (``TrainingData.irrelevant_patches``,
sampled each step) or, as LoCoOp's reference does, from a per-step hook (``TrainingData.local_entropy``, e.g.
:func:`locoop_entropy`) that selects them among the batch's local features with the *current* prompts.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..files import save_safetensors
from ..threads import threaded

PLACEHOLDER = "X"
# "per-step": the cosine over every optimiser step, continued after a warm-up (this project's default);
# "dassl": CoOp's / LoCoOp's trainer (Dassl): constant warm-up epochs, then a cosine over `epochs` that restarts
# at the end of the warm-up (WARMUP_RECOUNT) and steps once per epoch
SCHEDULES = ("per-step", "dassl")


def learning_rate(cfg: "PromptConfig", epoch: int, epochs: int) -> float:
    """The "dassl" schedule's learning rate during ``epoch`` (0-based) of ``epochs``.

    Dassl builds ``CosineAnnealingLR(T_max=epochs)`` and wraps it in a constant warm-up of ``warmup_epochs``;
    with ``WARMUP_RECOUNT`` (its default) the cosine's epoch counter starts at 0 when the warm-up ends, and the
    trainer steps the scheduler once per epoch. So epoch ``e`` trains at ``warmup_lr`` while ``e < w`` and at
    ``lr (1 + cos(pi (e - w) / epochs)) / 2`` after (``w`` = warm-up epochs): the cosine never reaches 0.
    """
    warm = min(max(int(cfg.warmup_epochs), 0), epochs)
    if epoch < warm:
        return float(cfg.warmup_lr)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * (epoch - warm) / epochs))


@dataclass
class PromptConfig:
    """Prompt-learning hyper-parameters; defaults follow LoCoOp's ViT-B/16 config where CLIP-OS is silent."""

    n_ctx: int = 4  # chosen on the validation split (16, LoCoOp's ViT-B/16 value, lost 0.35-3.5 AUROC points there)
    ctx_init: str = "a photo of a"
    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    min_steps: int = 0  # few-shot sets of a handful of images give one step per epoch; this sets a floor
    warmup_epochs: int = 0  # epochs at the constant warmup_lr before the cosine schedule (CoOp/LoCoOp configs: 1)
    warmup_lr: float = 1e-5
    schedule: str = "per-step"  # how the cosine runs: see SCHEDULES and learning_rate
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        """Refuse values that would train nothing (yet still label results CoOp) or fail deep inside training."""
        whole = {"n_ctx": 1, "epochs": 1, "batch_size": 1, "min_steps": 0, "seed": 0}
        bad = [f"{k}={getattr(self, k)!r} (a whole number >= {low})" for k, low in whole.items()
               if isinstance(getattr(self, k), bool) or not isinstance(getattr(self, k), (int, np.integer))
               or getattr(self, k) < low]
        for k in ("lr", "momentum", "weight_decay"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                    or (k == "lr" and v == 0) or (k == "momentum" and v >= 1):
                bad.append(f"{k}={v!r} ({'> 0' if k == 'lr' else '0 to 1' if k == 'momentum' else '>= 0'})")
        if self.schedule not in SCHEDULES:
            bad.append(f"schedule={self.schedule!r} (one of {', '.join(SCHEDULES)})")
        if bad:
            raise ValueError(f"PromptConfig: {', '.join(bad)}")


    @classmethod
    def imagenet_reference(cls, **overrides) -> "PromptConfig":
        """The schedule CoOp and LoCoOp train ImageNet-1k prompts with (K = 1000, 16 shots, ViT-B/16: LoCoOp's
        ``vit_b16_ep50`` config): 16 context vectors, 50 epochs of batch 32 (25,000 steps at 16 shots), SGD lr
        0.002 with one constant warm-up epoch at 1e-5, then cosine. The pocket defaults (``PromptConfig()``)
        differ in ``n_ctx`` (4, chosen on the pocket validation split) and warm-up; see docs/scale.md."""
        reference = {"n_ctx": 16, "epochs": 50, "batch_size": 32, "lr": 0.002, "momentum": 0.9,
                     "weight_decay": 5e-4, "warmup_epochs": 1, "warmup_lr": 1e-5}
        return cls(**{**reference, **overrides})


class PromptLearner(torch.nn.Module):
    """Context vectors (+ optional unknown token) spliced into the frozen token embeddings of class prompts."""

    def __init__(self, backbone, classnames: Sequence[str], n_ctx: int = PromptConfig.n_ctx,
                 ctx_init: str = "a photo of a",
                 unknown: bool = False, seed: int = 0):
        super().__init__()
        if n_ctx < 1:
            raise ValueError(f"n_ctx={n_ctx} must be at least 1")
        self.backbone = backbone
        self.classnames = list(classnames)
        self.n_ctx = n_ctx
        self.has_unknown = unknown
        self.ctx_init = ctx_init
        placeholder = " ".join([PLACEHOLDER] * n_ctx)
        prompts = [f"{placeholder} {name}." for name in self.classnames]
        if unknown:
            prompts.append(f"{placeholder} {PLACEHOLDER}.")
        tokens = backbone.tokenize(prompts)
        eot = tokens.argmax(-1)
        period = int(backbone.tokenize(["."])[0, 1])
        truncated = tokens[torch.arange(len(tokens)), eot - 1] != period  # a cut prompt loses its final "."
        if bool(truncated.any()):
            raise ValueError(f"n_ctx={n_ctx} plus the class name {prompts[int(truncated.nonzero()[0])]!r} do not "
                             f"fit the text context of {tokens.shape[1]} tokens: use a smaller n_ctx")
        with torch.no_grad():
            embedded = backbone.token_embedding(tokens).float()
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("frozen_embeddings", embedded, persistent=False)

        gen = torch.Generator().manual_seed(seed)
        width = embedded.shape[-1]
        ctx = torch.randn(n_ctx, width, generator=gen) * 0.02
        if ctx_init:
            init_tokens = backbone.tokenize([ctx_init])[0]
            n_init = int(init_tokens.argmax()) - 1  # words between SOS and EOS
            n_use = min(n_init, n_ctx)
            with torch.no_grad():
                init_emb = backbone.token_embedding(init_tokens[None])[0, 1: 1 + n_init].float()
            ctx[n_ctx - n_use:] = init_emb[n_init - n_use:]  # the phrase sits right before the class name
        self.ctx = torch.nn.Parameter(ctx.to(embedded.device))  # drawn on the CPU: same numbers on every device
        if unknown:
            with torch.no_grad():
                word = backbone.tokenize(["unknown"])[0]
                init_u = backbone.token_embedding(word[None])[0, 1].float()
            self.unknown_token = torch.nn.Parameter(init_u.clone())

    @property
    def n_classes(self) -> int:
        return len(self.classnames) + int(self.has_unknown)

    def embeddings(self) -> torch.Tensor:
        """Token embeddings of all prompts with the learned vectors in place ``(C, L, W)``."""
        emb = self.frozen_embeddings
        ctx = self.ctx.to(emb.dtype).unsqueeze(0).expand(emb.shape[0], -1, -1)
        parts = [emb[:, :1], ctx, emb[:, 1 + self.n_ctx:]]
        out = torch.cat(parts, dim=1)
        if self.has_unknown:
            pos = 1 + self.n_ctx
            last = torch.cat([out[-1, :pos], self.unknown_token[None].to(emb.dtype), out[-1, pos + 1:]])
            out = torch.cat([out[:-1], last[None]])
        return out

    def forward(self) -> torch.Tensor:
        """Normalised class embeddings ``(C, D)``; C = K (+ 1 for unknown), unknown last."""
        return F.normalize(self.backbone.encode_text_embeddings(self.embeddings(), self.tokens).float(), dim=-1)

    # ------------------------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Save the learned vectors (safetensors) with what is needed to rebuild the prompts."""
        tensors = {"ctx": self.ctx.detach().contiguous()}
        if self.has_unknown:
            tensors["unknown_token"] = self.unknown_token.detach().contiguous()
        meta = {"classnames": json.dumps(self.classnames), "n_ctx": str(self.n_ctx), "ctx_init": self.ctx_init,
                "unknown": str(self.has_unknown), "model": self.backbone.name,
                "weights": self.backbone.weights_id, "extra": json.dumps(extra or {}, sort_keys=True)}
        save_safetensors(tensors, path, metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike, backbone) -> "PromptLearner":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        if meta.get("weights") != backbone.weights_id:
            raise ValueError(f"prompts in {path} were learned for {meta.get('model')} ({meta.get('weights')}), "
                             f"not for the given backbone {backbone.name} ({backbone.weights_id})")
        learner = cls(backbone, json.loads(meta["classnames"]), int(meta["n_ctx"]), meta["ctx_init"],
                      meta["unknown"] == "True")
        learner.load_state_dict(tensors, strict=True)
        learner.extra = json.loads(meta.get("extra", "{}"))
        return learner


@dataclass
class TrainingData:
    """What one prompt-training run sees: ID features and labels, and optional outlier / patch sources."""

    id_features: torch.Tensor                       # (N, D)
    id_labels: torch.Tensor                         # (N,)
    outliers: Callable[[int], torch.Tensor] | None = None   # epoch -> (M, D) synthesised outliers
    irrelevant_patches: torch.Tensor | None = None  # (R, D) ID-irrelevant patch features (LoCoOp term)
    # per-step LoCoOp term: (batch indices, ID text (K, D), logit scale) -> (entropy to maximise, n selected)
    local_entropy: Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, int]] | None = None
    # (A, D) ID features that must not be *unknown* (the shots' ID-relevant features where the outliers live)
    anchors: torch.Tensor | None = None
    # the learner's (C, D) class embeddings -> those the loss uses (e.g. ID rows blended with hand-written ones)
    text_transform: Callable[[torch.Tensor], torch.Tensor] | None = None


def locoop_entropy(local_features: torch.Tensor, labels: torch.Tensor, top_k: int, eps: float = 1e-5):
    """LoCoOp's per-step regulariser as its reference computes it, for :attr:`TrainingData.local_entropy`.

    For the batch's images, every local feature ``(N, P, D)`` is classified with the current prompts (softmax
    over the ID classes at the logit scale); a feature is ID-irrelevant when its image's label is not among its
    top-``top_k`` classes (exactly k, :func:`clipos_lab.clipos.relevance.inside_topk`). The term is the mean
    over the selected features of ``-sum_k p_k log(p_k + eps)`` (the reference's ``eps = 1e-5``); 0 when none
    is selected (an image may have every feature selected: none is kept back).
    """
    from .relevance import inside_topk

    feats = F.normalize(local_features.float(), dim=-1)
    labels = labels.long()
    if feats.dim() != 3 or len(feats) != len(labels):
        raise ValueError(f"local features must be (N, P, D) with one label per image, got {tuple(feats.shape)} "
                         f"and {len(labels)} labels")

    def entropy(idx: torch.Tensor, text: torch.Tensor, scale: float) -> tuple[torch.Tensor, int]:
        batch = feats[idx]  # (B, P, D)
        probs = (scale * batch @ text.T).softmax(-1)  # (B, P, K)
        k = min(max(int(top_k), 1), text.shape[0])
        with torch.no_grad():
            own = labels[idx][:, None].expand(-1, batch.shape[1])
            selected = ~inside_topk(probs, own, k)
        if not bool(selected.any()):
            return probs.sum() * 0.0, 0
        p = probs[selected]
        return -(p * (p + eps).log()).sum(-1).mean(), int(selected.sum())

    return entropy


def not_unknown_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean ``-log(1 - p(unknown))`` of ``(A, K + 1)`` logits (unknown last), in log space for stability."""
    return (torch.logsumexp(logits, dim=-1) - torch.logsumexp(logits[:, :-1], dim=-1)).mean()


def step_work(learner: PromptLearner, *args, **kwargs) -> float:
    """Multiply-adds of one step's pass of every class prompt through the text tower (sizes the thread count);
    0 (small) for a learner stand-in without a text tower."""
    work, tokens = getattr(learner.backbone, "forward_work", None), getattr(learner, "tokens", None)
    return 0.0 if work is None or tokens is None else work("text", learner.n_classes, int(tokens.argmax(-1).max()) + 1)


@threaded(step_work)
def train_prompts(learner: PromptLearner, data: TrainingData, cfg: PromptConfig, beta: float = 0.0,
                  gamma: float = 0.0, anchor_weight: float = 0.0) -> list[dict]:
    """SGD + cosine schedule over ``cfg.epochs`` (``cfg.schedule``); returns the loss history (one row per step,
    with the learning rate that step used).

    ``anchor_weight`` x :func:`not_unknown_loss` of ``data.anchors`` (needs the unknown class): the counterpart of
    the outlier term in the outliers' own region (docs/robustness.md)."""
    rng = np.random.default_rng(cfg.seed)
    params = [p for p in learner.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    n = len(data.id_features)
    if n == 0:
        raise ValueError("prompt training needs at least one ID feature")
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    total = epochs * steps_per_epoch
    warm = min(max(int(cfg.warmup_epochs), 0), epochs) * steps_per_epoch
    if cfg.schedule == "dassl":  # set by hand once per epoch below (learning_rate)
        sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 1.0)
    elif warm:
        # Dassl's constant warm-up (CoOp / LoCoOp configs): warmup_lr for the first epochs, then the cosine
        # schedule continues where it would have been without warm-up
        sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: cfg.warmup_lr / cfg.lr if s < warm else
                                                  0.5 * (1.0 + math.cos(math.pi * s / total)))
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=total)
    scale = learner.backbone.logit_scale
    device = next(learner.parameters()).device  # every tensor of the loop lives where the learner does
    feats = F.normalize(data.id_features.to(device).float(), dim=-1)
    labels = data.id_labels.to(device).long()
    n_id = len(learner.classnames)
    irrelevant = None if data.irrelevant_patches is None else \
        F.normalize(data.irrelevant_patches.to(device).float(), dim=-1)
    history: list[dict] = []
    bar = tqdm(total=total, disable=not cfg.progress, desc="prompt learning", leave=False)
    for epoch in range(epochs):
        if cfg.schedule == "dassl":
            for group in optim.param_groups:
                group["lr"] = learning_rate(cfg, epoch, epochs)
        order = rng.permutation(n)
        outliers = data.outliers(epoch) if (data.outliers is not None and beta > 0) else None
        if outliers is not None:
            outliers = outliers.to(device)
        for step in range(steps_per_epoch):
            idx = torch.as_tensor(order[step * cfg.batch_size: (step + 1) * cfg.batch_size], device=device)
            text = learner() if data.text_transform is None else data.text_transform(learner())
            logits = scale * feats[idx] @ text.T
            loss_id = F.cross_entropy(logits, labels[idx])
            loss = loss_id
            row = {"epoch": epoch, "step": len(history), "loss_id": loss_id.item()}
            if outliers is not None and len(outliers):
                pick = torch.as_tensor(rng.choice(len(outliers), size=min(len(outliers), max(len(idx), 1)),
                                                  replace=False), device=device)
                out_logits = scale * F.normalize(outliers[pick].float(), dim=-1) @ text.T
                target = torch.full((len(pick),), learner.n_classes - 1, dtype=torch.long, device=device)
                loss_out = F.cross_entropy(out_logits, target)
                loss = loss + beta * loss_out
                row["loss_outlier"] = loss_out.item()
            if data.anchors is not None and anchor_weight > 0 and learner.has_unknown:
                anchor_logits = scale * F.normalize(data.anchors.to(device).float(), dim=-1) @ text.T
                loss_anchor = not_unknown_loss(anchor_logits)
                loss = loss + anchor_weight * loss_anchor
                row["loss_anchor"] = loss_anchor.item()
            if irrelevant is not None and gamma > 0 and len(irrelevant):
                pick = torch.as_tensor(rng.choice(len(irrelevant), size=min(len(irrelevant), 256), replace=False),
                                       device=device)
                probs = (scale * irrelevant[pick] @ text[:n_id].T).softmax(-1)
                entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
                loss = loss - gamma * entropy
                row["entropy"] = entropy.item()
            if data.local_entropy is not None and gamma > 0:
                entropy, n_selected = data.local_entropy(idx, text[:n_id], scale)
                loss = loss - gamma * entropy
                row["entropy"] = float(entropy.item())
                row["n_irrelevant"] = n_selected
            optim.zero_grad(set_to_none=True)
            loss.backward()
            row["lr"] = optim.param_groups[0]["lr"]  # the rate this step was taken at
            optim.step()
            if cfg.schedule != "dassl":
                sched.step()
            row["loss"] = loss.item()
            history.append(row)
            bar.update(1)
    bar.close()
    return history


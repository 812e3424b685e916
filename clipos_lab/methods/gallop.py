"""GalLoP (Lafon et al., ECCV 2024): global and local prompts, few-shot; scores MCM and GL-MCM.

Reference MarcLafon/gallop (commit f75999e1), ``gallop/vlprompt/gallop.py``, ``scripts/run_imagenet.sh``; the
losses, scores and loop are :mod:`clipos_lab.learners.gallop`. Defaults follow the ImageNet script: 4 global and
4 local prompts initialised from ``"A photo of a"``, local top-k (5, 10, 15, 20), prompt dropout 0.75, a learned
local linear map, SGD lr 0.002, weight decay 0.01, batch 128, 50 epochs (``prompt.epochs``), cosine per epoch.
The default OOD score is GL-MCM, as in the reference (``ood_method="GL-MCM"``); local features are the bank's
value-path ``local`` tokens (the reference's are the last block's value tokens).
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..clipos.prompts import PromptConfig
from ..learners import gallop as L
from .base import Method
from .cosine import SCORE_CHUNK, check_local_tokens, local_tokens_of, wanted_local_scores


class GalLoP(Method):
    """Global prompts on the global feature, local prompts with per-prompt top-k on local features."""

    name = "GalLoP"
    default_score = "GL-MCM"
    kind = "few-shot"
    score_names = ("MCM", "GL-MCM")

    def __init__(self, prompt: PromptConfig | None = None, n_global: int = 4, n_local: int = 4,
                 topk: Sequence[int] = L.TOPK, dropout: float = 0.75, batch_size: int = 128,
                 weight_decay: float = 0.01, init: str = "A photo of a", learn_local_proj: bool = True,
                 temperature: float = 1.0, local_tokens: str = "local", seed: int = 0):
        self.prompt, self.n_global, self.n_local, self.topk = prompt, n_global, n_local, tuple(topk)
        self.dropout, self.batch_size, self.weight_decay, self.init = dropout, batch_size, weight_decay, init
        self.learn_local_proj, self.temperature, self.local_tokens, self.seed = (learn_local_proj, temperature,
                                                                                   local_tokens, seed)

    def fit(self, backbone, train=None, classnames=None) -> "GalLoP":
        check_local_tokens(self.local_tokens)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if len(self.topk) not in (1, self.n_local) or min(self.topk) < 1:
            raise ValueError(f"topk={self.topk}: one k >= 1, or one per local prompt ({self.n_local})")
        if train is None or len(train) == 0:
            raise ValueError("GalLoP needs a few-shot FeatureBank to train on")
        local = local_tokens_of(train, self.local_tokens)
        if local is None:
            raise ValueError(f"GalLoP's local prompts read the bank's {self.local_tokens!r} tokens, but the few-shot "
                             "bank has none: encode it again with FeatureBank.encode")
        cfg = self.prompt or PromptConfig()
        torch.manual_seed(self.seed)  # nothing random is drawn at init, but keep the global state predictable
        prompts = L.GalLoPPrompts(backbone, list(train.classnames), self.n_global, self.n_local, self.init,
                                  self.learn_local_proj)
        self.history_ = L.train_gallop(prompts, train.global_, local, train.labels, self.topk, self.dropout,
                                       cfg.epochs, self.batch_size, cfg.lr, cfg.momentum, self.weight_decay,
                                       self.seed, cfg.progress)
        self.prompts_, self.classnames_ = prompts, list(train.classnames)
        self.freeze(backbone)
        return self

    def freeze(self, backbone) -> None:
        with torch.no_grad():
            self.global_text_, self.local_text_ = self.prompts_.text()
        self.text_ = F.normalize(self.global_text_.mean(1), dim=-1)  # for the base class (signature, shapes)
        self.scale_ = backbone.logit_scale

    def available_scores(self, bank) -> list[str]:
        self._check_fitted()
        return wanted_local_scores(self, bank, None)

    def logits(self, features, scale=None, local=None):
        """Cosines ``(B, C, n)`` and ``(B, P, C, m)`` (``scale`` is not used: GalLoP scores cosines)."""
        text = (self.global_text_, self.local_text_)
        with torch.no_grad():
            return self.prompts_.logits(features.to(self.text_.device),
                                        None if local is None else local.to(self.text_.device), text)

    def score(self, bank, scores=None, chunk: int = SCORE_CHUNK) -> dict[str, np.ndarray]:
        self._check_fitted()
        wanted = wanted_local_scores(self, bank, scores)
        parts = {s: [] for s in wanted}
        tokens = local_tokens_of(bank, self.local_tokens) if "GL-MCM" in wanted else None
        for s in range(0, len(bank), chunk):
            g, loc = self.logits(bank.global_[s: s + chunk], local=None if tokens is None else tokens[s: s + chunk])
            out = L.gallop_scores(g, loc, self.temperature)
            for k in parts:
                parts[k].append(out[k])
        return {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}

    def predict(self, bank, chunk: int = SCORE_CHUNK) -> np.ndarray:
        """The reference's prediction: argmax of softmax(scale (global + local top-k) / 2)."""
        self._check_fitted()
        tokens = local_tokens_of(bank, self.local_tokens)
        out = []
        for s in range(0, len(bank), chunk):
            g, loc = self.logits(bank.global_[s: s + chunk], local=None if tokens is None else tokens[s: s + chunk])
            out.append(L.gallop_probs(g, loc, self.scale_, self.topk).argmax(-1).cpu())
        return torch.cat(out).numpy()

    def save(self, path) -> None:
        """The learned prompts and map (safetensors) with every option but the training config."""
        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k != "prompt"}
        self.prompts_.save(path, {"class": "GalLoP", "classnames": json.dumps(self.classnames_),
                                  "params": json.dumps(params)})

    @classmethod
    def load(cls, path, backbone) -> "GalLoP":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
        if meta.get("class") != "GalLoP":
            raise ValueError(f"{path} does not hold GalLoP prompts")
        method = cls(**json.loads(meta["params"]))
        classnames = json.loads(meta["classnames"])
        prompts = L.GalLoPPrompts(backbone, classnames, method.n_global, method.n_local, method.init,
                                  method.learn_local_proj)
        with torch.no_grad():
            prompts.global_prompts.ctx.copy_(tensors["global_ctx"])
            prompts.local_prompts.ctx.copy_(tensors["local_ctx"])
            prompts.local_proj.copy_(tensors["local_proj"])
        method.prompts_, method.classnames_ = prompts, classnames
        method.freeze(backbone)
        return method

"""FA (ICCV 2025): a forced prompt that must beat the frozen ``"a photo of a {class}."`` prompt, few-shot.

Reference 0xFAFA/FA (commit 9cf7f88c), ``model.py`` / ``main.py`` / ``configs/my_config.yaml``; the losses,
scores and loop are :mod:`clipos_lab.learners.fa`. Defaults follow the config: ``K = 3`` frozen copies, context
initialised from ``"a photo of a"`` (4 vectors, CoOp's parameter count), SGD lr 0.002, weight decay 5e-4,
batch 160, 50 epochs (``prompt.epochs``), cosine per batch. GL-MCM adds the local MCM with weight 1, as
``main.py`` does, over the bank's value-path local features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..clipos.prompts import PromptConfig, PromptLearner
from ..learners import fa as L
from .base import Method
from .cosine import SCORE_CHUNK, check_local_tokens, local_tokens_of, wanted_local_scores


class FA(Method):
    """Forced prompt learning: logits over [learned, frozen x K]; scores MCM and GL-MCM over all of them."""

    name = "FA"
    default_score = "MCM"
    kind = "few-shot"
    score_names = ("MCM", "GL-MCM")

    def __init__(self, prompt: PromptConfig | None = None, k: int = 3, batch_size: int = 160,
                 ctx_init: str = "a photo of a", temperature: float = 1.0, gl_weight: float = 1.0,
                 local_tokens: str = "local", seed: int = 0):
        self.prompt, self.k, self.batch_size, self.ctx_init = prompt, k, batch_size, ctx_init
        self.temperature, self.gl_weight, self.local_tokens, self.seed = temperature, gl_weight, local_tokens, seed

    @property
    def gl_lambda(self) -> float:
        return self.gl_weight

    def fit(self, backbone, train=None, classnames=None) -> "FA":
        if not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"k={self.k!r} must be a whole number >= 0 (0 is CoOp)")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature} must be positive")
        check_local_tokens(self.local_tokens)
        if train is None or len(train) == 0:
            raise ValueError("FA needs a few-shot FeatureBank to train on")
        cfg = self.prompt or PromptConfig()
        n_ctx = len(self.ctx_init.split()) if self.ctx_init else cfg.n_ctx  # the reference's rule
        learner = PromptLearner(backbone, list(train.classnames), n_ctx, self.ctx_init, seed=self.seed)
        with torch.no_grad():
            self.frozen_ = learner()  # the initial prompts = "a photo of a {class}."
        self.history_ = L.train_forced(learner, self.frozen_, train.global_, train.labels, self.k, cfg.epochs,
                                       self.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, self.seed,
                                       cfg.progress)
        self.learner_, self.classnames_ = learner, list(train.classnames)
        with torch.no_grad():
            self.text_ = learner()
        self.scale_ = backbone.logit_scale
        return self

    def available_scores(self, bank) -> list[str]:
        self._check_fitted()
        return wanted_local_scores(self, bank, None)

    def score(self, bank, scores=None, chunk: int = SCORE_CHUNK) -> dict[str, np.ndarray]:
        self._check_fitted()
        wanted = wanted_local_scores(self, bank, scores)
        parts = {s: [] for s in wanted}
        mcm = lambda f: L.forced_mcm(f.to(self.text_.device), self.text_, self.frozen_, self.k,  # noqa: E731
                                     self.temperature)
        for s in range(0, len(bank), chunk):
            g = mcm(bank.global_[s: s + chunk])
            if "MCM" in parts:
                parts["MCM"].append(g)
            if "GL-MCM" in parts:
                local = local_tokens_of(bank, self.local_tokens)[s: s + chunk]
                parts["GL-MCM"].append(g + self.gl_weight * mcm(local).amax(-1))
        return {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}

    def predict(self, bank, chunk: int = SCORE_CHUNK) -> np.ndarray:
        """The ID class: argmax over the learned (forced) prompts, as the reference's accuracy reads it."""
        self._check_fitted()
        out = [(F.normalize(bank.global_[s: s + chunk].to(self.text_.device).float(), dim=-1) @ self.text_.T)
               .argmax(-1).cpu() for s in range(0, len(bank), chunk)]
        return torch.cat(out).numpy()

    def save(self, path) -> None:
        """The learned context (safetensors) with every option but the training config; :meth:`load` rebuilds."""
        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k != "prompt"}
        self.learner_.save(path, extra={"class": "FA", "params": params})

    @classmethod
    def load(cls, path, backbone) -> "FA":
        learner = PromptLearner.load(path, backbone)
        if learner.extra.get("class") != "FA":
            raise ValueError(f"{path} holds {learner.extra.get('class') or 'other'} prompts, not FA's")
        method = cls(**learner.extra["params"])
        fresh = PromptLearner(backbone, learner.classnames, learner.n_ctx, learner.ctx_init)
        with torch.no_grad():
            method.frozen_, method.text_ = fresh(), learner()
        method.learner_, method.classnames_, method.scale_ = learner, learner.classnames, backbone.logit_scale
        return method


__all__ = ["FA"]

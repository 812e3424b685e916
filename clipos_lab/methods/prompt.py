"""Few-shot prompt-learning methods on cached features: CoOp, LoCoOp and CLIP-OS, through one code path.

They differ only in switches, so a comparison measures the switches and nothing else:

============  ========  ===========  ============================  ===========  =====
method        unknown   synthesis    ID-relevant rule              PUC k        gamma
============  ========  ===========  ============================  ===========  =====
CoOp          no        no           (none)                        (none)       0
LoCoOp        no        no           top-k                         1            0.25
CLIP-OS       yes       yes          surgery discrepancy           3            0
============  ========  ===========  ============================  ===========  =====

Defaults chosen on validation images only (``assets/benchmarks/world-validation.yaml`` and the validation
version of the random class splits, never on test images) with ``benchmarks/tune_defaults.py``: 4 context
vectors initialised from "a photo of a" (shared by all three methods), outlier weight ``beta = 0.1``, outliers
shifted to the global-feature region, score MCM.

Score temperature: prompts are trained with CLIP's logit scale, but the MCM and GL-MCM scores use
``score_temperature = 1`` over cosines, the temperature zero-shot MCM uses, so that every method is scored the
same way and a comparison measures the prompts. CoOp's and LoCoOp's reference code scores at the logit scale
(``score_temperature=None`` here); on the validation split that costs every prompt method 0.7-1.5 AUROC points
and made zero-shot MCM look better than all of them. 1 - p(unknown) stays at the logit scale the unknown class was
trained at (at temperature 1 it ranks ID images as *more* unknown: AUROC about 35%).

Every CLIP-OS stage can be switched off for ablations: ``puc_k=1`` (no PUC), ``rule="topk"`` (no
surgery-discrepancy), ``synthesis=False`` (no outliers), ``unknown=False`` (no unknown class: synthesised outliers
then get LoCoOp's entropy maximisation instead of a class of their own), ``align_outliers=False`` (outliers stay
where patch features live instead of being shifted to the global-feature region; see
:func:`clipos_lab.synthesis.global_shift`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..clipos import relevance as R
from ..clipos import synthesis as Y
from ..clipos.prompts import PromptConfig, PromptLearner, TrainingData, train_prompts
from .base import Method
from .zeroshot import DEFAULT_TEMPLATES, class_embeddings


class PromptMethod(Method):
    """A prompt learner trained on a few-shot FeatureBank; see the module docstring for the switches."""

    name = "prompt"

    def __init__(self, prompt: PromptConfig | None = None, unknown: bool = False, synthesis: bool = False,
                 rule: str = "discrepancy", puc_k: int = 3, top_k: int | None = None, beta: float = 1.0,
                 gamma: float = 0.0, alpha: float = 2.0, synthesis_mode: str = "feature",
                 n_outliers: int | None = None, filter_threshold: float | None = None, rho_min: float = 0.1,
                 rho_max: float = 0.9, align_outliers: bool = True, default_score: str = "MCM",
                 score_temperature: float | None = 1.0, seed: int = 0):
        self.prompt = prompt
        self.unknown, self.synthesis, self.rule, self.puc_k, self.top_k = unknown, synthesis, rule, puc_k, top_k
        self.beta, self.gamma, self.alpha, self.synthesis_mode = beta, gamma, alpha, synthesis_mode
        self.n_outliers, self.filter_threshold = n_outliers, filter_threshold
        self.rho_min, self.rho_max = rho_min, rho_max
        self.align_outliers = align_outliers
        self.default_score = default_score
        self.score_temperature = score_temperature
        self.seed = seed

    @property
    def score_scale_(self) -> float:
        return self.scale_ if self.score_temperature is None else 1.0 / self.score_temperature

    @property
    def n_id_(self) -> int:
        return len(self.classnames_)

    def _relevance(self, backbone, train):
        zero_shot_text = class_embeddings(backbone, train.classnames, DEFAULT_TEMPLATES)
        if self.rule == "topk":
            return R.relevance(train, zero_shot_text, rule="topk", k=self.puc_k, top_k=self.top_k)
        return R.relevance(train, zero_shot_text, rule=self.rule, k=self.puc_k, rho_min=self.rho_min,
                           rho_max=self.rho_max)

    def _outlier_source(self, backbone, train, rel):
        """A function epoch -> that epoch's synthesised outlier features (lam resampled every epoch)."""
        n_out = self.n_outliers or Y.default_n_outliers(len(train))
        filter_fn = None
        if self.filter_threshold is not None:
            filter_fn = Y.confidence_filter(class_embeddings(backbone, train.classnames, DEFAULT_TEMPLATES),
                                            threshold=self.filter_threshold, scale=backbone.logit_scale)
        shift = Y.global_shift(rel.relevant_features, train.global_) if self.align_outliers else None

        def synthesize(epoch: int) -> Y.Outliers:
            out = Y.synthesize(rel.relevant_features, train.labels, n_out, alpha=self.alpha,
                               seed=self.seed * 100_003 + epoch, mode=self.synthesis_mode,
                               patches=rel.puc_patches, masks=rel.mask, filter_fn=filter_fn)
            return out if shift is None else Y.shift_outliers(out, shift)

        self.outliers_ = synthesize(0)  # the first epoch's outliers, with provenance, for notebooks
        return lambda epoch: synthesize(epoch).features

    def _check_params(self) -> None:
        if self.score_temperature is not None and not self.score_temperature > 0:
            raise ValueError(f"score_temperature={self.score_temperature} must be positive, or None for the logit "
                             "scale")
        if self.rule not in ("discrepancy", "topk"):
            raise ValueError(f"rule={self.rule!r}: choose 'discrepancy' or 'topk'")
        if self.puc_k < 1:
            raise ValueError(f"puc_k={self.puc_k} must be at least 1 (1 switches PUC off)")

    def fit(self, backbone, train=None, classnames=None) -> "PromptMethod":
        self._check_params()
        if train is None or len(train) == 0:
            raise ValueError(f"{self.name} needs a few-shot FeatureBank to train on")
        self.classnames_ = list(train.classnames)
        train = train.to(backbone.device)  # every stage runs where the backbone is
        cfg = replace(self.prompt or PromptConfig(), seed=self.seed)
        needs_patches = self.synthesis or self.gamma > 0
        rel = self._relevance(backbone, train) if needs_patches else None
        self.relevance_ = rel
        irrelevant = None
        entropy_on_outliers = self.synthesis and not self.unknown
        outliers_fn = self._outlier_source(backbone, train, rel) if self.synthesis else None
        if self.gamma > 0:
            irrelevant = rel.puc_patches[~rel.mask]
        data = TrainingData(train.global_, train.labels,
                            outliers=None if entropy_on_outliers else outliers_fn,
                            irrelevant_patches=irrelevant)
        gamma = self.gamma
        if entropy_on_outliers:  # no unknown class: outliers should be uncertain among the ID classes
            first = self.outliers_.features
            data.irrelevant_patches = first if irrelevant is None else torch.cat([irrelevant, first])
            gamma = gamma or self.beta
        self.learner_ = PromptLearner(backbone, self.classnames_, cfg.n_ctx, cfg.ctx_init, unknown=self.unknown,
                                      seed=self.seed)
        self.history_ = train_prompts(self.learner_, data, cfg, beta=self.beta if self.unknown else 0.0,
                                      gamma=gamma)
        with torch.no_grad():
            self.text_ = self.learner_()
        self.scale_ = backbone.logit_scale
        return self

    def save(self, path) -> None:
        """Save the learned prompts (safetensors) with this method's class and scoring parameters; :meth:`load`
        rebuilds the same method to score without retraining."""
        self._check_fitted()
        self.learner_.save(path, extra={"class": type(self).__name__, "default_score": self.default_score,
                                        "score_temperature": self.score_temperature})

    @classmethod
    def load(cls, path, backbone) -> "PromptMethod":
        learner = PromptLearner.load(path, backbone)
        saved = {c.__name__: c for c in (PromptMethod, CoOp, LoCoOp, CLIPOS)}.get(learner.extra.get("class"), cls)
        params = {"default_score": learner.extra.get("default_score", "MCM"),
                  "score_temperature": learner.extra.get("score_temperature", 1.0)}
        if saved is PromptMethod:
            params["unknown"] = learner.has_unknown
        method = saved(**params)
        method.learner_, method.classnames_ = learner, learner.classnames
        with torch.no_grad():
            method.text_ = learner()
        method.scale_ = backbone.logit_scale
        return method


class CoOp(PromptMethod):
    """Learnable context, cross-entropy on the few-shot ID images only."""

    name = "CoOp"

    def __init__(self, prompt: PromptConfig | None = None, default_score: str = "MCM",
                 score_temperature: float | None = 1.0, seed: int = 0):
        super().__init__(prompt, unknown=False, synthesis=False, gamma=0.0, default_score=default_score,
                         score_temperature=score_temperature, seed=seed)


class LoCoOp(PromptMethod):
    """CoOp + entropy maximisation over ID classes on ID-irrelevant patches (top-k rule, no PUC)."""

    name = "LoCoOp"

    def __init__(self, prompt: PromptConfig | None = None, gamma: float = 0.25, top_k: int | None = None,
                 puc_k: int = 1, default_score: str = "MCM", score_temperature: float | None = 1.0, seed: int = 0):
        super().__init__(prompt, unknown=False, synthesis=False, rule="topk", puc_k=puc_k, top_k=top_k,
                         gamma=gamma, default_score=default_score, score_temperature=score_temperature, seed=seed)


class CLIPOS(PromptMethod):
    """CLIP-OS: PUC, surgery-discrepancy separation, cross-class outlier synthesis, unknown-aware prompts.

    ``beta = 0.1`` was chosen on the validation split (1.0 cost 1.4 AUROC points there).
    """

    name = "CLIP-OS"

    def __init__(self, prompt: PromptConfig | None = None, unknown: bool = True, synthesis: bool = True,
                 rule: str = "discrepancy", puc_k: int = 3, top_k: int | None = None, beta: float = 0.1,
                 gamma: float = 0.0, alpha: float = 2.0, synthesis_mode: str = "feature",
                 n_outliers: int | None = None, filter_threshold: float | None = None, rho_min: float = 0.1,
                 rho_max: float = 0.9, align_outliers: bool = True, default_score: str = "MCM",
                 score_temperature: float | None = 1.0, seed: int = 0):
        super().__init__(prompt, unknown=unknown, synthesis=synthesis, rule=rule, puc_k=puc_k, top_k=top_k,
                         beta=beta, gamma=gamma, alpha=alpha, synthesis_mode=synthesis_mode, n_outliers=n_outliers,
                         filter_threshold=filter_threshold, rho_min=rho_min, rho_max=rho_max,
                         align_outliers=align_outliers, default_score=default_score,
                         score_temperature=score_temperature, seed=seed)

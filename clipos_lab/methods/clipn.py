"""CLIPN as a method: zero-shot OOD detection with a yes and a no text branch (scores ATD, CTW, MCM).

Like MCM it needs class names, not ID images: ``fit`` builds, per class, the normalised sum over prompt
templates of normalised text features through each branch (``fc_yes``, ``fc_no``). ``score`` gives ATD (the
default), CTW (see :mod:`clipos_lab.clipn.scores`) and MCM of the yes branch (zero-shot MCM at temperature 1, the
same number the MCM row reports when the templates agree). The no branch comes from the backbone
(``backbone.no_text``), or, for the pocket models (v1 and v2), the shipped one in ``assets/clipn``; stock CLIP
weights have none and get a clear error.

The scale of ATD and CTW is the model's logit scale (``scale=None``), the temperature the no tower was trained
at: CLIPN's released ViT-B-16 has 100, the value its code hard-codes; the pocket model has about 30.7.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import scores as S
from ..clipn import encoder as E
from ..clipn import scores as C
from ..clipn.released import load_no_text
from .cosine import CosineMethod
from .text import DEFAULT_TEMPLATES, check_templates, class_embeddings


class CLIPN(CosineMethod):
    """Zero-shot CLIPN: yes and no class embeddings; scores ATD (default), CTW and the yes branch's MCM."""

    name = "CLIPN"
    kind = "zero-shot"
    score_names = ("ATD", "CTW", "MCM")
    default_score = "ATD"

    def __init__(self, templates: Sequence[str] = DEFAULT_TEMPLATES, scale: float | None = None,
                 mcm_temperature: float = 1.0, no_text: str | None = None):
        self.templates = templates
        self.scale = scale
        self.mcm_temperature = mcm_temperature
        self.no_text = no_text  # a no-tower file (.safetensors, or CLIPN's released .pt); None: the backbone's

    def fit(self, backbone, train=None, classnames: Sequence[str] | None = None) -> "CLIPN":
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"scale={self.scale} must be positive, or None for the model's logit scale")
        if not self.mcm_temperature > 0:
            raise ValueError(f"mcm_temperature={self.mcm_temperature} must be positive")
        templates = check_templates(self.templates)
        classnames = list(classnames if classnames is not None else (train.classnames if train is not None else []))
        if not classnames:
            raise ValueError("CLIPN needs class names (classnames=[...] or a bank with classnames); no ID images")
        if self.no_text is not None:
            encoder = load_no_text(backbone, self.no_text)
        else:
            encoder = E.no_text_of(backbone)
        self.classnames_ = classnames
        self.text_ = class_embeddings(backbone, classnames, templates)
        texts = [t.format(c) for c in classnames for t in templates]
        no = encoder.encode(backbone, texts).reshape(len(classnames), len(templates), -1).sum(1)
        self.text_no_ = F.normalize(no, dim=-1)
        self.scale_ = float(self.scale or backbone.logit_scale)
        return self

    @property
    def score_scale_(self) -> float:
        return 1.0 / self.mcm_temperature

    def p_yes(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` per-class probability of "yes, this is class c" rather than "no, it is not"."""
        self._check_fitted()
        return C.p_yes(features, self.text_, self.text_no_, self.scale_)

    def available_scores(self, bank) -> list[str]:
        self._check_fitted()
        return list(self.score_names)

    def score(self, bank, scores=None, chunk: int | None = None) -> dict[str, np.ndarray]:
        """ATD, CTW and the yes branch's MCM (or only those named in ``scores``), higher = more ID."""
        wanted = self.check_scores(scores)
        self._check_fitted()
        f = bank.global_.to(self.text_.device)
        out = {"ATD": lambda: C.atd(f, self.text_, self.text_no_, self.scale_),
               "CTW": lambda: C.ctw(f, self.text_, self.text_no_, self.scale_),
               "MCM": lambda: S.mcm(self.logits(f, self.score_scale_), self.n_id_)}
        return {k: out[k]().cpu().numpy() for k in wanted}

    def score_signature(self):
        return None  # the no branch is part of the scores: never share with a yes-only method

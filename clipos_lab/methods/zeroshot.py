"""Zero-shot MCM and GL-MCM: class prompts only, no training images."""

from __future__ import annotations

from typing import Sequence

from .cosine import CosineMethod, check_local_tokens
from .text import DEFAULT_TEMPLATES, check_templates, class_embeddings

__all__ = ["DEFAULT_TEMPLATES", "GLMCM", "MCM", "class_embeddings"]


class MCM(CosineMethod):
    """Maximum concept matching: max softmax of cosine similarities to class prompts at temperature ``T``.

    ``templates`` with more than one entry is a prompt ensemble: each class embedding is the normalised mean of
    its templates' embeddings. It also gives GL-MCM when the bank has local tokens (same text, same scale).
    """

    name = "MCM"
    kind = "zero-shot"
    default_score = "MCM"

    def __init__(self, templates: Sequence[str] = DEFAULT_TEMPLATES, temperature: float = 1.0):
        self.templates = templates
        self.temperature = temperature

    def fit(self, backbone, train=None, classnames: Sequence[str] | None = None) -> "MCM":
        templates = check_templates(self.templates)
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature} must be positive")
        classnames = list(classnames if classnames is not None else train.classnames)
        if not classnames:
            raise ValueError(f"{self.name} needs at least one class name")
        self.classnames_ = classnames
        self.text_ = class_embeddings(backbone, classnames, templates)
        self.scale_ = 1.0 / self.temperature
        return self


class GLMCM(MCM):
    """GL-MCM: MCM of the global feature + ``lam`` x the largest local MCM; default score GL-MCM.

    ``local_tokens="local"`` (default) reads the value-path local features, as GL-MCM's reference code does;
    ``"patches"`` reads the ordinary final-layer patch tokens.
    """

    name = "GL-MCM"
    default_score = "GL-MCM"

    def __init__(self, templates: Sequence[str] = DEFAULT_TEMPLATES, temperature: float = 1.0, lam: float = 0.5,
                 local_tokens: str = "local"):
        super().__init__(templates, temperature)
        self.lam = lam
        self.local_tokens = local_tokens

    @property
    def gl_lambda(self) -> float:
        return self.lam

    def fit(self, backbone, train=None, classnames: Sequence[str] | None = None) -> "GLMCM":
        check_local_tokens(self.local_tokens)
        return super().fit(backbone, train, classnames)

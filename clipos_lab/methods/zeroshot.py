"""Zero-shot MCM and GL-MCM: class prompts only, no training images."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F

from .base import Method

DEFAULT_TEMPLATES = ("a photo of a {}.",)


class MCM(Method):
    """Maximum concept matching: max softmax of cosine similarities to class prompts at temperature ``T``.

    ``templates`` with more than one entry is a prompt ensemble: each class embedding is the normalised mean of
    its templates' embeddings. Text embeddings are cached per backbone and prompt set.
    """

    name = "MCM"
    default_score = "MCM"

    def __init__(self, templates: Sequence[str] = DEFAULT_TEMPLATES, temperature: float = 1.0):
        self.templates = templates
        self.temperature = temperature

    def fit(self, backbone, train=None, classnames: Sequence[str] | None = None) -> "MCM":
        if not self.templates or isinstance(self.templates, str) or any("{}" not in t for t in self.templates):
            raise ValueError(f"templates={self.templates!r}: give a list of templates, each with a '{{}}' for the "
                             "class")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature} must be positive")
        classnames = list(classnames if classnames is not None else train.classnames)
        if not classnames:
            raise ValueError("MCM needs at least one class name")
        self.classnames_ = classnames
        self.text_ = class_embeddings(backbone, classnames, tuple(self.templates))
        self.scale_ = 1.0 / self.temperature
        return self


class GLMCM(MCM):
    """GL-MCM: MCM of the global feature + ``lam`` x the largest local (patch) MCM; default score GL-MCM."""

    name = "GL-MCM"
    default_score = "GL-MCM"

    def __init__(self, templates: Sequence[str] = DEFAULT_TEMPLATES, temperature: float = 1.0, lam: float = 0.5):
        super().__init__(templates, temperature)
        self.lam = lam

    @property
    def gl_lambda(self) -> float:
        return self.lam


def class_embeddings(backbone, classnames: Sequence[str], templates: Sequence[str]):
    """Normalised class embeddings ``(K, D)``, averaged over templates (a prompt ensemble)."""
    texts = [t.format(c) for c in classnames for t in templates]
    emb = backbone.encode_text(texts).reshape(len(classnames), len(templates), -1).mean(1)
    return F.normalize(emb, dim=-1)

"""Class embeddings from prompt templates: the text side every zero-shot score and every prompt learner starts from."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def check_templates(templates) -> tuple[str, ...]:
    """A non-empty list of templates, each with one ``{}`` for the class name."""
    if not templates or isinstance(templates, str) or any("{}" not in t for t in templates):
        raise ValueError(f"templates={templates!r}: give a list of templates, each with a '{{}}' for the class")
    return tuple(templates)


def class_embeddings(backbone, classnames: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                     cached: bool = True):
    """Normalised class embeddings ``(K, D)``, averaged over templates (a prompt ensemble); ``cached=False``
    encodes these prompts afresh as one list (:meth:`Backbone.encode_text`), bit-identical in any process."""
    texts = [t.format(c) for c in classnames for t in templates]
    encoded = backbone.encode_text(texts) if cached else backbone.encode_text(texts, cached=False)
    emb = encoded.reshape(len(classnames), len(templates), -1).mean(1)
    return F.normalize(emb, dim=-1)

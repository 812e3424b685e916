"""Text embeddings of many words under prompt templates, chunked, without the backbone's per-string cache.

Negative-label methods encode ~10^4-10^5 candidate words, some under 8 templates (CSP). The backbone's
``encode_text`` keeps every string's feature; here a chunk of words is encoded, averaged over templates and
dropped, so memory is O(words x D) plus one chunk.

Two averages, as the references differ: ``normalize_each=False`` averages the raw text features, then normalises
(CSP, NegLabel with one template); ``True`` normalises each template's feature first (AdaNeg, the MCM ensemble).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def check_templates(templates: Sequence[str], what: str = "templates") -> tuple[str, ...]:
    if not templates or isinstance(templates, str) or any("{}" not in t for t in templates):
        raise ValueError(f"{what}={templates!r}: give a list of templates, each with a '{{}}' for the word")
    return tuple(templates)


@torch.no_grad()
def template_embeddings(backbone, words: Sequence[str], templates: Sequence[str], normalize_each: bool = False,
                        chunk: int = 1024) -> torch.Tensor:
    """``(len(words), D)`` normalised embeddings, each the template average of ``template.format(word)``.

    ``chunk`` texts go through the text tower at once, on the backbone's device; the result stays there.
    """
    templates = check_templates(templates)
    words = list(words)
    per_chunk = max(1, chunk // len(templates))
    out = []
    for start in range(0, len(words), per_chunk):
        part = words[start: start + per_chunk]
        tokens = backbone.tokenize([t.format(w) for w in part for t in templates])
        # the backbone's embedding path stops at the longest prompt of the chunk (causal mask: same features)
        feats = backbone.encode_text_embeddings(backbone.token_embedding(tokens), tokens).float()
        if normalize_each:
            feats = F.normalize(feats, dim=-1)
        out.append(F.normalize(feats.reshape(len(part), len(templates), -1).mean(1), dim=-1))
    if not out:
        return torch.empty(0, backbone.embed_dim, device=backbone.device)
    return torch.cat(out)

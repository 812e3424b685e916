"""Text embeddings of many words under prompt templates, chunked, without the backbone's per-string cache.

Negative-label methods encode ~10^4-10^5 candidate words, some under 8 templates (CSP). The backbone's
``encode_text`` keeps every string's feature; here a chunk of words is encoded, averaged over templates and
dropped, so memory is O(words x D) plus one chunk.

Two averages, as the references differ: ``normalize_each=False`` averages the raw text features, then normalises
(CSP, NegLabel with one template); ``True`` normalises each template's feature first (AdaNeg, the MCM ensemble).

A word list's embeddings depend only on the text tower, the words and the templates, yet every fit of a
negative-label method (one per benchmark of a suite, per process of a Ray run) encoded the whole WordNet list
again: seconds per fit on a small model, minutes on ViT-B/16 on a CPU. Lists of at least
:data:`CACHE_MIN_WORDS` words are therefore kept in the feature cache folder (``word_text/``), keyed by
everything that changes the numbers, and read back bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import torch
import torch.nn.functional as F

CACHE_MIN_WORDS = 2048  # shorter lists (class names) cost less to encode than to look up


def check_templates(templates: Sequence[str], what: str = "templates") -> tuple[str, ...]:
    if not templates or isinstance(templates, str) or any("{}" not in t for t in templates):
        raise ValueError(f"{what}={templates!r}: give a list of templates, each with a '{{}}' for the word")
    return tuple(templates)


@torch.no_grad()
def template_embeddings(backbone, words: Sequence[str], templates: Sequence[str], normalize_each: bool = False,
                        chunk: int = 1024, cache: bool = True) -> torch.Tensor:
    """``(len(words), D)`` normalised embeddings, each the template average of ``template.format(word)``.

    ``chunk`` texts go through the text tower at once, on the backbone's device; the result stays there. With
    ``cache`` (and at least :data:`CACHE_MIN_WORDS` words) the result is read from, or written to, the feature
    cache folder.
    """
    templates = check_templates(templates)
    words = list(words)
    path = _cache_path(backbone, words, templates, normalize_each, chunk) if cache else None
    if path is not None and path.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(path))["embeddings"].to(backbone.device)
        except Exception:  # unreadable (e.g. cut short by a full disk): encode again and rewrite it
            pass
    out = _encode(backbone, words, templates, normalize_each, chunk)
    if path is not None:
        from ..files import save_safetensors

        save_safetensors({"embeddings": out.cpu().contiguous()}, path)
    return out


def _cache_path(backbone, words, templates, normalize_each, chunk):
    """Where a word list's embeddings are kept, or None when the list is short or the weights have no stable id."""
    weights = str(getattr(backbone, "weights_id", "") or "")
    if len(words) < CACHE_MIN_WORDS or not weights or weights.startswith("random:"):
        return None  # random weights share their id across models: never cached
    from ..features import default_cache_dir

    key = {"v": 1, "model": backbone.name, "weights": weights, "precision": getattr(backbone, "precision", "fp32"),
           "device": str(getattr(backbone, "device", "cpu")).split(":")[0], "templates": list(templates),
           "normalize_each": bool(normalize_each), "chunk": int(chunk),
           "words": hashlib.sha256("\n".join(words).encode()).hexdigest()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return default_cache_dir() / "word_text" / f"{digest}.safetensors"


def _encode(backbone, words, templates, normalize_each, chunk) -> torch.Tensor:
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

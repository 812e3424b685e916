"""Methods that classify by cosine similarity to class embeddings (``text_``): MCM, GL-MCM and 1 - p(unknown).

Zero-shot MCM / GL-MCM, the prompt learners and CLIPN's yes branch all score this way, so the scoring lives
here once: ``scale_`` multiplies cosines for prediction and for 1 - p(unknown); ``score_scale_`` (defaults to
``scale_``) is what the MCM and GL-MCM scores use, because a detector's softmax temperature is a choice of the
score, not of the classifier (the MCM paper, section 4).

``local_tokens`` names the bank's tokens GL-MCM's local part reads: ``"local"`` (the value-path local features
GL-MCM's and LoCoOp's reference code use, the default) or ``"patches"`` (final-layer patch tokens).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Sequence

import numpy as np
import torch

from .. import scores as S
from ..threads import threaded
from .base import Method

SCORE_CHUNK = 4096  # images per scoring step (a multiple of the patch chunk, so chunking changes no number)
LOCAL_TOKENS = ("local", "patches")


def check_local_tokens(kind: str) -> str:
    if kind not in LOCAL_TOKENS:
        raise ValueError(f"local_tokens={kind!r}: choose 'local' (value-path local features, the GL-MCM / LoCoOp "
                         "reference) or 'patches' (final-layer patch tokens)")
    return kind


def local_tokens_of(bank, kind: str):
    """The bank's tokens of ``kind`` (None when the bank has none: GL-MCM is then not reported)."""
    return getattr(bank, check_local_tokens(kind), None)


def wanted_local_scores(method, bank, scores) -> list[str]:
    """MCM, and GL-MCM where ``bank`` has the method's ``local_tokens``, limited to ``scores``; asking for
    GL-MCM on a bank without them is an error (for methods scoring with their own prompts, e.g. FA, GalLoP)."""
    asked = method.check_scores(scores)
    available = ["MCM"] + (["GL-MCM"] if local_tokens_of(bank, method.local_tokens) is not None else [])
    if scores is not None and "GL-MCM" in asked and "GL-MCM" not in available:
        raise ValueError(f"{method.name} cannot give GL-MCM on this bank: it has no {method.local_tokens!r} tokens")
    return [s for s in available if s in asked]


class CosineMethod(Method):
    """Subclasses set ``text_`` (class embeddings, C x D, an unknown class last if any) and ``scale_`` in ``fit``."""

    score_names = ("MCM", "GL-MCM")
    gl_lambda = 0.5
    local_tokens = "local"

    @property
    def n_id_(self) -> int:
        return len(self.classnames_)

    @property
    def score_scale_(self) -> float:
        return self.scale_

    @property
    def unknown_text_(self) -> torch.Tensor:
        """The class embeddings 1 - p(unknown) reads (the unknown class last): ``text_`` unless a method keeps
        the (K + 1)-way classifier its unknown class was trained in apart from its scoring text."""
        return self.text_

    def logits(self, features: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        self._check_fitted()
        features = features.to(self.text_.device, non_blocking=True)
        return S.cosine_logits(features, self.text_, self.scale_ if scale is None else scale)

    def available_scores(self, bank) -> list[str]:
        """The scores this method gives on ``bank`` (GL-MCM needs local tokens, 1 - p(unknown) a learned class)."""
        self._check_fitted()
        names = ["MCM"]
        if "GL-MCM" in self.score_names and local_tokens_of(bank, self.local_tokens) is not None:
            names.append("GL-MCM")
        if "1-p(unknown)" in self.score_names and self.text_.shape[0] > self.n_id_:
            names.append("1-p(unknown)")
        return names

    def score_signature(self) -> tuple:
        self._check_fitted()
        digest = hashlib.sha1()
        unknown = self.unknown_text_
        for tensor in (self.text_,) if unknown is self.text_ else (self.text_, unknown):
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        text = self.text_
        return (digest.hexdigest(), tuple(text.shape), float(self.scale_), float(self.score_scale_),
                float(self.gl_lambda), int(self.n_id_), self.local_tokens, tuple(self.score_names),
                type(self).score.__qualname__)

    @threaded(lambda self, bank, *args, **kwargs: scoring_work(self, bank))
    def score(self, bank, scores: Sequence[str] | None = None, chunk: int = SCORE_CHUNK) -> dict[str, np.ndarray]:
        """Scores for each image of ``bank`` (higher = more ID): every score this method gives, or ``scores``.

        Images are scored ``chunk`` at a time on the method's device, so memory is O(chunk) whatever the bank
        size; local tokens are read only when GL-MCM is asked for.
        """
        asked = self.check_scores(scores)
        available = self.available_scores(bank)
        missing = [s for s in asked if s not in available] if scores is not None else []
        if missing:
            raise ValueError(f"{self.name} cannot give {missing} on this bank: GL-MCM needs its "
                             f"{self.local_tokens!r} tokens (encode with local tokens)")
        wanted = [s for s in available if s in asked]
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in wanted}
        local = lambda lg: S.local_mcm(lg, self.n_id_)  # noqa: E731
        for start in range(0, len(bank), chunk):
            rows = slice(start, start + chunk)
            mcm = S.mcm(self.logits(bank.global_[rows], self.score_scale_), self.n_id_)
            if "MCM" in parts:
                parts["MCM"].append(mcm)
            if "GL-MCM" in parts:
                tokens = local_tokens_of(bank, self.local_tokens)[rows]
                patch = S.patch_logits_chunked(tokens, self.text_, self.score_scale_, local)
                parts["GL-MCM"].append(mcm + self.gl_lambda * patch)
            if "1-p(unknown)" in parts:
                features = bank.global_[rows].to(self.text_.device, non_blocking=True)
                parts["1-p(unknown)"].append(S.unknown_score(S.cosine_logits(features, self.unknown_text_,
                                                                             self.scale_)))
        return {name: torch.cat(v).cpu().numpy() for name, v in parts.items()}

    @threaded(lambda self, bank, *args, **kwargs: scoring_work(self, bank))
    def predict(self, bank, chunk: int = SCORE_CHUNK) -> np.ndarray:
        """The ID class of each image (the unknown class, if any, is not a candidate)."""
        self._check_fitted()
        out = [self.logits(bank.global_[s: s + chunk])[:, : self.n_id_].argmax(-1).cpu()
               for s in range(0, len(bank), chunk)]
        return torch.cat(out).numpy()


def scoring_work(method: CosineMethod, bank) -> float:
    """Multiply-adds of one scoring chunk (every token against every class), which size the thread count
    (:mod:`clipos_lab.threads`)."""
    text = getattr(method, "text_", None)
    if text is None:
        return 0.0
    local = getattr(bank, method.local_tokens, None) if method.local_tokens in LOCAL_TOKENS else None
    tokens = 1 + (0 if local is None else local.shape[1])
    return float(min(len(bank), SCORE_CHUNK) * tokens * text.numel())


def at_temperature(method: CosineMethod, temperature: float) -> CosineMethod:
    """A copy of fitted ``method`` whose MCM and GL-MCM use softmax temperature ``temperature`` (cosines divided
    by it); the original is untouched. Prompt methods keep 1 - p(unknown) at their logit scale."""
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be positive")
    method._check_fitted()
    twin = copy.copy(method)
    if hasattr(twin, "score_temperature"):  # prompt methods: the score's temperature is its own option
        twin.score_temperature = float(temperature)
    else:  # zero-shot MCM / GL-MCM: the temperature is the method's only scale
        twin.temperature, twin.scale_ = float(temperature), 1.0 / float(temperature)
    return twin

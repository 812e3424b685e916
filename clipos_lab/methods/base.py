"""The interface every method shares: ``fit`` on few-shot features, then ``score`` and ``predict`` on a bank.

Like scikit-learn estimators, parameters are set in ``__init__``, ``fit`` returns ``self`` and fitted state ends
with ``_``. Like pytorch-ood detectors, methods work on cached features (a :class:`FeatureBank`), never on
pixels, so every image is encoded once. ``score`` returns every score a method can give, keyed by name
(``"MCM"``, ``"GL-MCM"``, ``"1-p(unknown)"``); higher always means more in-distribution.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..evaluation import scores as S


class NotFittedError(RuntimeError):
    pass


class Method:
    """Base class: subclasses set ``text_`` (class embeddings, C x D) and ``scale_`` in ``fit``.

    ``scale_`` multiplies cosines for prediction and for 1 - p(unknown); ``score_scale_`` (defaults to
    ``scale_``) is what the MCM and GL-MCM scores use, because a detector's softmax temperature is a choice of
    the score, not of the classifier (the MCM paper, section 4).

    ``local_tokens`` names the bank's tokens GL-MCM's local part reads: ``"local"`` (the value-path local
    features GL-MCM's and LoCoOp's reference code use, the default) or ``"patches"`` (final-layer patch tokens).
    """

    name = "method"
    default_score = "MCM"
    gl_lambda = 0.5
    local_tokens = "local"

    def fit(self, backbone, train=None, classnames: Sequence[str] | None = None) -> "Method":
        raise NotImplementedError

    # subclasses with a learned unknown class override these two
    @property
    def n_id_(self) -> int:
        return len(self.classnames_)

    def _check_fitted(self):
        if not hasattr(self, "text_"):
            raise NotFittedError(f"{self.name} is not fitted: call fit(backbone, train_bank) first")

    @property
    def score_scale_(self) -> float:
        return self.scale_

    def logits(self, features: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        self._check_fitted()
        return S.cosine_logits(features, self.text_, self.scale_ if scale is None else scale)

    def score(self, bank) -> dict[str, np.ndarray]:
        """Every score this method gives for each image of ``bank`` (higher = more ID)."""
        self._check_fitted()
        out = {"MCM": S.mcm(self.logits(bank.global_, self.score_scale_), self.n_id_)}
        tokens = local_tokens_of(bank, self.local_tokens)
        if tokens is not None:
            local = S.patch_logits_chunked(tokens, self.text_, self.score_scale_,
                                           lambda lg: S.local_mcm(lg, self.n_id_))
            out["GL-MCM"] = out["MCM"] + self.gl_lambda * local
        if self.text_.shape[0] > self.n_id_:
            out["1-p(unknown)"] = S.unknown_score(self.logits(bank.global_))
        return {k: v.numpy() for k, v in out.items()}

    def predict(self, bank) -> np.ndarray:
        """The ID class of each image (the unknown class, if any, is not a candidate)."""
        return self.logits(bank.global_)[:, : self.n_id_].argmax(-1).numpy()


LOCAL_TOKENS = ("local", "patches")


def check_local_tokens(kind: str) -> str:
    if kind not in LOCAL_TOKENS:
        raise ValueError(f"local_tokens={kind!r}: choose 'local' (value-path local features, the GL-MCM / LoCoOp "
                         "reference) or 'patches' (final-layer patch tokens)")
    return kind


def local_tokens_of(bank, kind: str):
    """The bank's tokens of ``kind`` (None when the bank has none: GL-MCM is then not reported)."""
    return getattr(bank, check_local_tokens(kind), None)

"""What NegLabel, CSP and AdaNeg share: ID label embeddings plus mined negative-label embeddings, scored by the
grouped ID share (:mod:`clipos_lab.negatives.grouping`), and a table of the mined words for notebooks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..negatives import grouping as G
from ..negatives.vocab import WORDNET_VOCAB, Vocabulary, read_vocab
from .base import Method
from .cosine import SCORE_CHUNK


class NegativeLabelMethod(Method):
    """Subclasses set in ``fit``: ``text_`` (K, D), ``negatives_`` (M, D), ``negative_words_`` /
    ``negative_pos_`` / ``negative_distance_`` (per mined word), ``scale_`` and ``permutation_``."""

    kind = "zero-shot"

    @property
    def score_names(self) -> tuple[str, ...]:
        return (self.default_score,)

    def load_vocabulary(self) -> Vocabulary:
        """The candidate words: a :class:`Vocabulary` (or its dict), a word-list path, or None for the shipped
        WordNet list."""
        vocab = self.vocabulary
        if isinstance(vocab, Vocabulary):
            return vocab
        if isinstance(vocab, dict):  # a Vocabulary as run.json stores it
            return Vocabulary(tuple(vocab["words"]), tuple(vocab["pos"]), tuple(vocab["lexnames"]))
        return read_vocab(Path(vocab) if vocab is not None else WORDNET_VOCAB)

    def check_common(self) -> None:
        if not isinstance(self.n_groups, int) or self.n_groups < 1:
            raise ValueError(f"n_groups={self.n_groups!r} must be a whole number >= 1")
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"scale={self.scale} must be positive, or None for the model's logit scale")

    def set_negatives(self, backbone, classnames, id_text, cand_text, words, pos, distance, picked) -> None:
        if len(picked) < self.n_groups:
            raise ValueError(f"{self.name} mined {len(picked)} negative labels from {len(words)} candidates, fewer "
                             f"than n_groups={self.n_groups}: give a larger word list or fewer groups")
        picked = picked.cpu()
        self.classnames_ = list(classnames)
        self.text_ = id_text
        self.negatives_ = cand_text[picked.to(cand_text.device)]
        self.negative_words_ = [words[i] for i in picked.tolist()]
        self.negative_pos_ = [pos[i] for i in picked.tolist()]
        self.negative_distance_ = distance.cpu()[picked].numpy()
        self.scale_ = float(self.scale if self.scale is not None else backbone.logit_scale)
        self.permutation_ = G.group_permutation(len(picked), self.n_groups, self.permute, self.group_seed,
                                                getattr(self, "group_device", "cpu"))

    def score_signature(self) -> tuple:
        self._check_fitted()
        text = torch.cat([self.text_, self.negatives_]).detach().float().cpu().contiguous().numpy()
        return (type(self).__qualname__, hashlib.sha1(text.tobytes()).hexdigest(), len(self.text_), self.scale_,
                self.n_groups, hashlib.sha1(self.permutation_.numpy().tobytes()).hexdigest(),
                getattr(self, "n_fuse", None))

    def id_share(self, features: torch.Tensor) -> torch.Tensor:
        """The grouped ID share of features ``(N, D)`` (logits ``scale x cos``)."""
        f = F.normalize(features.to(self.text_.device).float(), dim=-1)
        pos = self.scale_ * f @ self.text_.T
        neg = self.scale_ * f @ self.negatives_.T
        return G.grouped_id_score(pos, neg, self.n_groups, self.permutation_, getattr(self, "n_fuse", None))

    def score(self, bank, scores=None, chunk: int = SCORE_CHUNK) -> dict[str, np.ndarray]:
        self._check_fitted()
        wanted = self.check_scores(scores)
        if not wanted:
            return {}
        out = [self.id_share(bank.global_[s: s + chunk]) for s in range(0, len(bank), chunk)]
        return {wanted[0]: torch.cat(out).cpu().numpy()}

    def predict(self, bank, chunk: int = SCORE_CHUNK) -> np.ndarray:
        """The ID class of each image: the most similar ID label (negatives are not candidates)."""
        self._check_fitted()
        out = [(F.normalize(bank.global_[s: s + chunk].to(self.text_.device).float(), dim=-1) @ self.text_.T)
               .argmax(-1).cpu() for s in range(0, len(bank), chunk)]
        return torch.cat(out).numpy()

    def negatives_table(self, n: int = 10):
        """The ``n`` mined negative labels nearest to the ID labels and the ``n`` farthest (by the mining
        distance), each with its part of speech and most similar ID class."""
        import pandas as pd

        self._check_fitted()
        sim = self.negatives_ @ self.text_.T
        best = sim.max(-1)
        frame = pd.DataFrame({"negative label": self.negative_words_, "part of speech": self.negative_pos_,
                              "distance (percentile cos)": self.negative_distance_,
                              "closest ID class": [self.classnames_[i] for i in best.indices.cpu().tolist()],
                              "cos to it": best.values.cpu().numpy()})
        frame = frame.sort_values("distance (percentile cos)", kind="stable")
        near = frame.tail(n).iloc[::-1].assign(end="nearest to ID")
        far = frame.head(n).assign(end="farthest from ID")
        return pd.concat([near, far], ignore_index=True)

"""CSP (Chen et al., NeurIPS 2024): NegLabel with a conjugated semantic pool of candidate labels.

Follows ``custom_config/clip-ViT-B16.py`` and ``mmcls/models/classifiers/multi_modal.py`` of
MengyuanChen21/NeurIPS2024-CSP (commit 3a7bdabe): ID labels and nouns are the raw-feature average of eight
"nice" templates; each adjective becomes one phrase ``"<adj> <superclass word>"`` (a superclass template drawn
with Python's ``random`` at ``seed``) averaged over four photo templates; ``noun.person``, ``noun.quantity``,
``noun.group`` and ``adj.pert`` are left out; a candidate whose largest similarity to an ID label is above 0.95
is never mined. Mining, grouping (100 groups) and score are NegLabel's (:mod:`.neglabel`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..negatives import csp as C
from ..negatives.text import template_embeddings
from .neglabel import NegLabel


class CSP(NegLabel):
    """NegLabel's score over negatives mined from nouns and adjective-superclass phrases."""

    name = "CSP"
    default_score = "CSP"

    def __init__(self, vocabulary=None, exclude_files: Sequence[str] = C.EXCLUDED_FILES, ratio: float = 0.15,
                 percentile: float = 0.95, n_groups: int = 100, scale: float | None = 100.0,
                 noun_templates: Sequence[str] = C.NOUN_TEMPLATES, adj_templates: Sequence[str] = C.ADJ_TEMPLATES,
                 superclass_templates: Sequence[str] = C.CSP_TEMPLATES, exclude_above: float | None = C.MAX_SIMILARITY,
                 seed: int = 0, permute: bool = True, group_seed: int = 0, group_device: str = "cpu",
                 n_fuse: int | None = None, text_chunk: int = 1024):
        super().__init__(vocabulary, exclude_files, ratio, percentile, n_groups, scale, permute=permute,
                         group_seed=group_seed, group_device=group_device, n_fuse=n_fuse, text_chunk=text_chunk)
        self.noun_templates, self.adj_templates = tuple(noun_templates), tuple(adj_templates)
        self.superclass_templates, self.exclude_above, self.seed = tuple(superclass_templates), exclude_above, seed

    def id_embeddings(self, backbone, classnames):
        return template_embeddings(backbone, classnames, self.noun_templates, chunk=self.text_chunk)

    def candidates(self, backbone, nouns, adjs):
        phrases = C.conjugate(adjs, self.superclass_templates, self.seed)
        self.adjective_phrases_ = dict(zip(adjs, phrases))
        return torch.cat([template_embeddings(backbone, nouns, self.noun_templates, chunk=self.text_chunk),
                          template_embeddings(backbone, phrases, self.adj_templates, chunk=self.text_chunk)])

    def fit(self, backbone, train=None, classnames=None) -> "CSP":
        super().fit(backbone, train, classnames)
        # show the conjugated phrase, not the bare adjective, in the mined list
        self.negative_words_ = [self.adjective_phrases_.get(w, w) if p == "adj" else w
                                for w, p in zip(self.negative_words_, self.negative_pos_)]
        return self

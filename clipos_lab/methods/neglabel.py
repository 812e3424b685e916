"""NegLabel (Jiang et al., ICLR 2024): zero-shot OOD detection with ~10k negative labels mined from WordNet.

Follows ``custom_config/clip.py``, ``mmcls/models/classifiers/multi_modal.py`` and ``mmcls/models/ood/clip_ood.py``
of XueJiang16/NegLabel (commit 3253db68): ID labels and nouns under ``"the nice {}"`` (the config's
``prompt_idx_pos = prompt_idx_neg = 85``), adjectives under ``"This is a {} photo"``; words deduplicated in file
order; mining by the 0.95-quantile similarity to the ID labels, 15 % of each part of speech
(:mod:`clipos_lab.negatives.neglabel`); score = mean over 100 groups of the ID share of the softmax at
``100 x cos`` (``t = 1`` there means temperature 0.01), the groups drawn by ``torch.randperm`` under seed 0.
The reference draws that permutation on the GPU's generator; ours is the CPU generator's by default, so group
membership (not the rule) differs from a CUDA run of the reference; ``group_device="cuda"`` draws it on the GPU
as the reference does.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..negatives import neglabel as N
from ..negatives.text import check_templates, template_embeddings
from .negative import NegativeLabelMethod

# lexicographer files the reference's word lists (txtfiles/) do not have
NEGLABEL_EXCLUDED = ("noun.animal", "noun.food")


class NegLabel(NegativeLabelMethod):
    """ID share of the softmax over ID + mined negative labels (grouped); class names only, no images."""

    name = "NegLabel"
    default_score = "NegLabel"

    def __init__(self, vocabulary=None, exclude_files: Sequence[str] = NEGLABEL_EXCLUDED, ratio: float = 0.15,
                 percentile: float = 0.95, n_groups: int = 100, scale: float | None = 100.0,
                 id_template: str = "the nice {}", noun_template: str = "the nice {}",
                 adj_template: str = "This is a {} photo", permute: bool = True, group_seed: int = 0,
                 group_device: str = "cpu", n_fuse: int | None = None, text_chunk: int = 1024):
        self.vocabulary = vocabulary
        self.exclude_files = tuple(exclude_files)
        self.ratio, self.percentile = ratio, percentile
        self.n_groups, self.scale = n_groups, scale
        self.id_template, self.noun_template, self.adj_template = id_template, noun_template, adj_template
        self.permute, self.group_seed, self.group_device, self.n_fuse = permute, group_seed, group_device, n_fuse
        self.text_chunk = text_chunk

    def candidates(self, backbone, nouns, adjs):
        """Candidate embeddings, nouns then adjectives (one template each)."""
        chunk = self.text_chunk
        return torch.cat([template_embeddings(backbone, nouns, [self.noun_template], chunk=chunk),
                          template_embeddings(backbone, adjs, [self.adj_template], chunk=chunk)])

    def id_embeddings(self, backbone, classnames):
        return template_embeddings(backbone, classnames, [self.id_template], chunk=self.text_chunk)

    def fit(self, backbone, train=None, classnames: Sequence[str] | None = None) -> "NegLabel":
        self.check_common()
        for t in (self.id_template, self.noun_template, self.adj_template):
            check_templates([t], "template")
        classnames = list(classnames if classnames is not None else (train.classnames if train is not None else []))
        if not classnames:
            raise ValueError(f"{self.name} needs class names (classnames=[...] or a bank with classnames)")
        nouns, adjs = self.load_vocabulary().select(self.exclude_files).split("first")
        id_text = self.id_embeddings(backbone, classnames)
        cand = self.candidates(backbone, nouns, adjs)
        distance = N.percentile_similarity(cand, id_text, self.percentile, getattr(self, "exclude_above", None))
        is_adj = torch.tensor([False] * len(nouns) + [True] * len(adjs))
        picked = N.mine_negatives(distance, is_adj, self.ratio)
        words, pos = nouns + adjs, ["noun"] * len(nouns) + ["adj"] * len(adjs)
        self.set_negatives(backbone, classnames, id_text, cand, words, pos, distance, picked)
        return self

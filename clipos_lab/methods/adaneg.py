"""AdaNeg (Zhang & Zhang, NeurIPS 2024): test-time negative proxies from a memory of the test stream.

Follows YBZh/OpenOOD-VLM (commit 804f3310): ``scripts/ood/adaneg/imagenet.sh`` (10,000 negatives, ``"nice"``
prompts, 5 groups, ``thres = gap = 0.5``, ``memleng = 10``, ``lambdaval = 0.1``, ``beta = 5.5`` cast to 5,
``in_score = combine``; ``samada`` True here, the paper's full method, False in the script's first run),
``openood/networks/clip_fixed_ood_prompt.py`` (``get_text_features_neg``: ID labels and nouns under
``"The nice {}."``, adjectives under ``"This is a {} photo."``) and ``openood/networks/clip_for_wordnet_prepare.py``
(candidates: every word list, class names removed, a word that is also a noun kept as a noun; mining by the
similarity at sorted index ``int(0.95 K)``, 10,000 negatives split between adjectives and nouns in proportion,
adjectives first). The memory and score are :mod:`clipos_lab.negatives.adaneg`.

The score of an image depends on the images before it (**transductive**): :meth:`AdaNeg.score_stream` resets
the memory, then scores ID test and one OOD set together in a seeded random order, ``batch_size`` (256) at a time,
as the reference's evaluator does for each OOD set. ``score`` on a single bank streams that bank alone.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..negatives import adaneg as A
from ..negatives import neglabel as N
from ..negatives.text import template_embeddings
from .negative import NegativeLabelMethod
from .neglabel import NEGLABEL_EXCLUDED


class AdaNeg(NegativeLabelMethod):
    """Test-time: memory-built ID and negative proxies; score = adaptive + lambda x vanilla grouped ID share."""

    name = "AdaNeg"
    default_score = "AdaNeg"
    kind = "test-time"

    def __init__(self, vocabulary=None, exclude_files: Sequence[str] = NEGLABEL_EXCLUDED, n_negatives: int = 10_000,
                 percentile: float = 0.95, n_groups: int = 5, scale: float | None = None, memory_length: int = 10,
                 thres: float = 0.5, gap: float = 0.5, gap_mode: str = "fixed", lambda_: float = 0.1,
                 beta: float = 5.0, samada: bool = True, in_score: str = "combine",
                 id_template: str = "The nice {}.", noun_template: str = "The nice {}.",
                 adj_template: str = "This is a {} photo.", batch_size: int = 256, stream_seed: int = 0,
                 shuffle: bool = True, permute: bool = True, group_seed: int = 0, text_chunk: int = 1024):
        self.vocabulary, self.exclude_files, self.n_negatives = vocabulary, tuple(exclude_files), n_negatives
        self.percentile, self.n_groups, self.scale = percentile, n_groups, scale
        self.memory_length, self.thres, self.gap, self.gap_mode = memory_length, thres, gap, gap_mode
        self.lambda_, self.beta, self.samada, self.in_score = lambda_, beta, samada, in_score
        self.id_template, self.noun_template, self.adj_template = id_template, noun_template, adj_template
        self.batch_size, self.stream_seed, self.shuffle = batch_size, stream_seed, shuffle
        self.permute, self.group_seed, self.text_chunk = permute, group_seed, text_chunk

    def fit(self, backbone, train=None, classnames: Sequence[str] | None = None) -> "AdaNeg":
        self.check_common()
        if self.in_score not in A.SCORE_MODES or self.gap_mode not in A.GAP_MODES:
            raise ValueError(f"in_score={self.in_score!r} / gap_mode={self.gap_mode!r}: choose from "
                             f"{A.SCORE_MODES} / {A.GAP_MODES}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} must be a whole number >= 1")
        classnames = list(classnames if classnames is not None else (train.classnames if train is not None else []))
        if not classnames:
            raise ValueError("AdaNeg needs class names (classnames=[...] or a bank with classnames)")
        nouns, adjs = self.load_vocabulary().select(self.exclude_files).split("noun")
        names = set(classnames)
        nouns, adjs = [w for w in nouns if w not in names], [w for w in adjs if w not in names]
        chunk = self.text_chunk
        id_text = template_embeddings(backbone, classnames, [self.id_template], normalize_each=True, chunk=chunk)
        cand = torch.cat([template_embeddings(backbone, adjs, [self.adj_template], normalize_each=True, chunk=chunk),
                          template_embeddings(backbone, nouns, [self.noun_template], normalize_each=True, chunk=chunk)])
        distance = N.sorted_index_similarity(cand, id_text, self.percentile)
        is_adj = torch.tensor([True] * len(adjs) + [False] * len(nouns))
        picked = N.mine_fixed_count(distance, is_adj, min(self.n_negatives, len(cand)))
        words, pos = adjs + nouns, ["adj"] * len(adjs) + ["noun"] * len(nouns)
        self.set_negatives(backbone, classnames, id_text, cand, words, pos, distance, picked)
        return self

    def score_signature(self):
        """None: scores depend on the stream (the seed), so the runner never reuses them across runs."""
        return None

    def stream(self, features: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
        """Score ``features`` (N, D) with a fresh memory, in the order of a seeded permutation (the given order
        with ``shuffle=False``, e.g. to replay a reference run's order), batch by batch; results come back in the
        input order."""
        self._check_fitted()
        text = torch.cat([self.text_, self.negatives_])
        memory = A.ProxyMemory.new(text, self.memory_length)
        order = (torch.randperm(len(features), generator=torch.Generator().manual_seed(int(seed))) if self.shuffle
                 else torch.arange(len(features)))
        out = {k: torch.empty(len(features)) for k in ("score", "vanilla", "adaptive")}
        pred = torch.empty(len(features), dtype=torch.long)
        for s in range(0, len(order), self.batch_size):
            rows = order[s: s + self.batch_size]
            f = F.normalize(features[rows].to(text.device).float(), dim=-1)
            step = A.adaneg_step(memory, f, text, len(self.text_), self.scale_, self.permutation_, self.n_groups,
                                 self.thres, self.gap, self.lambda_, self.beta, self.samada, self.in_score,
                                 self.gap_mode)
            for k in out:
                out[k][rows] = step[k].cpu()
            pred[rows] = step["pred"].cpu()
        self.memory_ = memory
        return {**{k: v.numpy() for k, v in out.items()}, "pred": pred.numpy()}

    def score_stream(self, id_bank, ood_bank, scores=None, seed: int | None = None):
        """(ID scores, OOD scores) from one stream of the two banks together, memory reset first (the
        reference's per-OOD-set evaluation)."""
        seed = self.stream_seed if seed is None else seed
        feats = torch.cat([ood_bank.global_, id_bank.global_])  # the reference concatenates OOD, then ID
        result = self.stream(feats, seed)
        n_ood = len(ood_bank)
        wanted = self.check_scores(scores)
        return ({s: result["score"][n_ood:] for s in wanted}, {s: result["score"][:n_ood] for s in wanted})

    def score(self, bank, scores=None, chunk: int | None = None) -> dict[str, np.ndarray]:
        """One bank streamed alone (fresh memory, ``stream_seed`` order); the runner uses :meth:`score_sets`."""
        wanted = self.check_scores(scores)
        return {s: self.stream(bank.global_, self.stream_seed)["score"] for s in wanted}

    def score_sets(self, sets, scores=None, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
        """The reference's evaluation: for each OOD set, reset the memory and stream it with the ID test set in
        one ``seed``-ed order. Returns every OOD set's scores, the ID scores of each pair under ``"id@<ood>"``
        (the runner measures each OOD set against its own pair) and, under ``"id"``, the first pair's."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for name, bank in sets.items():
            if name == "id":
                continue
            id_scores, out[name] = self.score_stream(sets["id"], bank, scores, seed)
            out[f"id@{name}"] = id_scores
            out.setdefault("id", id_scores)
        if "id" not in out:  # no OOD set: the ID set streamed alone
            out["id"] = self.score(sets["id"], scores)
        return out

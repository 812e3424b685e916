"""A failing few-shot draw next to a good one (notebook 03, docs/robustness.md).

A user with one or two shots per class gets one draw; on some draws CLIP-OS loses to zero-shot MCM. This view
fits CLIP-OS on several draws of the same benchmark (same features, only the shots differ), measures each
against zero-shot MCM, runs :func:`clipos_lab.viz.diagnosis.diagnose_draw` on it, and puts the draws' synthetic
outliers side by side in one shared projection, so what differs between a bad and a good draw can be seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .. import viz
from ..clipos.prompts import PromptConfig
from ..evaluation import metrics as M
from ..evaluation.banks import encode_banks
from ..methods import build_method
from ..pocket.splits import validation_suite
from ..pocket.splits2 import drawings_specs
from ..viz.diagnosis import diagnose_draw

SHOWN = {"gain_mcm": "MCM score - zero-shot MCM", "gain_unknown": "1-p(unknown) - zero-shot MCM",
         "acc": "ID accuracy", "id_to_unknown": "ID test images -> unknown",
         "p_unknown_id": "mean p(unknown), ID", "p_unknown_ood": "mean p(unknown), OOD",
         "outlier_to_shot": "outlier cosine to nearest shot", "shot_to_other_class": "shot cosine to other class",
         "mask_in_box": "ID-relevant patches on the object", "chance_in_box": "... by chance",
         "loss_outlier_last": "last outlier loss"}


@dataclass
class DrawComparison:
    """Per draw: AUROC gains over zero-shot MCM and the diagnosis (``table``), the fitted methods and the
    joint 2-D coordinates of ID, OOD and every draw's shots and outliers (``coords``)."""

    table: pd.DataFrame
    methods: dict[int, object] = field(repr=False)
    coords: dict[str, np.ndarray] = field(repr=False)

    def shown(self) -> pd.DataFrame:
        """The numbers that tell a bad draw from a good one, one column per draw, AUROCs in points."""
        table = self.table.set_index("seed")[[c for c in SHOWN if c in self.table.columns]].copy()
        percent = [c for c in table.columns if c.startswith("gain") or c in ("acc", "id_to_unknown")]
        table[percent] = 100 * table[percent]
        return table.rename(columns=SHOWN).T.rename(columns=lambda s: f"seed {s}")

    def figure(self, path=None, ncols: int = 2):
        """One panel per draw: the shared map with that draw's shots and outliers coloured."""
        shared = [g for g in self.coords if not g.startswith("seed ")]
        panels = {f"seed {s} (gain of 1-p(unknown): {100 * g:+.1f})":
                  shared + [f"seed {s}: shots (ID-relevant)", f"seed {s}: outliers"]
                  for s, g in zip(self.table["seed"], self.table["gain_unknown"])}
        return viz.small_multiples(self.coords, panels, ncols=ncols, path=path,
                                   suptitle="the same benchmark, different shots: where each draw's outliers lie")


def compare_draws(spec, backbone, seeds: Sequence[int], shots: int = 1, options: dict | None = None,
                  prompt: PromptConfig | None = None, projection: str = "umap",
                  progress: bool = False) -> DrawComparison:
    """Fit CLIP-OS (``options``: any of its options, e.g. an older behaviour) on the draws ``seeds`` of
    ``spec``'s training pool and compare them; the projection is fitted once on every group, so the panels
    share their axes."""
    if len(seeds) < 1:
        raise ValueError("compare_draws needs at least one seed")
    banks = encode_banks(spec, backbone, progress=progress)
    zero_shot = build_method("MCM").fit(backbone, banks.id_train)
    baseline = _ood_auroc(zero_shot, banks, ["MCM"])["MCM"]
    rows, methods = [], {}
    groups = {f"ID: {c}": banks.id_test.global_[banks.id_test.labels == i]
              for i, c in enumerate(banks.id_test.classnames)}
    groups.update({f"OOD: {name}": bank.global_ for name, bank in banks.ood.items()})
    for seed in seeds:
        train, _ = banks.id_train.draw(int(shots), int(seed))
        method = build_method("CLIP-OS", seed=int(seed), prompt=prompt or PromptConfig(progress=progress),
                              **(options or {}))
        method.fit(backbone, train)
        methods[int(seed)] = method
        auroc = _ood_auroc(method, banks, ["MCM", "1-p(unknown)"])
        rows.append({"seed": int(seed), "shots": int(shots),
                     "gain_mcm": auroc["MCM"] - baseline, "gain_unknown": auroc["1-p(unknown)"] - baseline,
                     **diagnose_draw(method, train, banks.id_test, banks.ood, banks.train_dataset)})
        groups[f"seed {seed}: shots (ID-relevant)"] = method.relevance_.relevant_features
        groups[f"seed {seed}: outliers"] = method.outliers_.features
    coords = viz.project(groups, method=projection, seed=0, progress=progress)
    return DrawComparison(pd.DataFrame(rows), methods, coords)


def validation_spec(name: str, n_fresh: int = 2):
    """A validation benchmark by name, never a shipped test split: world v1's ``world-split<k>-validation`` and
    ``fresh2026-split<k>-validation`` (the benchmarks the spread over draws was measured on, docs/robustness.md),
    or world v2's ``drawings-default-validation`` and ``drawings-split<k>-validation`` (the val drawings of a
    drawings split, what ``python -m clipos_lab splits --world 2 --validation`` writes)."""
    from ..data import BenchmarkSpec

    specs = {d["name"]: d for d in [*validation_suite(n_fresh=n_fresh), *drawings_specs(validation=True)]}
    if name not in specs:
        raise ValueError(f"no validation benchmark named {name!r}; choose one of {', '.join(specs)}")
    return BenchmarkSpec.from_dict(specs[name])


def _ood_auroc(method, banks, scores: list[str]) -> dict[str, float]:
    """OOD-average AUROC per score (what the benchmark tables and the spread over draws report); every bank is
    scored once for all ``scores``."""
    id_scores = method.score(banks.id_test, scores=scores)
    ood = [method.score(b, scores=scores) for b in banks.ood.values()]
    return {s: float(np.mean([M.auroc(id_scores[s], o[s]) for o in ood])) for s in scores}


__all__ = ["DrawComparison", "compare_draws", "validation_spec"]

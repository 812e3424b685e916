"""CLIPN (ATD, CTW) beside zero-shot MCM on the random class splits of the pocket world, every FPR95 convention.

    python benchmarks/clipn_splits.py [--out benchmarks/results/clipn_splits] [--methods MCM,CLIPN]

Runs the same suite as ``python -m clipos_lab benchmark splits --methods MCM,CLIPN`` (``assets/benchmarks/
world-splits``, test images; zero-shot methods are scored once per split) with the shipped pocket model and its
shipped CLIPN no tower, then reports per score the mean over splits (each split's metric averaged over its OOD
sets) ± the std across splits, in %:

* AUROC (the same in either convention);
* FPR95 with ID positive (fraction of OOD accepted at the first threshold keeping >= 95% of ID: MCM, LoCoOp and
  this project's tables);
* FPR95 with OOD positive (fraction of ID rejected at the threshold catching 95% of OOD: OpenOOD, pytorch-ood);
* FPR95 as CLIPN's code computes it (ID positive, the ROC linearly interpolated at TPR 0.95: the ``interpolate``
  rule of ``clipos_lab.evaluation.metrics``).

Then the same per OOD set (near-OOD shapes, textures, clutter), which says where a score gains or loses. No
setting was chosen on these images: CLIPN's settings come from ``benchmarks/clipn_tune.py`` (validation).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from clipos_lab.backbone import Backbone
from clipos_lab.data import default_benchmark_path
from clipos_lab.evaluation import metrics as M
from clipos_lab.evaluation.suite import run_suite
from clipos_lab.evaluation.tables import mean_std, mean_std_text

SPLITS = default_benchmark_path().parent / "world-splits"
COLUMNS = ("AUROC", "FPR95", "FPR95_OOD_POS", "FPR95_INTERP")


def metrics_of(id_scores, ood_scores) -> dict:
    m = M.ood_metrics(id_scores, ood_scores)
    return {"AUROC": m["AUROC"], "FPR95": m["FPR95"], "FPR95_OOD_POS": m["FPR95_OOD_POS"],
            "FPR95_INTERP": M.fpr95(id_scores, ood_scores, rule="interpolate")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/clipn_splits")
    parser.add_argument("--methods", default="MCM,CLIPN")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    args = parser.parse_args()
    backbone = Backbone.load()
    start = time.perf_counter()
    suite = run_suite(sorted(SPLITS.glob("world-split*.yaml")), backbone, out_dir=args.out,
                      methods=args.methods.split(","), shots=(1,), seeds=(1,), progress=False, save_prompts=False,
                      overwrite=args.overwrite)
    # per (method, score): per split, per OOD set, the four metrics
    table: dict[tuple, dict] = {}
    for split, result in suite.per_spec.items():
        for (method, shots, seed), sets in result.scores.items():
            if shots != 0:
                continue
            for score in sets["id"]:
                per_ood = {ood: metrics_of(sets["id"][score], s[score]) for ood, s in sets.items() if ood != "id"}
                table.setdefault((method, score), {})[split] = per_ood
    lines = [f"pocket model {backbone.weights_id}; CLIPN no tower: {getattr(backbone.no_text, 'meta', {})}",
             f"{len(suite.per_spec)} splits (test images); mean over splits of the OOD-set average ± std across "
             "splits (sample std), in %; higher score = more ID", "",
             "| method | score | AUROC | FPR95 (ID pos.) | FPR95 (OOD pos.) | FPR95 (CLIPN, interpolated) | "
             "AUROC wins vs MCM |", "|---|---|---|---|---|---|---|"]
    mcm_auroc = {split: np.mean([v["AUROC"] for v in per.values()]) for split, per in table[("MCM", "MCM")].items()} \
        if ("MCM", "MCM") in table else {}
    summary = {}
    for (method, score), per_split in table.items():
        avg = {c: [np.mean([v[c] for v in per.values()]) for per in per_split.values()] for c in COLUMNS}
        summary[f"{method}/{score}"] = {c: mean_std(v) for c, v in avg.items()}
        wins = sum(np.mean([v["AUROC"] for v in per.values()]) > mcm_auroc.get(split, np.inf)
                   for split, per in per_split.items())
        cells = [mean_std_text(*summary[f"{method}/{score}"][c]) for c in COLUMNS]
        lines.append(f"| {method} | {score} | " + " | ".join(cells) + f" | {wins}/{len(per_split)} |")
    oods = list(next(iter(next(iter(table.values())).values())))
    lines += ["", "Per OOD set: AUROC / FPR95 (ID pos.), mean over splits, in %", "",
              "| method | score | " + " | ".join(oods) + " |", "|---|---|" + "---|" * len(oods)]
    for (method, score), per_split in table.items():
        cells = [f"{100 * np.mean([p[o]['AUROC'] for p in per_split.values()]):.2f} / "
                 f"{100 * np.mean([p[o]['FPR95'] for p in per_split.values()]):.2f}" for o in oods]
        lines.append(f"| {method} | {score} | " + " | ".join(cells) + " |")
    lines.append(f"\nwhole suite: {time.perf_counter() - start:.0f} s")
    text = "\n".join(lines)
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "clipn_report.md").write_text(text + "\n")
    (Path(args.out) / "clipn_report.json").write_text(json.dumps(
        {"summary": summary, "per_split": {f"{m}/{s}": v for (m, s), v in table.items()}}, indent=1))


if __name__ == "__main__":
    main()

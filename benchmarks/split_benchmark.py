"""Every method on the random class splits of the pocket world (``assets/benchmarks/world-splits``).

    python benchmarks/split_benchmark.py [--out benchmarks/results/splits] [--methods ...]

Each split runs like the default benchmark (1- and 2-shot, seeds 1-3; per-split outputs in ``<out>/<split>/``).
One printed table per score (MCM, GL-MCM, 1 - p(unknown)) gives, per method and shots, the mean over splits of
each split's seed-averaged, OOD-averaged metric, ± the standard deviation *across splits*, and how many splits
the method wins against each baseline (AUROC; a baseline without the score is compared through its MCM).
Method defaults were chosen on validation images (``world-validation.yaml``, and the validation version of these
splits, which kept the same defaults: ``tune_defaults.py --splits``), never on these test images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from clipos_lab import metrics as M
from clipos_lab.backbone import Backbone
from clipos_lab.methods import ABLATIONS
from clipos_lab.runner import DEFAULT_METHODS, run_benchmark

SPLITS = Path(__file__).resolve().parents[1] / "assets" / "benchmarks" / "world-splits"


def split_means(summary: list[dict]) -> dict[tuple, dict[str, float]]:
    """(method, score, shots) -> {metric: seed-mean of the OOD average} for one split."""
    out: dict[tuple, dict[str, float]] = {}
    for r in summary:
        if r["ood"] in ("Average", "ID") and r["metric"] in ("AUROC", "FPR95", "ACC"):
            out.setdefault((r["method"], r["score"], r["shots"]), {})[r["metric"]] = r["mean"]
    return out


def score_table(per_split: dict[str, dict], score: str) -> str:
    """Markdown: mean ± std across splits per method and shots for ``score``, and per-split AUROC wins."""
    first = next(iter(per_split.values()))
    keys = [k for k in first if k[1] == score]
    rivals = "" if score == "MCM" else f" (their {score} if they have it, else their MCM)"
    lines = [f"Score {score}; higher = more ID; ID positive; FPR95 = OOD accepted at 95% ID recall. Mean over "
             f"{len(per_split)} random class splits (each the mean of seeds 1-3, averaged over OOD sets) ± std "
             f"across splits, in %. Wins: splits where the method's AUROC beats MCM / CoOp / LoCoOp{rivals}.", "",
             "| method | shots | AUROC | FPR95 | ACC | wins vs MCM | vs CoOp | vs LoCoOp |",
             "|---|---|---|---|---|---|---|---|"]
    for method, _, shots in keys:
        cells = []
        for metric in ("AUROC", "FPR95", "ACC"):
            v = np.array([s[(method, score, shots)][metric] for s in per_split.values()])
            cells.append(M.format_mean_std(float(v.mean()), float(v.std(ddof=1))))
        wins = []
        for rival, rival_shots in (("MCM", 0), ("CoOp", shots), ("LoCoOp", shots)):
            rival_key = next((k for k in ((rival, score, rival_shots), (rival, "MCM", rival_shots)) if k in first),
                             None)
            if method == rival or rival_key is None:
                wins.append("")
                continue
            n = sum(s[(method, score, shots)]["AUROC"] > s[rival_key]["AUROC"] for s in per_split.values())
            wins.append(f"{n}/{len(per_split)}")
        lines.append(f"| {method} | {shots} | " + " | ".join(cells + wins) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/splits")
    parser.add_argument("--methods", default=",".join([*DEFAULT_METHODS, *ABLATIONS]))
    parser.add_argument("--scores", default="MCM,GL-MCM,1-p(unknown)", help="one table per score")
    args = parser.parse_args()
    methods = args.methods.split(",")
    backbone = Backbone.load()
    per_split = {}
    for spec in sorted(SPLITS.glob("world-split*.yaml")):
        start = time.perf_counter()
        result = run_benchmark(spec, backbone, methods=methods, shots=(1, 2), seeds=(1, 2, 3),
                               out_dir=Path(args.out) / spec.stem, progress=False, save_prompts=False)
        per_split[spec.stem] = split_means(result.summary)
        zs = per_split[spec.stem][("MCM", "MCM", 0)]["AUROC"]
        print(f"{spec.stem}: {time.perf_counter() - start:.0f} s, zero-shot MCM AUROC {100 * zs:.2f}", flush=True)

    table = "\n\n".join(score_table(per_split, score) for score in args.scores.split(","))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()

"""The negative-label methods' vocabulary settings on pocket v2's validation splits (never the test splits).

    python benchmarks/negatives_tune.py [--splits 10] [--out benchmarks/results/negatives_tune_pocket2]

NegLabel and CSP share their knobs: ``ratio`` (the share of WordNet's words kept as negative labels) and
``n_groups`` (how many random groups the negatives are split into, the score averaged over groups); AdaNeg keeps
``n_negatives`` words. Their references use ratio 0.15, 100 groups and 10,000 words (chosen on ImageNet-1k with
CLIP ViT-B/16); this script asks whether other values serve pocket v2's 14-15-class splits better. Data: the
validation versions of the ten drawings splits (``val`` drawings, other scenes; ``clipos_lab.pocket.splits2``).
Printed: each setting's OOD-averaged AUROC (its reported score), mean over the splits, and its wins / losses
against the references' setting per split with a two-sided sign test. AdaNeg streams one seeded order (seed 1).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from scipy.stats import binomtest

from clipos_lab.backbone import Backbone
from clipos_lab.data import BenchmarkSpec
from clipos_lab.evaluation.suite import run_suite
from clipos_lab.files import write_json, write_text
from clipos_lab.pocket.splits2 import drawings_specs

REFERENCE = {"ratio": 0.15, "n_groups": 100, "n_negatives": 10_000}
SHARED = [{"ratio": r, "n_groups": g} for r in (0.05, 0.15, 0.3) for g in (10, 100)]
ADANEG = [{"n_negatives": n} for n in (3_500, 10_000, 20_000)]
SCORES = {"NegLabel": "NegLabel", "CSP": "CSP", "AdaNeg": "AdaNeg"}


def per_split(suite, method: str) -> dict[str, float]:
    """Each split's AUROC of ``method``'s reported score, averaged over OOD sets (and seeds)."""
    rows = suite.rows
    rows = rows[(rows["method"] == method) & (rows["metric"] == "AUROC") & (rows["ood"] != "ID")]
    score = SCORES[method] if SCORES[method] in set(rows["score"]) else rows["score"].iloc[0]
    rows = rows[rows["score"] == score]
    return {k: 100 * float(v) for k, v in rows.groupby("spec")["value"].mean().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/negatives_tune_pocket2")
    args = parser.parse_args()
    specs = [BenchmarkSpec.from_dict(d) for d in drawings_specs(validation=True)[: args.splits]]
    backbone = Backbone.load("pocket2")
    runs: dict[str, dict[str, dict[str, float]]] = {}
    for methods, grid in ((["NegLabel", "CSP"], SHARED), (["AdaNeg"], ADANEG)):
        for options in grid:
            start = time.perf_counter()
            suite = run_suite(specs, backbone, progress=False, methods=methods, shots=(1,), seeds=(1,),
                              method_options={m: options for m in methods})
            for m in methods:
                runs[f"{m} {json.dumps(options, sort_keys=True)}"] = per_split(suite, m)
            print(f"{methods} {options}: {time.perf_counter() - start:.0f} s", flush=True)
    lines = [f"OOD-averaged AUROC on {len(specs)} pocket v2 validation splits (mean over splits); wins-losses "
             "against the references' setting per split, two-sided sign test", "",
             "| method | setting | AUROC | vs reference | p |", "|---|---|---|---|---|"]
    for key, values in runs.items():
        method, options = key.split(" ", 1)
        settings = json.loads(options)
        ref = {k: REFERENCE[k] for k in settings}
        base = runs[f"{method} {json.dumps(ref, sort_keys=True)}"]
        wins = sum(values[s] > base[s] for s in values)
        losses = sum(values[s] < base[s] for s in values)
        p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
        mean = sum(values.values()) / len(values)
        lines.append(f"| {method} | {options}{' (reference)' if settings == ref else ''} | {mean:.2f} | "
                     f"{wins}-{losses} | {p:.3f} |")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(text + "\n", out / "negatives_tune.md")
    write_json(runs, out / "negatives_tune.json")


if __name__ == "__main__":
    main()

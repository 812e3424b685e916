"""Why CLIP-OS loses on some draws: refit the worst and some typical draws of a draw_spread run and diagnose them.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/diagnose_draws.py \\
        --draws benchmarks/results/draw_spread/clipos-before/draws.csv [--worst 8] [--typical 8] \\
        [--options '{"beta": 0.1}'] [--out benchmarks/results/draw_spread/diagnosis.csv]

Picks, for CLIP-OS's ``--score`` (default 1-p(unknown)), the ``--worst`` draws with the lowest gain over MCM and
``--typical`` draws around the median, refits each (same benchmark, shots and seed, hence the same shots and
outliers; CLIP-OS options from ``--options``) and runs :func:`clipos_lab.viz.diagnosis.diagnose_draw`: ID accuracy,
ID test images classified *unknown*, outlier geometry against the shots, ``rho`` and patches on the object, and
the loss history. Validation benchmarks only (the draw_spread run's). Prints a table, writes a CSV.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import torch

from clipos_lab.backbone import Backbone
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec
from clipos_lab.evaluation import metrics as M
from clipos_lab.evaluation import tables as T
from clipos_lab.evaluation.runner import encode_banks
from clipos_lab.methods import build_method
from clipos_lab.pocket.splits import validation_suite
from clipos_lab.viz.diagnosis import diagnose_draw

SHOWN = ["spec", "shots", "seed", "kind", "gain", "auroc_mcm", "auroc_unknown", "acc", "id_to_unknown",
         "worst_class_to_unknown", "p_unknown_id", "p_unknown_ood", "outlier_to_shot", "shot_to_other_class",
         "id_nearest_is_outlier", "lam_extreme", "rho_mean", "mask_in_box", "chance_in_box", "loss_id_last",
         "loss_outlier_first", "loss_outlier_last", "finite"]


def pick(draws: pd.DataFrame, score: str, worst: int, typical: int) -> pd.DataFrame:
    cells = draws[(draws["method"] == "CLIP-OS") & (draws["score"] == score)].sort_values("gain")
    low = cells.head(worst).assign(kind="worst")
    mid = len(cells) // 2
    middle = cells.iloc[max(0, mid - typical // 2): mid + (typical + 1) // 2].assign(kind="typical")
    return pd.concat([low, middle[~middle.index.isin(low.index)]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", required=True, help="draws.csv of benchmarks/draw_spread.py")
    parser.add_argument("--score", default="1-p(unknown)")
    parser.add_argument("--worst", type=int, default=8)
    parser.add_argument("--typical", type=int, default=8)
    parser.add_argument("--options", default="{}", help="CLIP-OS options (JSON) of the refits")
    parser.add_argument("--fresh", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/draw_spread/diagnosis.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = json.loads(args.options)
    draws = pd.read_csv(args.draws)
    chosen = pick(draws, args.score, args.worst, args.typical)
    specs = {d["name"]: BenchmarkSpec.from_dict(d) for d in validation_suite(n_fresh=args.fresh)}
    backbone = Backbone.load()
    rows = []
    for spec_name, group in chosen.groupby("spec", sort=False):
        banks = encode_banks(specs[spec_name], backbone, progress=False)
        mcm = build_method("MCM").fit(backbone, banks.id_train)
        base_id = mcm.score(banks.id_test, scores=["MCM"])["MCM"]
        base = np.mean([M.auroc(base_id, mcm.score(b, scores=["MCM"])["MCM"]) for b in banks.ood.values()])
        for _, draw in group.iterrows():
            train, _ = banks.id_train.draw(int(draw["shots"]), int(draw["seed"]))
            method = build_method("CLIP-OS", seed=int(draw["seed"]), prompt=PromptConfig(progress=False), **options)
            method.fit(backbone, train)
            id_s = method.score(banks.id_test, scores=["MCM", "1-p(unknown)"])
            ood_s = [method.score(b, scores=["MCM", "1-p(unknown)"]) for b in banks.ood.values()]
            au = {s: float(np.mean([M.auroc(id_s[s], o[s]) for o in ood_s])) for s in id_s}
            row = {"spec": spec_name, "shots": int(draw["shots"]), "seed": int(draw["seed"]), "kind": draw["kind"],
                   "gain": au[args.score] - base, "auroc_mcm": au["MCM"], "auroc_unknown": au["1-p(unknown)"],
                   **diagnose_draw(method, train, banks.id_test, banks.ood, banks.train_dataset)}
            rows.append(row)
            print(spec_name, row["shots"], row["seed"], row["kind"], f"gain {100 * row['gain']:+.2f}", flush=True)
    df = pd.DataFrame(rows)
    T.write_csv(df, args.out)
    shown = df[[c for c in SHOWN if c in df.columns]]
    summary = shown.groupby("kind").mean(numeric_only=True).T
    summary["corr_with_gain"] = shown.corr(numeric_only=True)["gain"]  # over the refitted draws
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print(shown.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

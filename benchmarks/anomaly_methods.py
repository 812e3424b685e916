"""Anomaly methods side by side on the pocket defect world: MuSc preset, RsCIN, WinCLIP, WinCLIP+, coreset.

    python benchmarks/anomaly_methods.py [--spec world-anomaly] [--render-seeds 300,301,302]
        [--variants all] [--out benchmarks/results/anomaly-methods]

Each replicate is one render seed of the spec (a fresh test set and training pool of the same six products) with
its own shot seed (replicate j draws its shots with seed j + 1), so the ± is over test sets and shots together,
for zero-shot methods too. Cost per image: scoring time (fitting included: building the memory, the coreset,
encoding WinCLIP's windows, which are not cached on disk) over the test images scored, with patch tokens cached,
one CPU thread. The methods' defaults are used unless the variant says otherwise; defaults were chosen on
``world-anomaly-validation`` (render seed 400; run this script with ``--spec world-anomaly-validation
--render-seeds 400,401,402`` to see the validation numbers).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from clipos_lab.anomaly import AnomalySpec, run_anomaly
from clipos_lab.anomaly.data import shipped_spec
from clipos_lab.anomaly.windows import clear_window_cache
from clipos_lab.backbone import Backbone
from clipos_lab.evaluation import tables as T
from clipos_lab.files import write_text

VARIANTS = {  # label: (method, options, shots)
    "mutual (project defaults)": ("mutual", {}, [0]),
    "mutual + RsCIN": ("mutual", {"rscin": [1, 2, 3]}, [0]),
    "MuSc preset": ("musc", {}, [0]),
    "MuSc preset + RsCIN": ("musc", {"rscin": [1, 2, 3]}, [0]),
    "WinCLIP": ("winclip", {}, [0]),
    "WinCLIP+": ("winclip+", {}, [1, 2, 4]),
    "patch memory": ("patch-memory", {}, [1, 2, 4]),
    "patch memory + coreset 10%": ("patch-memory", {"coreset": 0.1}, [1, 2, 4]),
}
METRICS = ["image_AUROC", "pixel_AUROC", "AUPRO", "pixel_F1max"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="world-anomaly")
    parser.add_argument("--render-seeds", default="300,301,302")
    parser.add_argument("--variants", default="all", help=f"comma-separated labels from {list(VARIANTS)}, or all")
    parser.add_argument("--out", default="benchmarks/results/anomaly-methods")
    args = parser.parse_args()
    torch.set_num_threads(1)
    backbone = Backbone.load("pocket")
    base = AnomalySpec.from_yaml(shipped_spec(args.spec) or args.spec)
    seeds = [int(s) for s in args.render_seeds.split(",")]
    labels = list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(",")]
    records = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for label in labels:
        method, options, shots = VARIANTS[label]
        for j, render_seed in enumerate(seeds):
            spec = AnomalySpec(f"{base.name}-r{render_seed}", {**base.data, "seed": render_seed}, base.path,
                               base.base_dir)
            clear_window_cache()  # each replicate pays for its own windows
            start = time.perf_counter()
            result = run_anomaly(spec, backbone, methods=[method], shots=shots, seeds=[j + 1],
                                 method_options={method: options}, progress=False)
            wall = time.perf_counter() - start
            for row in result.rows:
                if row["category"] == "mean" and row["defect"] in ("all", "scratch", "bite"):
                    records.append({"variant": label, "render_seed": render_seed, **row})
            records.append({"variant": label, "render_seed": render_seed, "shots": -1, "metric": "ms_per_image",
                            "value": result.timings["ms_per_image"][method], "defect": "all", "wall_s": wall})
            print(f"{label:28s} render seed {render_seed}: {wall:.0f} s", flush=True)
            write_text(json.dumps(records, indent=1), out / "records.json")  # so far: a stopped run keeps its part
    table = render(records, labels)
    write_text(table, out / "table.md")
    print(f"\nspec {base.name}, render seeds {seeds} (one replicate each; shot seed = replicate + 1), pocket model, "
          f"1 CPU thread; mean ± std over replicates, in %\n")
    print(table)


def render(records: list[dict], labels: list[str]) -> str:
    frame = T.frame(records)
    cost = frame[frame.metric == "ms_per_image"].groupby("variant")["value"].agg(list)
    rows = []
    for label in labels:
        cells = frame[(frame.variant == label) & (frame.metric != "ms_per_image")]
        for shots in sorted(cells["shots"].unique()):
            here = cells[cells.shots == shots]
            row = {"method": label, "shots": int(shots)}
            for metric in METRICS:
                values = here[(here.metric == metric) & (here.defect == "all")]["value"]
                row[metric] = T.mean_std_text(*T.mean_std(values), percent=True) if len(values) else "-"
            for defect in ("scratch", "bite"):
                values = here[(here.metric == "image_AUROC") & (here.defect == defect)]["value"]
                row[f"image_AUROC {defect}"] = T.mean_std_text(*T.mean_std(values), percent=True)
            mean_ms, std_ms = T.mean_std(cost[label])
            row["ms / image (all shots)"] = f"{mean_ms:.1f} ± {std_ms:.1f}"
            rows.append(row)
    return T.to_markdown(T.frame(rows), "") + "\n"


if __name__ == "__main__":
    main()

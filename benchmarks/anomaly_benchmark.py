"""The anomaly benchmark on the pocket defect world, with the grid-limit measurement.

    python benchmarks/anomaly_benchmark.py [--spec world-anomaly] [--seeds 1,2,3] [--out benchmarks/results/anomaly]

Runs ``python -m clipos_lab anomaly <spec> --shots 0,1,2,4`` in-process with the methods' defaults (chosen on
``world-anomaly-validation.yaml`` by ``benchmarks/anomaly_tune.py``), prints the summary over the six products,
per-defect-type tables, the bars (4-shot patch memory image and pixel AUROC >= 0.90), and how much the pocket
model's 8 x 8 patch grid limits pixel accuracy: the pixel AUROC / AUPRO of a grid oracle (each patch scored by the
true defect fraction it covers, upsampled like the methods' maps) at 8 x 8 and at finer grids, over the same
test masks.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from clipos_lab.anomaly import AnomalySpec, run_anomaly
from clipos_lab.anomaly import metrics as AM
from clipos_lab.anomaly.base import grid_oracle
from clipos_lab.anomaly.data import shipped_spec
from clipos_lab.anomaly.runner import defect_table
from clipos_lab.backbone import Backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="world-anomaly")
    parser.add_argument("--shots", default="0,1,2,4")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--out", default="benchmarks/results/anomaly")
    args = parser.parse_args()
    torch.set_num_threads(1)
    backbone = Backbone.load("pocket")
    spec = AnomalySpec.from_yaml(shipped_spec(args.spec) or args.spec)
    result = run_anomaly(spec, backbone, shots=[int(s) for s in args.shots.split(",")],
                         seeds=[int(s) for s in args.seeds.split(",")], out_dir=args.out, progress=False,
                         overwrite=True)  # this script owns its output folder
    print(f"spec {spec.name} ({spec.data}), pocket model, seeds {args.seeds} (shots drawn from each product's "
          f"normal pool); wrote {args.out}/\n")
    print(result.summary_markdown())
    pd.set_option("display.width", 200)
    for metric in ("image_AUROC", "pixel_AUROC", "AUPRO"):
        print(f"\n{metric} per defect type (mean over products and seeds):")
        print((100 * defect_table(result.summary, metric)).round(1).to_string())
    frame = pd.DataFrame(result.summary)
    four = frame[(frame.method == "patch-memory") & (frame.shots == 4) & (frame.category == "mean")
                 & (frame.defect == "all")].set_index("metric")
    if len(four):
        image, pixel = four.loc["image_AUROC", "mean"], four.loc["pixel_AUROC", "mean"]
        verdict = "met" if image >= 0.9 and pixel >= 0.9 else "NOT met"
        print(f"\nbar: 4-shot patch memory image AUROC {image:.3f}, pixel AUROC {pixel:.3f} (>= 0.90 each): {verdict}")
    print("\nms per test image (scoring incl. maps, features cached): "
          + ", ".join(f"{m} {v:.2f}" for m, v in result.timings["ms_per_image"].items()))

    print("\ngrid limit: pixel metrics of the grid oracle on the same test masks (mean over products)")
    grids = [backbone.grid[0], 14, 16, 32]
    rows = {g: {"pixel_AUROC": [], "AUPRO": [], "pixel_F1max": []} for g in grids}
    for category in result.categories.values():
        masks = category.test.masks(backbone.image_size)
        for g in grids:
            oracle = grid_oracle(masks, (g, g))
            rows[g]["pixel_AUROC"].append(AM.pixel_auroc(masks, oracle.maps))
            rows[g]["AUPRO"].append(AM.aupro(masks, oracle.maps))
            rows[g]["pixel_F1max"].append(AM.f1_max(masks, oracle.maps))
    for g in grids:
        print(f"  {g:>2} x {g:<2} grid ({backbone.image_size / g:.1f} px patches): pixel AUROC "
              f"{np.mean(rows[g]['pixel_AUROC']):.3f}, AUPRO {np.mean(rows[g]['AUPRO']):.3f}, pixel F1-max "
              f"{np.mean(rows[g]['pixel_F1max']):.3f}")


if __name__ == "__main__":
    main()

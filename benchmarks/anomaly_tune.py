"""Choose the anomaly methods' settings on the validation split of the pocket defect world (never on the test).

    python benchmarks/anomaly_tune.py [--seeds 11,12] [--out benchmarks/results/anomaly-tuning.json]
    python benchmarks/anomaly_tune.py --world 2 --out benchmarks/results/anomaly-tuning-pocket2.json

Data: ``assets/benchmarks/world-anomaly-validation.yaml`` (render seed 400; the test spec uses 300); with
``--world 2`` pocket v2 on ``drawings-anomaly-validation.yaml`` (the pack's ``val`` drawings; the test spec draws
``eval`` ones). Patch memory is tuned at 4 shots over the given seeds (shots drawn from each product's normal
pool), mutual scoring zero-shot. Objective: the mean of image AUROC and pixel AUROC over the whole test set,
averaged over the products. Printed: image / pixel AUROC in percent per configuration, best first.

v1's grid names its 4 blocks; v2's (6 blocks) counts from the last block, as the methods' defaults do
((-3, -2, -1): the last three blocks of any depth), over fewer values: its 14 x 14 grid makes mutual scoring
about ten times dearer per image.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from clipos_lab.anomaly import AnomalySpec, encode_tokens
from clipos_lab.anomaly import metrics as AM
from clipos_lab.anomaly.memory import PatchMemory
from clipos_lab.anomaly.mutual import MutualScoring
from clipos_lab.backbone import Backbone
from clipos_lab.data import few_shot
from clipos_lab.resources import BENCHMARKS

VALIDATION = {1: BENCHMARKS / "world-anomaly-validation.yaml", 2: BENCHMARKS / "drawings-anomaly-validation.yaml"}
LAYER_SETS = {"last": (-1,), "3+4": (3, 4), "2+3+4": (2, 3, 4), "2+3": (2, 3), "surgery": ("surgery",),
              "3+surgery": (3, "surgery")}
# world 2: (layer sets, sigmas, image scores, neighbours) of patch memory; (layer sets, radii, fractions) of mutual
GRID2 = ({"last": (-1,), "-2,-1": (-2, -1), "-3..-1": (-3, -2, -1), "-4..-2": (-4, -3, -2), "-5..-3": (-5, -4, -3),
          "surgery": ("surgery",)}, (4.0, 8.0), ("top10",), (1,),
         ("-2,-1", "-3..-1", "-4..-2", "-5..-3"), ((1,), (1, 3)), (0.1,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="11,12")
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--world", type=int, default=1, choices=[1, 2])
    parser.add_argument("--out", default="benchmarks/results/anomaly-tuning.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    backbone = Backbone.load("pocket" if args.world == 1 else "pocket2")
    blocks = tuple(range(1, backbone.depth + 1))
    data = []
    for cat in AnomalySpec.from_yaml(VALIDATION[args.world]).categories():
        train = encode_tokens(cat.train, backbone, blocks, progress=False)
        test = encode_tokens(cat.test, backbone, blocks, progress=False)
        normals = [train.select_ids([m["id"] for m in few_shot(cat.train, args.shots, s)[1]]) for s in seeds]
        data.append((cat, test, cat.test.masks(backbone.image_size), normals))

    def evaluate(make, few: bool) -> dict:
        image, pixel = [], []
        for cat, test, masks, normals in data:
            for normal in (normals if few else [None]):
                scores = make().fit(normal).score(test)
                labels = cat.test.labels > 0
                image.append(AM.image_auroc(labels, scores.image))
                pixel.append(AM.pixel_auroc(masks, scores.maps))
        return {"image_AUROC": float(np.mean(image)), "pixel_AUROC": float(np.mean(pixel))}

    if args.world == 1:
        sets, sigmas, scores, neighbours = LAYER_SETS, (0.0, 4.0, 8.0), ("max", "top10"), (1, 3)
        mutual_sets, radii_grid = ("last", "3+4", "2+3+4", "surgery"), ((1,), (1, 3), (1, 3, 5))
        fractions = (0.1, 0.3, 0.5)
    else:
        sets, sigmas, scores, neighbours, mutual_sets, radii_grid, fractions = GRID2
    records = []
    start = time.perf_counter()
    for (lname, layers), sigma, how, k in itertools.product(sets.items(), sigmas, scores, neighbours):
        res = evaluate(lambda: PatchMemory(layers, neighbours=k, sigma=sigma, image_score=how), few=True)
        records.append({"method": "patch-memory", "layers": lname, "sigma": sigma, "image_score": how,
                        "neighbours": k, **res})
        print(records[-1], flush=True)
    for (lname, layers), radii, fraction, how in itertools.product(
            [(n, sets[n]) for n in mutual_sets], radii_grid, fractions, scores):
        res = evaluate(lambda: MutualScoring(layers, radii=radii, fraction=fraction, sigma=4.0, image_score=how),
                       few=False)
        records.append({"method": "mutual", "layers": lname, "radii": list(radii), "fraction": fraction,
                        "image_score": how, "sigma": 4.0, **res})
        print(records[-1], flush=True)
    for record in records:
        record["objective"] = (record["image_AUROC"] + record["pixel_AUROC"]) / 2
    print(f"validation grid on {VALIDATION[args.world].name} ({len(data)} products, seeds {seeds} for "
          f"{args.shots}-shot patch memory), {time.perf_counter() - start:.0f} s; image / pixel AUROC in %, best first")
    for method in ("patch-memory", "mutual"):
        print(f"\n{method}")
        for r in sorted((r for r in records if r["method"] == method), key=lambda r: -r["objective"])[:12]:
            opts = {k: v for k, v in r.items() if k not in ("method", "image_AUROC", "pixel_AUROC", "objective")}
            print(f"  {100 * r['image_AUROC']:5.1f} / {100 * r['pixel_AUROC']:5.1f}  {opts}")
    Path(args.out).write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()

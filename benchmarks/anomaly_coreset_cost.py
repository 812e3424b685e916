"""What PatchCore's coreset costs and saves for the patch memory at ViT-B/16 geometry (timing, random tokens).

    python benchmarks/anomaly_coreset_cost.py [--shots 4,16,64] [--fraction 0.1] [--n-test 50]

Tokens: 14 x 14 = 196 patches of 512 dimensions per image, one block, drawn at random around a few hundred
"normal" directions so nearest neighbours are meaningful (timing only: no model is run). For each shot count the
script fits the memory with and without ``coreset`` and scores ``--n-test`` images, one CPU thread, and prints the
fit time, the scoring time per test image, the memory size, and how far the coreset's nearest-patch distances
lie above the full memory's (the coreset can only make a distance larger).
"""

from __future__ import annotations

import argparse
import time

import torch

from clipos_lab.anomaly.memory import PatchMemory
from clipos_lab.anomaly.tokens import TokenBank


def bank(tokens: torch.Tensor) -> TokenBank:
    n = len(tokens)
    return TokenBank([f"i{k}" for k in range(n)], torch.zeros(n, dtype=torch.long), tokens.mean(1), {12: tokens},
                     None, (14, 14), 224, {"depth": 12})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", default="4,16,64")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--n-test", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(300, 512, generator=gen)

    def images(n):
        pick = torch.randint(len(centres), (n, 196), generator=gen)
        return centres[pick] + 0.3 * torch.randn(n, 196, 512, generator=gen)

    test = bank(images(args.n_test))
    print(f"ViT-B/16 geometry: 196 patches x 512 d, 1 block; {args.n_test} test images; coreset fraction "
          f"{args.fraction}; 1 CPU thread\n")
    print("| shots | memory (patches) | fit s (full / coreset) | score ms per image (full / coreset) | speed-up | "
          "distance increase (mean / max) |")
    print("|---|---|---|---|---|---|")
    for shots in [int(s) for s in args.shots.split(",")]:
        normal = bank(images(shots))
        timings, patches = {}, {}
        for label, options in (("full", {}), ("coreset", {"coreset": args.fraction})):
            method = PatchMemory(layers=(12,), sigma=0.0, **options)
            start = time.perf_counter()
            method.fit(normal)
            fit = time.perf_counter() - start
            start = time.perf_counter()
            patches[label] = method.patch_scores(test)
            score = (time.perf_counter() - start) / args.n_test
            timings[label] = (fit, score, len(method.memory[12]))
        rise = patches["coreset"] - patches["full"]
        (f_fit, f_score, f_size), (c_fit, c_score, c_size) = timings["full"], timings["coreset"]
        print(f"| {shots} | {f_size} -> {c_size} | {f_fit:.3f} / {c_fit:.2f} | {1000 * f_score:.1f} / "
              f"{1000 * c_score:.1f} | {f_score / c_score:.1f}x | {rise.mean():.4f} / {rise.max():.4f} |", flush=True)


if __name__ == "__main__":
    main()

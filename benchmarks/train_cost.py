"""What training on cached features saves: one CLIP-OS run with ViT-B-16 (random weights), 100 classes, 1-shot.

    python benchmarks/train_cost.py [--classes 100] [--epochs 50] [--measure-steps 3]

Measures, in one run: the feature encoding of the 1-shot set (done once), the full CLIP-OS training on cached
features (``--epochs`` epochs, batch 32) with its wall time and peak resident memory, and the time of a few
training steps that re-encode their batch of images every step, as the reference LoCoOp code does. The last
number is extrapolated to the same number of steps (and says so): measuring it in full would take hours here.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch

from clipos_lab.backbone import Backbone
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import WorldDataset
from clipos_lab.features import FeatureBank
from clipos_lab.methods import CLIPOS


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--measure-steps", type=int, default=3)
    args = parser.parse_args()

    backbone = Backbone.load(args.model, random_weights=True)
    # 1-shot set: one world image per class, class names "class 0" .. "class 99" (the text is what costs)
    world = WorldDataset(shapes=("star",), n_per_class=args.classes, image_size=backbone.image_size)
    start = time.perf_counter()
    bank = FeatureBank.encode(world, backbone, batch_size=16, cache=False, progress=False)
    encode_s = time.perf_counter() - start
    bank.labels = torch.arange(args.classes)
    bank.classnames = [f"class {i}" for i in range(args.classes)]
    rss_before = peak_rss_mb()

    cfg = PromptConfig(epochs=args.epochs, batch_size=args.batch, progress=False)
    method = CLIPOS(prompt=cfg, seed=0)
    start = time.perf_counter()
    method.fit(backbone, bank)
    train_s = time.perf_counter() - start
    steps = len(method.history_)
    print(f"{args.model} random weights, {args.classes} classes, 1-shot, {args.epochs} epochs, batch {args.batch}: "
          f"{steps} steps, {torch.get_num_threads()} threads")
    print(f"encode the 1-shot set once         : {encode_s:7.1f} s ({args.classes} images)")
    print(f"CLIP-OS training on cached features: {train_s:7.1f} s ({train_s / steps:.2f} s/step), "
          f"peak RSS {peak_rss_mb():.0f} MB (before training {rss_before:.0f} MB)")

    # reference: every step re-encodes its batch of images through the frozen image encoder
    images = torch.stack([backbone.preprocess(world.load(i % len(world))) for i in range(args.batch)])
    start = time.perf_counter()
    for _ in range(args.measure_steps):
        backbone.encode_images(images, surgery=True)
    encode_step = (time.perf_counter() - start) / args.measure_steps
    per_step = train_s / steps + encode_step
    print(f"re-encoding reference              : {encode_step:.2f} s image encoding per step, measured over "
          f"{args.measure_steps} steps of {args.batch} images")
    print(f"  extrapolated to {steps} steps     : {per_step * steps:7.1f} s "
          f"({per_step * steps / train_s:.1f}x the cached-feature run) [extrapolated, not run]")
    print(f"steps per epoch: ceil({args.classes}/{args.batch}) = {math.ceil(args.classes / args.batch)}")


if __name__ == "__main__":
    main()

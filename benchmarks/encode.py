"""Encoding throughput of the FeatureBank against open_clip's raw forward, measured in one run.

    python benchmarks/encode.py [--model ViT-B-16] [--images 64] [--batch 16]

Prints images/s of (a) the raw ``encode_image`` forward (global embedding only), (b) the FeatureBank encode of
global + patch tokens, (c) the same plus the value-value (surgery) tokens, all on the same images with the same
preprocessing, and the ratios b/a and c/a. Then the time to reload a cached bank of 1,000 images and the bytes per
image on disk. Weights are random (the speed does not depend on them), so no download is needed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from clipos_lab.backbone import Backbone
from clipos_lab.data import WorldDataset
from clipos_lab.features import FeatureBank


def throughput(fn, n_images: int, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_images / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reload-images", type=int, default=1000)
    args = parser.parse_args()

    backbone = Backbone.load(args.model, random_weights=True)
    size = backbone.image_size
    dataset = WorldDataset(shapes=("circle", "star", "heart", "cross"), n_per_class=args.images // 4, image_size=size)
    pil = [dataset.load(i) for i in range(len(dataset))]  # rendered once, outside every timing

    class InMemory:
        name, classnames, samples = dataset.name, dataset.classnames, dataset.samples

        def __len__(self):
            return len(pil)

        def load(self, i):
            return pil[i]

    def raw():
        with torch.no_grad():
            for s in range(0, len(pil), args.batch):
                batch = torch.stack([backbone.preprocess(im) for im in pil[s: s + args.batch]])
                backbone.model.encode_image(batch)

    encoded = {}

    def bank(surgery: bool):
        def encode():
            encoded[surgery] = FeatureBank.encode(InMemory(), backbone, batch_size=args.batch, surgery=surgery,
                                                  cache=False, progress=False)
        return encode

    n = len(pil)
    print(f"{args.model}, random weights, {n} images of {size}px, batch {args.batch}, "
          f"{torch.get_num_threads()} threads")
    raw()  # warm-up
    r_raw = throughput(raw, n)
    r_patch = throughput(bank(False), n)
    r_surgery = throughput(bank(True), n)
    print(f"raw open_clip encode_image      : {r_raw:7.2f} img/s")
    print(f"FeatureBank global + patch      : {r_patch:7.2f} img/s   ratio {r_patch / r_raw:.3f} (target >= 0.85)")
    print(f"FeatureBank + surgery tokens    : {r_surgery:7.2f} img/s   ratio {r_surgery / r_raw:.3f} "
          f"(target >= 0.75), surgery_blocks={backbone.surgery_blocks}")

    # cached reload: a bank of the model's real shapes, stored as the cache stores it
    one = encoded[True].subset([0])
    m = args.reload_images
    big = FeatureBank(one.global_.repeat(m, 1), one.patches.repeat(m, 1, 1), one.surgery.repeat(m, 1, 1),
                      torch.zeros(m, dtype=torch.long), [f"img{i:05d}" for i in range(m)], ["x"], one.grid)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bank.safetensors"
        big.save(path)
        FeatureBank.load(path)  # page cache warm, as for a second run
        start = time.perf_counter()
        loaded = FeatureBank.load(path)
        _ = float(loaded.patches.sum()) + float(loaded.surgery.sum())  # read every byte, not just map the file
        seconds = time.perf_counter() - start
        per_image = path.stat().st_size / m
    print(f"cached reload of {m} images      : {seconds:.3f} s (target < 1 s)")
    print(f"on disk per image               : {per_image / 1e3:.0f} KB (patch + surgery tokens as "
          f"{one.patches.dtype}, {one.patches.shape[1]} x {one.patches.shape[2]} each)")


if __name__ == "__main__":
    main()

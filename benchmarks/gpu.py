"""The whole pipeline on one CUDA GPU at ImageNet scale (K = 1000 classes), with random ViT-B/16 weights.

    python benchmarks/gpu.py [--precision fp32|bf16|fp16] [--images 4096] [--epochs 2] [--workers 4]

Encodes generated 224 px images (ID test, one OOD set and a 1-shot pool of 1000 classes) through the DataLoader
pipeline into streaming FeatureBanks, trains CoOp, LoCoOp and CLIP-OS prompts at K = 1000 and scores every bank,
all on the GPU, and prints images/s, steps/s and peak GPU memory per stage. Random weights: speed and memory only,
never detection quality. Where torch sees no CUDA device it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image


class DeviceClock:
    """Synchronise, reset and read the peak memory of the device work runs on (no-ops on the CPU), so a timer
    stops only after the GPU has finished and each stage's peak is its own."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> str:
        return f"{torch.cuda.max_memory_allocated(self.device) / 2**30:.2f} GiB" if self.cuda else "n/a (CPU)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--images", type=int, default=4096, help="ID test images (the OOD set has half as many)")
    parser.add_argument("--epochs", type=int, default=2, help="prompt-training epochs per method")
    parser.add_argument("--batch", type=int, default=256, help="encoder batch size")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run the same code on the CPU (tiny sizes advised) to check it, without GPU numbers")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        args.device, args.precision = "cpu", "fp32"
    elif not torch.cuda.is_available():
        print("benchmarks/gpu.py: torch sees no CUDA device on this machine, so there is nothing to measure. "
              "Run it on a machine with an NVIDIA GPU (python benchmarks/gpu.py).", file=sys.stderr)
        return 2

    from clipos_lab.backbone import Backbone
    from clipos_lab.clipos.prompts import PromptConfig
    from clipos_lab.data.datasets import ImageDataset, Sample
    from clipos_lab.features import FeatureBank
    from clipos_lab.methods import build_method

    class Generated(ImageDataset):
        """Seeded noise images, decoded in the workers like files would be."""

        def __init__(self, name, n, classes, seed):
            super().__init__(name, [f"class {k}" for k in range(classes)],
                             [Sample(f"{i:07d}", i % classes) for i in range(n)])
            self.seed = seed

        def _load_sample(self, sample):
            rng = np.random.default_rng([self.seed, int(sample.id)])
            return Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))

        def _fingerprint_sample(self, sample):
            return f"{sample.id}|{self.seed}"

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    clock = DeviceClock(device)
    sync, reset, peak = clock.sync, clock.reset, clock.peak
    backbone = Backbone.load("ViT-B-16", random_weights=True, device=str(device), precision=args.precision)
    where = torch.cuda.get_device_name(device) if cuda else "CPU smoke run"
    print(f"{where}, ViT-B/16 random weights, precision {args.precision}, "
          f"{args.workers} DataLoader workers, K = {args.classes}")
    k = args.classes
    sets = {"id_test": Generated("gpu-id", args.images, k, 1), "ood": Generated("gpu-ood", args.images // 2, 1, 2),
            "train_1shot": Generated("gpu-train", k, k, 3)}
    banks = {}
    with tempfile.TemporaryDirectory() as cache:
        for name, ds in sets.items():
            reset()
            sync()
            start = time.perf_counter()
            banks[name] = FeatureBank.encode(ds, backbone, batch_size=args.batch, cache=cache, progress=False,
                                             num_workers=args.workers)
            sync()
            seconds = time.perf_counter() - start
            print(f"encode {name:12} {len(ds):6d} images: {len(ds) / seconds:8.1f} images/s, peak GPU "
                  f"{peak()}")
        # model only, for comparison: the same forward on tensors already on the GPU
        x = torch.randn(args.batch, 3, backbone.image_size, backbone.image_size, device=backbone.device)
        backbone.encode_images(x)
        sync()
        start = time.perf_counter()
        for _ in range(4):
            backbone.encode_images(x)
        sync()
        print(f"model only (tensors on the GPU): {4 * args.batch / (time.perf_counter() - start):8.1f} images/s")

        cfg = PromptConfig.imagenet_reference(epochs=args.epochs, progress=False)  # n_ctx 16, warm-up 1
        for name in ("CoOp", "LoCoOp", "CLIP-OS"):
            reset()
            sync()
            start = time.perf_counter()
            method = build_method(name, seed=1, prompt=cfg).fit(backbone, banks["train_1shot"])
            sync()
            fit_s = time.perf_counter() - start
            steps = len(method.history_)
            fit_peak = peak()
            reset()
            start = time.perf_counter()
            scores = {s: method.score(banks[s]) for s in ("id_test", "ood")}
            sync()
            score_s = time.perf_counter() - start
            n_scored = len(banks["id_test"]) + len(banks["ood"])
            print(f"{name:8} K={k}: {steps} steps in {fit_s:.1f} s = {steps / fit_s:.2f} steps/s (incl. stage 1-2), "
                  f"peak GPU {fit_peak}; scoring {n_scored / score_s:,.0f} images/s "
                  f"({', '.join(scores['id_test'])}), peak GPU "
                  f"{peak()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

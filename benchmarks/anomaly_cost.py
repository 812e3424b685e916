"""Per-image cost of the anomaly methods at ViT-B/16 geometry (224 px, 14 x 14 patches, 512-d tokens).

    python benchmarks/anomaly_cost.py [--model ViT-B-16] [--layers 6,9,12] [--n-test 100] [--shots 4]

Random weights (timing only: no number here is a detection result). Measures in one run, on this CPU with the
given torch threads: encoding one image into the tokens of ``--layers`` (one forward), then scoring a test set
of ``--n-test`` images (tokens: the encoded ones repeated with noise) with patch memory (``--shots`` normal
images), mutual scoring (radii 1 and 3) and state prompts, each including its maps (upsampling + blur at 224 px);
per image in milliseconds, the size of what each method keeps, and the process's peak resident memory after
each stage. Mutual scoring's cost grows with the test-set size (each image is compared with all others).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from clipos_lab.anomaly.memory import PatchMemory
from clipos_lab.anomaly.mutual import MutualScoring
from clipos_lab.anomaly.prompts import StatePrompts
from clipos_lab.anomaly.tokens import TokenBank, forward_layers
from clipos_lab.backbone import Backbone


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--layers", default="6,9,12")
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--encode-images", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layers = [int(x) for x in args.layers.split(",")]
    backbone = Backbone.load(args.model, random_weights=True)
    size, grid = backbone.image_size, backbone.grid
    print(f"{args.model} (random weights): {size} px, grid {grid}, {backbone.embed_dim}-d, layers {layers}, "
          f"torch threads {torch.get_num_threads()}; peak RSS after load {peak_rss_mb():.0f} MB")

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.encode_images, 3, size, size, generator=gen)
    forward_layers(backbone, images[:1], layers)  # warm-up
    start = time.perf_counter()
    for i in range(args.encode_images):
        g, per_layer, surgery = forward_layers(backbone, images[i: i + 1], layers)
    encode_ms = 1000 * (time.perf_counter() - start) / args.encode_images
    bytes_per_image = sum(t.numel() for t in per_layer.values()) * 2 + surgery.numel() * 2 + g.numel() * 4
    print(f"encode: {encode_ms:.0f} ms per image (batch 1); cached tokens {bytes_per_image / 2**20:.2f} MiB per "
          f"image at float16 ({len(layers)} layers + surgery + global); peak RSS {peak_rss_mb():.0f} MB")

    def bank(n: int) -> TokenBank:
        base = {k: v.expand(n, -1, -1) for k, v in per_layer.items()}
        noisy = {k: (v + 0.1 * torch.randn(v.shape, generator=gen)).half() for k, v in base.items()}
        sg = (surgery.expand(n, -1, -1) + 0.1 * torch.randn((n, *surgery.shape[1:]), generator=gen)).half()
        return TokenBank([f"i{k}" for k in range(n)], torch.zeros(n, dtype=torch.long),
                         g.expand(n, -1) + 0.1 * torch.randn((n, g.shape[1]), generator=gen), noisy, sg, grid,
                         size, {"depth": len(backbone.visual.transformer.resblocks)})

    test, normal = bank(args.n_test), bank(args.shots)
    methods = {
        "patch-memory": PatchMemory(layers=layers).fit(normal),
        "mutual": MutualScoring(layers=layers, radii=(1, 3)),
        "state-prompts": StatePrompts().fit(None, backbone, "bottle"),
    }
    for name, method in methods.items():
        start = time.perf_counter()
        scores = method.score(test)
        ms = 1000 * (time.perf_counter() - start) / args.n_test
        kept = ""
        if name == "patch-memory":
            kept = f"; memory {sum(m.numel() for m in method.memory.values()) * 4 / 2**20:.1f} MiB (float32)"
        print(f"{name}: {ms:.1f} ms per image over {args.n_test} test images (maps {scores.maps.shape[1]} px "
              f"included){kept}; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()

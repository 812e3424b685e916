"""Scale: memory of streaming encodes, encoding throughput with DataLoader workers, prompt-training speed vs K.

    python benchmarks/scale.py memory      [--sizes 1000,4000,16000] [--before /work/base]
    python benchmarks/scale.py throughput  [--images 96] [--workers 0,1,2]
    python benchmarks/scale.py prompts     [--classes 10,100,1000] [--before /work/base]
    python benchmarks/scale.py runtime default --before /work/base   (or: runtime splits --before ... -- --seeds 1)

``memory`` encodes N images with ViT-B/16 output geometry (global 512-d float32, 196 patch and 196 surgery tokens
of 512-d float16: what a ViT-B/16 at 224 px gives) through a stub encoder, each N in a fresh process, and prints
the peak RSS and the bytes on disk; from their slopes it projects a full ImageNet-1k run (50 k val, the four MOS
OOD sets, 16 shots of 1000 classes). With ``--before`` it also runs the code in that folder (the in-memory bank).

``throughput`` writes JPEGs of ImageNet-like size (500 x 375), then times a random-weight ViT-B/16 forward on
pre-decoded, preprocessed tensors (model only) against ``FeatureBank.encode`` from the JPEG files with 0, 1, 2
DataLoader workers (decoding included), and prints the ratios.

``prompts`` times prompt-training steps (CoOp's loss, a random-weight ViT-B/16 text tower) at K classes, in a
fresh process per K, for this code and (``--before``) another checkout.

``runtime`` times the CLI benchmark (wall and CPU seconds, cold and warm cache) for this code and another
checkout, alternating between them, and compares their results.csv.

All numbers are measured in the run that prints them; the machine's load is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
P, D = 196, 512  # ViT-B/16 at 224 px: 14 x 14 patch tokens of the 512-d joint space
FULL_RUN = {"ImageNet-1k val": 50_000, "iNaturalist": 10_000, "SUN": 10_000, "Places": 10_000,
            "Textures": 5_640, "16 shots x 1000 classes": 16_000}


# ------------------------------------------------------------------------------------------------ children
def _memory_child(n: int, cache: str) -> None:
    """Encode ``n`` blank images with a stub of ViT-B/16's output geometry; print peak RSS (MB)."""
    from dataclasses import dataclass

    import torch
    from PIL import Image

    torch.set_num_threads(1)
    from clipos_lab.features import FeatureBank

    @dataclass
    class Sample:
        id: str
        label: int
        path: str | None = None

    class Blank:  # the dataset interface FeatureBank uses, before and after this change
        name, classnames = f"blank{n}", ["blank"]

        def __init__(self):
            self.samples = [Sample(f"{i:06d}", 0) for i in range(n)]

        def __len__(self):
            return n

        def load(self, i):
            return Image.new("RGB", (2, 2), (i % 251, 0, 0))

        def fingerprint(self):
            return [s.id for s in self.samples]

    @dataclass
    class Features:
        global_: torch.Tensor
        patches: torch.Tensor
        surgery: torch.Tensor | None
        grid: tuple
        local: torch.Tensor | None = None  # the value-path local features: a fourth stored kind

    class Stub:
        name, weights_id, surgery_blocks, grid, device = "stub-vit-b16", "stub:0", 6, (14, 14), torch.device("cpu")

        def preprocess(self, image):
            return torch.full((3, 2, 2), float(image.getpixel((0, 0))[0]))

        def preprocess_id(self):
            return "stub"

        def encode_images(self, images, surgery=True):
            b = len(images)
            g = torch.randn(b, D)
            tokens = g[:, None, :].expand(b, P, D)
            return Features(g, tokens + 0, tokens * 2 if surgery else None, (14, 14), tokens * 3)

    start = time.perf_counter()
    bank = FeatureBank.encode(Blank(), Stub(), batch_size=64, cache=cache, progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": len(bank), "peak_rss_mb": peak, "seconds": seconds}))


def _prompt_child(k: int, steps: int) -> None:
    """Seconds per prompt-training step at ``k`` classes (CoOp loss, random ViT-B/16 text tower)."""
    import torch

    torch.set_num_threads(2)
    try:
        from clipos_lab.clipos.prompts import PromptConfig, PromptLearner, TrainingData, train_prompts
    except ImportError:  # the layout before the restructure
        from clipos_lab.prompts import PromptConfig, PromptLearner, TrainingData, train_prompts
    from clipos_lab.backbone import Backbone

    backbone = Backbone.load("ViT-B-16", random_weights=True)
    classnames = [f"class number {i}" for i in range(k)]
    learner = PromptLearner(backbone, classnames, n_ctx=4, ctx_init="a photo of a")
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(32, backbone.embed_dim, generator=gen)
    labels = torch.randint(0, k, (32,), generator=gen)
    cfg = PromptConfig(epochs=1, batch_size=32, progress=False)
    train_prompts(learner, TrainingData(feats, labels), cfg)  # warm-up step
    cfg = PromptConfig(epochs=steps, batch_size=32, progress=False)
    start = time.perf_counter()
    train_prompts(learner, TrainingData(feats, labels), cfg)
    seconds = (time.perf_counter() - start) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"k": k, "s_per_step": seconds, "peak_rss_mb": peak}))


def _run_child(code_root: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                         env=env, cwd=str(code_root))
    if out.returncode:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _du(path: Path) -> int:
    """Bytes actually allocated on disk (sparse files count what was written)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


# ------------------------------------------------------------------------------------------------ commands
def cmd_memory(args) -> None:
    import numpy as np

    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"Streaming encode, ViT-B/16 output geometry (stub encoder), batch 64; {_load()}")
    print(f"{'code':8} {'N':>7} {'peak RSS MB':>12} {'disk MB':>9} {'s':>7}")
    rows = []
    for label, root, ns in (("after", HERE, sizes), ("before", args.before, [s for s in sizes if s <= 4000])):
        if root is None:
            continue
        for n in ns:
            with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
                r = _run_child(Path(root), "_memory", str(n), tmp)
                r["disk_mb"] = _du(Path(tmp)) / 2**20
            rows.append((label, r))
            print(f"{label:8} {n:7d} {r['peak_rss_mb']:12.0f} {r['disk_mb']:9.0f} {r['seconds']:7.1f}", flush=True)
    after = [r for label, r in rows if label == "after"]
    n = np.array([r["n"] for r in after], dtype=float)
    rss_slope, rss_icpt = np.polyfit(n, [r["peak_rss_mb"] for r in after], 1)
    disk_slope = np.polyfit(n, [r["disk_mb"] for r in after], 1)[0]
    growth = after[-1]["peak_rss_mb"] - after[0]["peak_rss_mb"]
    print(f"\npeak RSS growth from N={int(n[0])} to N={int(n[-1])}: {growth:.0f} MB (target < 300 MB); "
          f"slope {rss_slope * 1024:.2f} KB/image, disk {disk_slope * 1024:.0f} KB/image")
    total = sum(FULL_RUN.values())
    biggest = max(FULL_RUN.values())
    print(f"\nProjected full ImageNet-1k run ({', '.join(f'{k} {v:,}' for k, v in FULL_RUN.items())}; "
          f"{total:,} images):")
    print(f"  encoding: peak RSS {rss_icpt + rss_slope * biggest:,.0f} MB for the largest set (sets are encoded one "
          f"after another; finished banks are memory maps, page cache rather than process memory)")
    print(f"  disk: {disk_slope * total / 1024:,.1f} GB of cached tokens")
    shots = FULL_RUN["16 shots x 1000 classes"]
    bank_gb = shots * (2 * P * D * 2 + D * 4) / 2**30
    relevance_gb = shots * (P * D * 4 + 4 * P * 4 + D * 4) / 2**30
    print(f"  prompt methods at 16 shots (computed from sizes, not measured): CLIP-OS few-shot bank "
          f"{bank_gb:.1f} GB (global, local and surgery kinds; a drawn bank reads only the kinds a method uses, "
          f"see `store_scale.py bytes`) + CLIP-OS / LoCoOp relevance outputs {relevance_gb:.1f} GB (float32 PUC'd "
          f"patches and maps; intermediates O(64 images)) = {bank_gb + relevance_gb:.1f} GB, plus the text tower at "
          "K = 1000 (see `prompts`)")
    fits = rss_icpt + rss_slope * biggest < 24 * 1024 and bank_gb + relevance_gb < 24
    print(f"  fits in 24 GB of RAM: {'yes' if fits else 'NO'}")


def cmd_throughput(args) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from clipos_lab.backbone import Backbone
    from clipos_lab.data import FolderDataset
    from clipos_lab.features import FeatureBank

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    backbone = Backbone.load("ViT-B-16", random_weights=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp) / "jpegs" / "class"
        root.mkdir(parents=True)
        yy, xx = np.mgrid[0:375, 0:500]
        for i in range(args.images):  # smooth gradients + noise: photo-like JPEG sizes (~100 KB)
            base = np.stack([(xx * (i + 1)) % 256, (yy * 3 + i) % 256, (xx + yy) % 256], -1).astype(float)
            img = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"{i:04d}.jpg", quality=90)
        ds = FolderDataset(root.parent)
        tensors = torch.stack([backbone.preprocess(ds.load(i)) for i in range(len(ds))])
        backbone.encode_images(tensors[: args.batch])  # warm-up
        start = time.perf_counter()
        for s in range(0, len(tensors), args.batch):
            backbone.encode_images(tensors[s: s + args.batch])
        model_only = len(tensors) / (time.perf_counter() - start)
        print(f"ViT-B/16 (random weights), {args.images} JPEGs 500x375, batch {args.batch}, torch threads "
              f"{args.threads}; {_load()}")
        print(f"model only (pre-decoded tensors): {model_only:6.2f} images/s")
        for workers in (int(w) for w in args.workers.split(",")):
            start = time.perf_counter()
            FeatureBank.encode(ds, backbone, batch_size=args.batch, cache=Path(tmp) / f"cache{workers}",
                               progress=False, num_workers=workers)
            rate = len(ds) / (time.perf_counter() - start)
            print(f"FeatureBank.encode from JPEG, {workers} workers: {rate:6.2f} images/s = "
                  f"{rate / model_only:.2f} x model only (target >= 0.9)")


def cmd_prompts(args) -> None:
    print(f"Prompt training (CoOp loss, 4 context vectors, batch 32, random ViT-B/16 text tower, 2 torch threads), "
          f"{_load()}")
    print(f"{'code':8} {'K':>6} {'s/step':>9} {'steps/s':>9} {'peak RSS MB':>12}")
    for k in (int(x) for x in args.classes.split(",")):  # before and after side by side: same machine load
        for label, root in (("before", args.before), ("after", HERE)):
            if root is None:
                continue
            steps = max(1, min(args.steps, 2000 // k))
            r = _run_child(Path(root), "_prompts", str(k), str(steps))
            print(f"{label:8} {k:6d} {r['s_per_step']:9.2f} {1 / r['s_per_step']:9.3f} {r['peak_rss_mb']:12.0f}",
                  flush=True)


def cmd_runtime(args) -> None:
    """Wall and CPU seconds of `python -m clipos_lab benchmark <spec>`, before and after, cold then warm cache;
    the runs alternate between the two checkouts so both see the same machine load; results.csv compared."""
    args.extra = [a for a in args.extra if a != "--"]
    import csv

    print(f"`python -m clipos_lab benchmark {args.spec} {' '.join(args.extra)}`, CPU fp32; {_load()}")
    print(f"{'code':8} {'cache':6} {'wall s':>8} {'CPU s':>8}")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tables = {}
        for cache_state in ("cold", "warm"):
            for label, root in (("before", Path(args.before)), ("after", HERE)):
                out = Path(tmp) / f"{label}-{cache_state}"
                env = {**os.environ, "PYTHONPATH": str(root), "CLIPOS_CACHE_DIR": str(Path(tmp) / f"cache-{label}")}
                cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "clipos_lab", "benchmark", args.spec, "--out", str(out),
                                "--no-progress", *args.extra], env=env, cwd=str(root), check=True,
                               capture_output=True)
                wall = time.perf_counter() - start
                cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
                print(f"{label:8} {cache_state:6} {wall:8.1f} {cpu:8.1f}", flush=True)
                files = sorted(out.rglob("results.csv"))
                tables[(label, cache_state)] = {(str(f.parent.relative_to(out)), *row[:6]): float(row[6])
                                                for f in files for row in list(csv.reader(open(f)))[1:]}
        a, b = tables[("before", "cold")], tables[("after", "cold")]
        diff = max((abs(a[k] - b[k]) for k in a), default=float("nan")) if a.keys() == b.keys() else float("inf")
        print(f"results.csv rows {len(a)} before / {len(b)} after, max |difference| {diff:.3g}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_memory":
        return _memory_child(int(sys.argv[2]), sys.argv[3])
    if len(sys.argv) > 1 and sys.argv[1] == "_prompts":
        return _prompt_child(int(sys.argv[2]), int(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("memory")
    p.add_argument("--sizes", default="1000,4000,16000")
    p.add_argument("--before", default=None, help="a checkout of the code before (e.g. /work/base)")
    p.add_argument("--tmp", default=None, help="folder for the temporary caches (default: the system's)")
    p.set_defaults(func=cmd_memory)
    p = sub.add_parser("throughput")
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--tmp", default=None)
    p.set_defaults(func=cmd_throughput)
    p = sub.add_parser("prompts")
    p.add_argument("--classes", default="10,100,1000")
    p.add_argument("--steps", type=int, default=10, help="timed steps per K (fewer at large K)")
    p.add_argument("--before", default=None)
    p.set_defaults(func=cmd_prompts)
    p = sub.add_parser("runtime")
    p.add_argument("spec", help="default, splits or a spec path (as the CLI takes it)")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="more CLI arguments after --, e.g. -- --seeds 1 --shots 1")
    p.add_argument("--before", required=True, help="a checkout of the code before (e.g. /work/base)")
    p.add_argument("--tmp", default=None)
    p.set_defaults(func=cmd_runtime)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

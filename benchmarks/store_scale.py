"""Feature-store costs at scale, measured (the numbers docs/scale.md quotes come from here).

    python benchmarks/store_scale.py bytes            cache bytes per image by token kind (ViT-B/16 geometry with
                                                      random weights, and the pocket model); RAM of a drawn
                                                      few-shot bank by method; projections for ImageNet-1k
    python benchmarks/store_scale.py open             rows read and time to open a cached store of N images
    python benchmarks/store_scale.py draw             few-shot draws from a 128,000-file pool (hard links to one
                                                      PNG), a stub encoder; first listing vs later draws
    python benchmarks/store_scale.py suite            peak RSS of a warm run of the ten split specs, RSS per spec

``open`` and ``draw`` take ``--code ROOT`` to run the same measurement on another checkout (e.g. the code before
a change) in a child process; every measurement runs in a fresh process.
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

ROOT = Path(__file__).resolve().parents[1]
FULL_PROTOCOL = 101_640  # ImageNet-1k val 50,000 + iNaturalist, SUN, Places 10,000 each + Textures 5,640 + 16,000
FEW_SHOT_IMAGES = 16 * 1000


def _child(code: Path, mode: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, __file__, "child", mode, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"child {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


# --------------------------------------------------------------------------------------------------- helpers
def _generated(name: str, n: int, classes: int, seed: int):
    import numpy as np
    from PIL import Image

    from clipos_lab.data.datasets import ImageDataset, Sample

    class Generated(ImageDataset):
        def __init__(self):
            super().__init__(name, [f"class {k}" for k in range(classes)],
                             [Sample(f"{i:07d}", i % classes) for i in range(n)])

        def _load_sample(self, sample):
            rng = np.random.default_rng([seed, int(sample.id)])
            return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))

        def _fingerprint_sample(self, sample):
            return f"{sample.id}|{seed}"

    return Generated()


class StubBackbone:
    """Fixed features of the pixels, tiny rows: for costs that do not depend on the model (listing, draws)."""

    name, weights_id, surgery_blocks, grid, precision = "stub", "stub:0", 1, (2, 2), "fp32"

    def __init__(self):
        import torch

        self.device = torch.device("cpu")

    def preprocess(self, image):
        import numpy as np
        import torch

        pixels = np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.float32) / 255
        return torch.from_numpy(pixels).permute(2, 0, 1)

    def preprocess_id(self):
        return "stub-4px"

    def encode_images(self, images, surgery=True):
        from clipos_lab.backbone import ImageFeatures

        flat = images.reshape(len(images), -1)
        patches = flat[:, :32].reshape(-1, 4, 8)
        return ImageFeatures(flat[:, :8], patches, patches * 2 if surgery else None, (2, 2), patches + 1)


# ----------------------------------------------------------------------------------------------------- bytes
def cmd_bytes(args) -> None:
    import numpy as np

    from clipos_lab.backbone import Backbone
    from clipos_lab.clipos.prompts import PromptConfig
    from clipos_lab.features import FeatureBank
    from clipos_lab.methods import build_method

    print(f"# python benchmarks/store_scale.py bytes --images {args.images}; CPU; {_load()}")
    row_bytes = {}
    with tempfile.TemporaryDirectory() as cache:
        for label, load in (("ViT-B/16 (random weights)", dict(model="ViT-B-16", random_weights=True)),
                            ("pocket", dict(model="pocket"))):
            backbone = Backbone.load(**load)
            bank = FeatureBank.encode(_generated("bytes", args.images, 2, 1), backbone, batch_size=8, cache=cache,
                                      progress=False)
            meta = json.loads((Path(bank.meta["cache_path"]) / "meta.json").read_text())
            row_bytes[label] = {k: v["row_bytes"] for k, v in meta["kinds"].items()}
            total = sum(row_bytes[label].values()) + 4 * len(row_bytes[label]) + 1  # + CRC-32 per kind + state
            print(f"\n## cache bytes per image, {label} ({backbone.grid[0]}x{backbone.grid[1]} patches, "
                  f"D = {backbone.embed_dim}, tokens float16, global float32)")
            print("kind       bytes/image   share")
            for kind, b in row_bytes[label].items():
                print(f"{kind:9s} {b:12,d}  {100 * b / total:5.1f}%")
            print(f"all (+ CRC-32 and state) {total:,d} bytes/image; full protocol ({FULL_PROTOCOL:,d} images): "
                  f"{FULL_PROTOCOL * total / 2**30:.1f} GiB, of which patches "
                  f"{FULL_PROTOCOL * row_bytes[label]['patches'] / 2**30:.1f} GiB")
        # which kinds each few-shot method reads from a drawn bank: model-independent, measured on the pocket
        pocket = backbone
        pool = _generated("pool", 64, 4, 2)
        FeatureBank.encode(pool, pocket, batch_size=16, cache=cache, progress=False)
        print("\n## RAM of a drawn few-shot bank, by method (token kinds read during fit; measured on the pocket "
              "model, 4 classes x 2 shots, 1 epoch)")
        used = {}
        for name in ("CoOp", "LoCoOp", "CLIP-OS"):
            drawn = FeatureBank.encode(pool, pocket, cache=cache, progress=False, indices=np.arange(8))  # 2 per class
            build_method(name, seed=1, prompt=PromptConfig(epochs=1, progress=False)).fit(pocket, drawn)
            used[name] = drawn.loaded_kinds()
        print("method    kinds read                ", "  ".join(f"{m:>26s}" for m in row_bytes))
        for name, kinds in [("before (every kind)", list(row_bytes["pocket"])), *used.items()]:
            cells = []
            for label, rb in row_bytes.items():
                per = sum(rb[k] for k in kinds)
                cells.append(f"{per:>9,d} B/img {FEW_SHOT_IMAGES * per / 2**30:5.2f} GiB@16k")
            print(f"{name:9s} {','.join(kinds):26s}", "  ".join(f"{c:>26s}" for c in cells))


# ------------------------------------------------------------------------------------------------------ open
def child_open(folder: str) -> dict:
    from clipos_lab.features import FeatureBank

    reads = []
    real = os.pread
    os.pread = lambda fd, n, offset: reads.append(n) or real(fd, n, offset)
    start = time.perf_counter()
    bank = FeatureBank.load(folder)
    return {"n": len(bank), "seconds": time.perf_counter() - start, "row_reads": len(reads),
            "bytes_read": sum(reads)}


def cmd_open(args) -> None:
    import torch

    from clipos_lab.features import FeatureBank

    print(f"# python benchmarks/store_scale.py open --n {' '.join(map(str, args.n))} --code {' '.join(args.code)}; "
          f"{_load()}")
    print("each open in a fresh process, the second after the first (the first after writing may check rows)")
    print("code                                    N   open #  row reads   bytes read    seconds")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            folder = Path(tmp) / f"store{n}"
            g = torch.Generator().manual_seed(0)
            tensors = {"global": torch.randn(n, 512, generator=g),
                       "patches": torch.randn(n, 49, 512, generator=g).half()}
            FeatureBank.from_tensors(tensors, torch.zeros(n, dtype=torch.long), [str(i) for i in range(n)], ["a"],
                                     (7, 7)).save(folder)
            for code in [c for c in args.code]:
                for k in (1, 2):
                    r = _child(Path(code), "open", str(folder))
                    print(f"{str(code)[-32:]:32s} {n:8d} {k:6d} {r['row_reads']:10d} {r['bytes_read']:12,d} "
                          f"{r['seconds']:10.3f}")


# ------------------------------------------------------------------------------------------------------ draw
def child_draw(root: str, cache: str) -> dict:
    from clipos_lab.data import FolderDataset

    try:
        from clipos_lab.evaluation.banks import TrainPool
    except ImportError:  # code from before the runner was split
        from clipos_lab.evaluation.runner import TrainPool

    start = time.perf_counter()
    ds = FolderDataset(root)
    listing = time.perf_counter() - start
    pool = TrainPool(ds, StubBackbone(), cache=cache, progress=False)
    times, cpu = [], []
    for seed in (1, 2, 3, 1, 2, 3):
        start, start_cpu = time.perf_counter(), time.process_time()
        bank, _ = pool.draw(1, seed)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"files": len(ds), "classes": len(ds.classnames), "listing": listing, "draws": times, "cpu": cpu}


def cmd_draw(args) -> None:
    import numpy as np
    from PIL import Image

    root = Path(args.root)
    if not (root / "done").exists():
        root.mkdir(parents=True, exist_ok=True)
        per = args.files // args.classes
        rng = np.random.default_rng(0)
        for c in range(args.classes):  # one PNG per class, hard-linked (a file system caps links per file)
            folder = root / "pool" / f"c{c:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            png = root / "images" / f"c{c:04d}.png"
            png.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(png)
            for i in range(per):
                os.link(png, folder / f"{i:04d}.png")
        (root / "done").touch()
    print(f"# python benchmarks/store_scale.py draw --files {args.files} --classes {args.classes} --code "
          f"{' '.join(args.code)}; stub encoder (4 px), 1 shot per class; {_load()}")
    print("per draw: wall s / CPU s of this process (on a loaded machine the CPU time is the cost; seeds 1, 2, 3 "
          "draw and encode new shots, then 1, 2, 3 again find them cached)")
    print("code                              files  classes  listing s  draws")
    for code in args.code:
        with tempfile.TemporaryDirectory() as cache:
            r = _child(Path(code), "draw", str(root / "pool"), cache)
        print(f"{str(code)[-30:]:30s} {r['files']:9,d} {r['classes']:8d} {r['listing']:10.2f}  "
              + "  ".join(f"{t:.2f}/{c:.2f}" for t, c in zip(r["draws"], r["cpu"])))


# ----------------------------------------------------------------------------------------------------- suite
def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _heap() -> tuple[float, float]:
    """glibc mallinfo2: (MB in use, MB free but held by the allocator)."""
    import ctypes
    import ctypes.util

    class MallInfo2(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def child_suite(folder: str, n_specs: str, trim: str, *extra: str) -> dict:
    import gc

    from clipos_lab.backbone import Backbone

    try:
        from clipos_lab.evaluation import suite as runner
    except ImportError:  # code from before the runner was split
        from clipos_lab.evaluation import runner

    if "trim" not in trim and hasattr(runner, "release_freed_memory"):
        runner.release_freed_memory = lambda: False
    if "dynamic" in trim:  # glibc's own threshold, as before evaluation/memory.py fixed it
        from clipos_lab.evaluation import job
        from clipos_lab.evaluation import runner as single

        for module in (job, single):
            if hasattr(module, "map_large_blocks"):
                module.map_large_blocks = lambda: False

    specs = sorted(Path(folder).glob("*.yaml"), key=lambda p: int("".join(c for c in p.stem if c.isdigit()) or 0))
    specs = specs[: int(n_specs)]
    per_spec = []
    inner = runner.run_benchmark

    def measured(*a, **k):
        result = inner(*a, **k)
        gc.collect()
        in_use, free_held = _heap()  # before the suite's trim after this spec, if any
        per_spec.append([round(_rss_mb()), round(in_use), round(free_held)])
        return result

    runner.run_benchmark = measured
    options = json.loads(extra[0]) if extra else {}
    start = time.perf_counter()
    runner.run_suite(specs, Backbone.load("pocket"), progress=False, **options)
    return {"specs": len(specs), "after_each": per_spec, "seconds": time.perf_counter() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cmd_suite(args) -> None:
    folder = ROOT / "assets" / "benchmarks" / "world-splits"
    print(f"# python benchmarks/store_scale.py suite --specs {args.specs} --options '{args.options}' --code "
          f"{' '.join(args.code)}; pocket model, CPU fp32; {_load()}")
    print("the cache is filled by a first run, then each code runs warm in a fresh process (peak RSS: ru_maxrss);")
    print("after each spec: [RSS, heap bytes in use, heap bytes free but held] in MB (glibc mallinfo2, after "
          "gc.collect(), before the suite's malloc_trim)")
    print("modes: glibc's dynamic mmap threshold or the 4 MiB fixed one (evaluation/memory.py map_large_blocks), "
          "with or without malloc_trim after each spec; fixed+trim is what the package does")
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or tmp
        os.environ["CLIPOS_CACHE_DIR"] = cache
        _child(Path(args.code[0]), "suite", str(folder), str(args.specs), "on", args.options)  # cold: fills the cache
        for code in args.code:
            memory = (Path(code) / "clipos_lab" / "evaluation" / "memory.py")
            modes = ("dynamic", "dynamic+trim", "fixed", "fixed+trim") if memory.exists() else ("-",)
            for mode in modes:
                r = _child(Path(code), "suite", str(folder), str(args.specs), mode, args.options)
                print(f"{str(code)[-24:]:24s} {mode:12s} {r['specs']} specs, {r['seconds']:.0f} s, peak RSS "
                      f"{r['peak_rss_mb']:.0f} MB; after each spec: {r['after_each']}")


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        mode, rest = sys.argv[2], sys.argv[3:]
        print(json.dumps({"open": child_open, "draw": child_draw, "suite": child_suite}[mode](*rest)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("bytes")
    p.add_argument("--images", type=int, default=8)
    p = sub.add_parser("open")
    p.add_argument("--n", type=int, nargs="+", default=[1000, 16000])
    p.add_argument("--code", nargs="+", default=[str(ROOT)])
    p = sub.add_parser("draw")
    p.add_argument("--files", type=int, default=128_000)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "clipos-pool-128k"))
    p.add_argument("--code", nargs="+", default=[str(ROOT)])
    p = sub.add_parser("suite")
    p.add_argument("--specs", type=int, default=10)
    p.add_argument("--options", default="{}", help="run_benchmark options as JSON, e.g. '{\"seeds\": [1]}'")
    p.add_argument("--cache", default=None, help="feature cache folder to fill and reuse (default: a temporary one)")
    p.add_argument("--code", nargs="+", default=[str(ROOT)])
    args = parser.parse_args()
    {"bytes": cmd_bytes, "open": cmd_open, "draw": cmd_draw, "suite": cmd_suite}[args.cmd](args)


if __name__ == "__main__":
    main()

"""Where the CPU goes under load: wall and CPU seconds of each pipeline stage, by torch thread count, on an idle
machine and with competing busy processes, measured back to back in one run.

    python benchmarks/stage_profile.py [--threads 1,2] [--busy 2] [--repeat 1]

Stages, on the default pocket benchmark (features cached; the encoding stage encodes the ID test set without the
cache): encoding (360 images), relevance (CLIP-OS stage 1 on a 2-shot bank), synthesis (one epoch of outliers),
prompt training (CoOp and CLIP-OS, 2 shots), scoring (MCM, GL-MCM, 1 - p(unknown) of CLIP-OS on every set) and
metrics (AUROC, FPR95, AUPR per OOD set). Each (threads, load) cell runs every stage once after a warm-up; CPU is
the process's user + system time (``time.process_time``), which counts threads spinning in OpenMP barriers.
Each cell pins its thread count for every stage (``clipos_lab.threads.set_threads``), so the policy's own choice
plays no part.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import contextmanager

import torch

from clipos_lab import Backbone
from clipos_lab.clipos import relevance as R
from clipos_lab.clipos import synthesis as Y
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec, default_benchmark_path
from clipos_lab.evaluation import metrics as M
from clipos_lab.evaluation.runner import encode_banks
from clipos_lab.features import FeatureBank
from clipos_lab.methods import build_method
from clipos_lab.methods.zeroshot import DEFAULT_TEMPLATES, class_embeddings
from clipos_lab.threads import set_threads

BUSY = "while True: pass"


@contextmanager
def busy_processes(n: int):
    """``n`` competing CPU-bound processes at the default nice level (0), stopped on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]
    try:
        time.sleep(1.0 if n else 0.0)  # let the scheduler see them
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stages(backbone, spec, banks):
    """``name -> thunk`` of every stage, each doing one stage's work on the default benchmark."""
    train, _ = banks.id_train.draw(2, 1)
    text = class_embeddings(backbone, train.classnames, DEFAULT_TEMPLATES)
    rel = R.relevance(train, text, rule="discrepancy", tokens="local", k=3)
    prompt = PromptConfig(progress=False)
    fitted = build_method("CLIP-OS", seed=1, prompt=prompt).fit(backbone, train)
    id_scores = fitted.score(banks.id_test)["MCM"]
    ood_scores = {name: fitted.score(bank)["MCM"] for name, bank in banks.ood.items()}
    id_dataset = spec.id_dataset()

    return {
        "encoding": lambda: FeatureBank.encode(id_dataset, backbone, batch_size=64, cache=False, progress=False),
        "relevance": lambda: R.relevance(train, text, rule="discrepancy", tokens="local", k=3),
        "synthesis": lambda: Y.synthesize(rel.relevant_features, train.labels, Y.default_n_outliers(len(train)),
                                          seed=1),
        "training CoOp": lambda: build_method("CoOp", seed=1, prompt=prompt).fit(backbone, train),
        "training CLIP-OS": lambda: build_method("CLIP-OS", seed=1, prompt=prompt).fit(backbone, train),
        "scoring": lambda: [fitted.score(b) for b in (banks.id_test, *banks.ood.values())],
        "metrics": lambda: [M.ood_metrics(id_scores, s) for s in ood_scores.values()],
    }


def measure(thunk, repeat: int) -> tuple[float, float]:
    """Mean (wall s, CPU s) of one run over ``repeat`` runs."""
    wall = cpu = 0.0
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        thunk()
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    return wall / repeat, cpu / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="torch intra-op thread counts to compare")
    parser.add_argument("--busy", type=int, default=2, help="competing busy processes in the loaded cells")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each stage per cell")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]

    set_threads(max(threads))
    torch.set_num_threads(max(threads))
    backbone = Backbone.load()
    spec = BenchmarkSpec.from_yaml(default_benchmark_path())
    banks = encode_banks(spec, backbone, progress=False)
    work = stages(backbone, spec, banks)
    for thunk in work.values():  # warm-up: caches, allocators, lazy imports
        thunk()

    print(f"# python benchmarks/stage_profile.py --threads {args.threads} --busy {args.busy} --repeat {args.repeat}")
    print(f"# torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.__config__.parallel_info().splitlines()[-1]}")
    results = {}
    for busy in (0, args.busy):
        with busy_processes(busy):
            for n in threads:
                set_threads(n)
                torch.set_num_threads(n)
                before = load_average()
                for name, thunk in work.items():
                    results[(busy, n, name)] = measure(thunk, args.repeat)
                print(f"# cell: {busy} busy processes, {n} threads; load average before {before}, "
                      f"after {load_average()}", flush=True)
    header = f"{'stage':<18}" + "".join(f"{f'{b}busy {n}thr':>22}" for b in (0, args.busy) for n in threads)
    print("\nwall s / CPU s per stage run")
    print(header)
    for name in work:
        cells = "".join(f"{results[(b, n, name)][0]:>11.3f}/{results[(b, n, name)][1]:<10.3f}"
                        for b in (0, args.busy) for n in threads)
        print(f"{name:<18}{cells}")
    print("\nloaded / idle ratio (wall, CPU), same thread count")
    for name in work:
        cells = []
        for n in threads:
            (w0, c0), (w1, c1) = results[(0, n, name)], results[(args.busy, n, name)]
            cells.append(f"{n}thr {w1 / w0:5.2f}x {c1 / max(c0, 1e-9):5.2f}x")
        print(f"{name:<18}" + "   ".join(cells))


if __name__ == "__main__":
    main()

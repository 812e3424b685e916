"""Where Ray starts to pay: the ten-split suite locally vs on a local Ray cluster with 1 and 2 workers, and Ray's
cost per task on tiny cells. Run on an idle machine (the machine's load is printed with every number):

    python benchmarks/ray_scale.py                      # ten splits, shots 1,2, seeds 1,2,3 (the make benchmark grid)
    python benchmarks/ray_scale.py --splits 3 --seeds 1  # a quicker look

Features are encoded (and cached) before any timing, so the wall times compare fitting and scoring only; the
feature cache is shared by every run. Output: benchmarks/results/ray_scale.md (and the table on stdout).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from clipos_lab.backbone import Backbone
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import default_benchmark_path
from clipos_lab.evaluation.executor import Cell, make_executor
from clipos_lab.evaluation.suite import run_suite
from clipos_lab.files import write_text

SPLITS = default_benchmark_path().parent / "world-splits"


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def noop(i: int) -> int:
    return i


def suite_seconds(specs, backbone, executor, grid) -> float:
    start = time.perf_counter()
    run_suite(specs, backbone, progress=False, executor=executor, **grid)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--tiny-cells", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/ray_scale.md")
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    specs = sorted(SPLITS.glob("world-split*.yaml"), key=lambda p: int(p.stem.rsplit("split", 1)[1]))[: args.splits]
    grid = {"shots": (1, 2), "seeds": tuple(int(s) for s in args.seeds.split(",")),
            "prompt": PromptConfig(progress=False)}
    backbone = Backbone.load()
    # encode once: every set and every drawn shot (one epoch is enough to draw and cache the shots)
    run_suite(specs, backbone, progress=False, methods=["MCM", "CoOp"], shots=grid["shots"], seeds=grid["seeds"],
              prompt=PromptConfig(epochs=1, progress=False))
    rows = [("local (this process)", suite_seconds(specs, backbone, None, grid), load())]
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        try:
            executor = make_executor("ray", task_cpus=1)
            executor.run([Cell(noop, (0,), "warm-up")] * workers, progress=False)  # start the workers
            rows.append((f"Ray, {workers} worker{'s' * (workers > 1)}",
                         suite_seconds(specs, backbone, executor, grid), load()))
            if workers == 2:
                start = time.perf_counter()
                executor.run([Cell(noop, (i,), "noop") for i in range(args.tiny_cells)], progress=False)
                per_task = (time.perf_counter() - start) / args.tiny_cells
        finally:
            ray.shutdown()
    base = rows[0][1]
    lines = [f"# Ray vs local: {len(specs)} splits, shots 1,2, seeds {args.seeds}, default methods (cached features)",
             "", "| executor | wall s | local / this | machine load (1, 5, 15 min) |", "|---|---|---|---|"]
    lines += [f"| {name} | {sec:.1f} | {base / sec:.2f}x | {ld} |" for name, sec, ld in rows]
    lines += ["", f"Ray's cost per task on {args.tiny_cells} no-op cells with 2 workers: {1000 * per_task:.1f} ms "
              "(scheduling, serialisation and the round trip; a cell of the pocket benchmark fits in about 1-3 s)."]
    text = "\n".join(lines)
    print(text)
    write_text(text, Path(args.out))


if __name__ == "__main__":
    main()

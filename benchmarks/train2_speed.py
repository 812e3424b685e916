"""Pocket v2 training speed: seconds per step with batches drawn in the training process (``--workers 0``) and by
worker processes ahead of the loop, measured in one sitting on this machine, plus a check that both runs end with
the same weights (a batch is a pure function of its step, so workers must not change the run).

    python benchmarks/train2_speed.py                                  # CPU: workers 0 against 1, 20 steps
    python benchmarks/train2_speed.py --device cuda --workers 0,14     # a GPU machine: the data decide the speed

Each run trains the shipped v2 config from scratch in a temporary folder (no validation, no checkpoint but the
last) and times the steps after the first two (start-up, the loader's first batches). Output:
benchmarks/results/train2_speed.md (or --out).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from clipos_lab.backbone import resolve_device
from clipos_lab.files import write_text
from clipos_lab.pocket.train2 import train2

WARM_STEPS = 2


def timed_run(folder: Path, steps: int, device: str, workers: int) -> tuple[float, dict]:
    """Seconds per step after the first ``WARM_STEPS``, and the final model state."""
    options = {"steps": steps, "warmup_steps": 1, "eval_every": 10**9, "checkpoint_every": 10**9}
    train2(folder, options, progress=False, max_steps_this_sitting=WARM_STEPS, device=device, workers=workers)
    start = time.perf_counter()
    train2(folder, progress=False, device=device, workers=workers)
    seconds = (time.perf_counter() - start) / (steps - WARM_STEPS)
    return seconds, torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", default="0,1", help="worker counts to try, comma-separated; the first is the "
                        "baseline")
    parser.add_argument("--out", default="benchmarks/results/train2_speed.md")
    args = parser.parse_args()
    if args.steps <= WARM_STEPS:
        parser.error(f"--steps must be more than {WARM_STEPS} (the untimed first steps)")
    device = resolve_device(args.device)
    counts = [int(w) for w in args.workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="train2_speed-"))
    rows, states = [], []
    try:
        for n in counts:
            seconds, state = timed_run(tmp / f"workers{n}", args.steps, str(device), n)
            rows.append((n, seconds, "%.2f %.2f %.2f" % os.getloadavg()))
            states.append(state)
            print(f"workers {n}: {seconds:.3f} s per step (load {rows[-1][-1]})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    same = [max((s[k].float() - states[0][k].float()).abs().max().item() for k in s) for s in states]
    base = rows[0][1]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    lines = [f"# pocket v2 training, {args.steps} steps of 64 from scratch on {name} ({os.cpu_count()} cores)", "",
             "| workers | s per step | baseline / this | max weight difference to the baseline | load after |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {s:.3f} | {base / s:.2f}x | {d:.1e} | {ld} |" for (n, s, ld), d in zip(rows, same)]
    text = "\n".join(lines)
    print(text)
    write_text(text, Path(args.out))


if __name__ == "__main__":
    main()

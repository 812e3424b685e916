"""`make benchmark`'s suite in one process (``--executor local``) and on a pool of worker processes
(``--executor processes``), each run as the command line runs it, measured in one sitting. Run on an idle machine
with a warm feature cache (run ``make benchmark`` once first); the machine's load is printed with every number:

    python benchmarks/processes_scale.py               # the ten drawings splits, every OOD method, seeds 1-5
    python benchmarks/processes_scale.py --splits 4    # a quicker look

Each run is a fresh ``python -m clipos_lab benchmark`` process, so its wall time includes what a user waits for:
start-up, the workers' start (importing torch, loading the model), reading the cached features and writing the
run folder. CPU time is the children's user + system time. Output: benchmarks/results/processes_scale.md.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clipos_lab.data import default_benchmark_path
from clipos_lab.files import write_text

SPLITS = default_benchmark_path().parent / "drawings-splits"


def makefile_value(name: str) -> str:
    """A ``NAME ?= value`` of the Makefile: the suite measured is `make benchmark`'s, not a copy of it."""
    text = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    return re.search(rf"^{name}\s*\?=\s*(.+)$", text, re.MULTILINE).group(1).strip()


METHODS, OPTIONS = makefile_value("SUITE_METHODS"), makefile_value("SUITE_OPTIONS")


def load() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


def timed_run(spec: Path, out: Path, seeds: str, executor: list[str]) -> tuple[float, float, float]:
    """Wall, user and system seconds of one ``benchmark`` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "clipos_lab", "benchmark", str(spec), "--methods", METHODS, "--seeds", seeds,
                    "--out", str(out), "--overwrite", "--no-progress", "--options", OPTIONS, *executor], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, default=10, help="how many of the ten specs (default, split1, ...)")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--processes", default="2", help="worker counts to try, comma-separated")
    parser.add_argument("--out", default="benchmarks/results/processes_scale.md")
    args = parser.parse_args()
    os.environ.setdefault("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")  # as the Makefile runs it
    tmp = Path(tempfile.mkdtemp(prefix="processes_scale-"))
    try:
        specs = tmp / "specs"
        specs.mkdir()
        chosen = sorted(SPLITS.glob("*.yaml"), key=lambda p: (p.stem != "drawings-default", p.stem))[: args.splits]
        for p in chosen:  # a suite is a folder of specs
            shutil.copy(p, specs / p.name)
        runs = [("local (one process)", [])] + [
            (f"processes, {n} workers", ["--executor", "processes", "--processes", n])
            for n in args.processes.split(",")]
        rows = []
        for name, extra in runs:
            wall, user, system = timed_run(specs, tmp / "out", args.seeds, extra)
            rows.append((name, wall, user, system, load()))
            print(f"{name}: {wall:.1f} s wall, {user:.1f} s user, {system:.1f} s system (load {rows[-1][-1]})",
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1]
    lines = [f"# `benchmark` on {len(chosen)} drawings specs, every OOD method, shots 1,2, seeds {args.seeds} "
             "(warm feature cache)", "",
             "| executor | wall s | local / this | user s | system s | load after (1, 5, 15 min) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {w:.1f} | {base / w:.2f}x | {u:.1f} | {s:.1f} | {ld} |" for n, w, u, s, ld in rows]
    text = "\n".join(lines)
    print(text)
    write_text(text, Path(args.out))


if __name__ == "__main__":
    main()

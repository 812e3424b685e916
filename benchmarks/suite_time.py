"""`make benchmark`'s suite, warm, for this checkout and another, alternating, measured in one run.

    python benchmarks/suite_time.py --before /tmp/before [--rounds 2] [--out /tmp/suite_time]

Runs the command `make benchmark` runs (the Makefile's SUITE_METHODS, SUITE_SEEDS and SUITE_OPTIONS; pocket v2's
ten test splits, `--executor processes`) as a child process, with the feature cache as it is (run `make
benchmark` once first, so that both sides are warm), in the order before, after, after, before, ... so that a
machine whose speed drifts weighs on both sides alike. Prints each run's wall, user and system CPU seconds
(``getrusage`` of the child and its workers), the after / before ratios of the medians, and
whether both sides wrote the same tables (every spec's ``results.csv`` and the suite's tables, byte for byte).
``--before``: a checkout of the code to compare with (e.g. ``git worktree add /tmp/before <commit>``); the child
runs in that folder, which also goes first on PYTHONPATH. Without it only this checkout runs (``--rounds`` runs).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
TABLES = ("suite_summary.csv", "suite_ranking.csv", "suite_pairs.csv")


def makefile_value(name: str) -> str:
    """A ``NAME ?= value`` of the Makefile, so that the command timed is the one `make benchmark` runs."""
    match = re.search(rf"^{name}\s*\?=\s*(.+)$", (HERE / "Makefile").read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"error: the Makefile has no {name} ?= ... line")
    return match.group(1).strip()


def suite_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "clipos_lab", "benchmark", "drawings", "--methods", makefile_value("SUITE_METHODS"),
            "--seeds", makefile_value("SUITE_SEEDS"), "--options", makefile_value("SUITE_OPTIONS"),
            "--executor", "processes", "--out", str(out), "--overwrite", "--no-progress"]


def run_once(code: Path, out: Path) -> dict:
    """One warm suite of the package in ``code``; its CPU time from ``getrusage`` of the children."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg", "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(suite_command(out), cwd=code, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def same_tables(a: Path, b: Path) -> bool:
    files = [*TABLES, *(p.relative_to(a) for p in sorted(a.glob("*/results.csv")))]
    return bool(files) and all((b / f).is_file() and filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side (default 2)")
    parser.add_argument("--out", type=Path, default=Path("outputs/suite_time"))
    args = parser.parse_args()
    sides = {"after": HERE} | ({"before": args.before.resolve()} if args.before else {})
    order = [s for r in range(args.rounds) for s in (("before", "after") if r % 2 == 0 else ("after", "before"))
             if s in sides]
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for side in order:
        run = run_once(sides[side], args.out / side)
        runs[side].append(run)
        print(f"{side:6} wall {run['wall']:6.1f} s  user {run['user']:6.1f} s  sys {run['sys']:5.1f} s  "
              f"(load {run['load']})", flush=True)
    median = {s: {k: statistics.median(r[k] for r in rs) for k in ("wall", "user", "sys")} for s, rs in runs.items()}
    m, s_ = divmod(median["after"]["wall"], 60)
    print(f"after: median wall {int(m)} min {s_:.0f} s (bar: <= 5 min on an idle 2-core machine)")
    if "before" in median:
        print("after / before, medians: " + ", ".join(f"{k} {median['after'][k] / median['before'][k]:.3f}"
                                                      for k in ("wall", "user", "sys")))
        print(f"same tables, byte for byte: {same_tables(args.out / 'after', args.out / 'before')}")


if __name__ == "__main__":
    main()

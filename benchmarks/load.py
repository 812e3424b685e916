"""The default benchmark on an idle machine and under competing load, before and after the thread policy.

    python benchmarks/load.py [--before /tmp/before] [--busy 2] [--rounds 1] [--no-warm-up] [-- extra CLI args]

Runs ``python -m clipos_lab benchmark default`` (features cached: one warm-up run of each checkout first, unless
``--no-warm-up``) as a child process and measures its wall time and user CPU time (``getrusage`` of the child).
Each round runs, back to back: before idle, after idle, before loaded, after loaded; "loaded" adds ``--busy``
busy-loop processes at the default nice level (0) for the length of the run. ``--before`` is a checkout of the
code to compare with (e.g. ``git archive <commit> clipos_lab assets | tar -x -C /tmp/before``; the child runs in
that folder, which also goes first on PYTHONPATH); "after" is this checkout; without ``--before`` only this
checkout runs. The load average is printed with every run: "idle" means no busy loops of ours, not an idle
machine when other jobs are running. The bars of issue 25: loaded / idle user CPU <= 1.5 and wall <= 2.5, and
the idle time no worse than before. Both checkouts' results.csv are compared at the end.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parents[1]
BUSY = "while True: pass"
CPU_BAR, WALL_BAR = 1.5, 2.5


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def child_env(code: Path) -> dict:
    """The environment of a child that imports the package in ``code`` (it also runs in ``code``: ``python -m``
    puts the working folder first on the path)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])}


def imported_from(code: Path) -> str:
    """Where a child started like the benchmark's finds clipos_lab (printed, so a mix-up shows)."""
    return subprocess.run([sys.executable, "-c", "import clipos_lab; print(clipos_lab.__file__)"], cwd=code,
                          env=child_env(code), capture_output=True, text=True, check=True).stdout.strip()


def run_benchmark(code: Path, out: Path, busy: int, extra: list[str]) -> dict:
    """One ``benchmark default`` run of the package in ``code`` with ``busy`` competing busy loops."""
    cmd = [sys.executable, "-m", "clipos_lab", "benchmark", "default", "--out", str(out), "--overwrite",
           "--no-progress", *extra]
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        time.sleep(1.0 if busy else 0.0)
        load_before = load_average()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=code, env=child_env(code), capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return {"wall": wall, "user": after.ru_utime - usage.ru_utime, "sys": after.ru_stime - usage.ru_stime,
            "load": f"{load_before} -> {load_average()}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=None, help="folder holding the clipos_lab package to compare with")
    parser.add_argument("--no-warm-up", action="store_true", help="skip the warm-up runs (features already cached)")
    parser.add_argument("--busy", type=int, default=2, help="competing busy-loop processes in the loaded runs")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the four runs")
    parser.add_argument("extra", nargs="*", help="extra arguments for the benchmark command (after --)")
    args = parser.parse_args()
    codes = {"after": HERE}
    if args.before is not None:
        before = Path(args.before).resolve()
        if not (before / "clipos_lab" / "__init__.py").exists():
            raise SystemExit(f"--before {before} holds no clipos_lab package")
        codes = {"before": before, "after": HERE}
    env_threads = os.environ.get("CLIPOS_THREADS")
    print(f"# python benchmarks/load.py --before {args.before} --busy {args.busy} --rounds {args.rounds}"
          + (" --no-warm-up" if args.no_warm_up else "")
          + (f" -- {' '.join(args.extra)}" if args.extra else ""))
    print(f"# `python -m clipos_lab benchmark default` (features cached), {os.cpu_count()} CPUs, CLIPOS_THREADS="
          f"{env_threads or '(unset)'}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}; "
          f"started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for label, code in codes.items():
        print(f"# {label}: {imported_from(code)}")
    with tempfile.TemporaryDirectory(prefix="clipos-load-") as tmp:
        outs = {label: Path(tmp) / label for label in codes}
        for label, code in codes.items():  # warm the feature cache (and the page cache) for both
            if not args.no_warm_up:
                run_benchmark(code, outs[label], 0, args.extra)
        runs: dict[tuple[str, int], list[dict]] = {}
        print(f"\n{'code':<8}{'busy':>5}{'wall s':>9}{'user s':>9}{'sys s':>8}   load average (1, 5, 15 min) "
              "before -> after the run")
        for _ in range(args.rounds):
            for busy in (0, args.busy):
                for label, code in codes.items():
                    r = run_benchmark(code, outs[label], busy, args.extra)
                    runs.setdefault((label, busy), []).append(r)
                    print(f"{label:<8}{busy:>5}{r['wall']:>9.1f}{r['user']:>9.1f}{r['sys']:>8.1f}   {r['load']}",
                          flush=True)
        if "before" in codes:
            same = filecmp.cmp(outs["before"] / "results.csv", outs["after"] / "results.csv", shallow=False)
            values = {label: pd.read_csv(out / "results.csv")["value"].to_numpy() for label, out in outs.items()}
            largest = float(abs(values["before"] - values["after"]).max()) \
                if len(set(map(len, values.values()))) == 1 else float("inf")
            same_summary = filecmp.cmp(outs["before"] / "summary.md", outs["after"] / "summary.md", shallow=False)

    def mean(label, busy, key):
        values = [r[key] for r in runs[(label, busy)]]
        return sum(values) / len(values)

    print(f"\nratios (mean of {args.rounds} round(s)); bars: loaded / idle user CPU <= {CPU_BAR}, wall <= {WALL_BAR}")
    for label in codes:
        cpu = mean(label, args.busy, "user") / mean(label, 0, "user")
        wall = mean(label, args.busy, "wall") / mean(label, 0, "wall")
        verdict = "meets" if cpu <= CPU_BAR and wall <= WALL_BAR else "misses"
        print(f"{label:<8} loaded / idle: user CPU {cpu:5.2f}x, wall {wall:5.2f}x  ({verdict} the bars)")
    if "before" not in codes:
        return
    for busy in (0, args.busy):
        print(f"after / before, {busy} busy: wall {mean('after', busy, 'wall') / mean('before', busy, 'wall'):5.2f}x, "
              f"user CPU {mean('after', busy, 'user') / mean('before', busy, 'user'):5.2f}x")
    print(f"results.csv before vs after: {'byte-identical' if same else 'different'} (largest difference "
          f"{largest:.1e}); summary.md: {'identical' if same_summary else 'different'}")


if __name__ == "__main__":
    main()

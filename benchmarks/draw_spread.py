"""The spread of few-shot methods over draws of shots, on validation data only (never the shipped test splits).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/draw_spread.py [--draws 20] [--shots 1,2] [--splits 10]
        [--fresh 2] [--variant 'NAME={"option": value}'] [--out benchmarks/results/draw_spread] [--overwrite]

Benchmarks: the validation versions of the random class splits (``clipos_lab.pocket.splits.split_specs(
validation=True)``: the shipped splits' classes, other images), plus ``--fresh`` class splits drawn at
``--fresh-seed`` with their own images (data seeds from ``--fresh-data-seed``; a fresh split repeating a shipped
class split is skipped). On each, ``--draws`` few-shot draws (seeds ``--first-seed`` ...) per shots value run
through the package's runner (:func:`clipos_lab.evaluation.runner.run_benchmark`, features encoded once per
benchmark). Per draw, the gain of the OOD-average AUROC over zero-shot MCM on the same benchmark
(:mod:`clipos_lab.evaluation.spread`); per method and score: mean, median, 5th percentile, worst case, share of
draws beating MCM, pooled and per benchmark, and the bars of issue 21 (per validation benchmark: CLIP-OS MCM
5th percentile >= -0.5, 1 - p(unknown) worst >= -2; pooled mean gain >= +0.8 / +1.4).

``--world 2`` runs the same on pocket v2 and the validation versions of its drawings splits
(``clipos_lab.pocket.splits2``; no fresh class splits there: ``--fresh`` is ignored).

``--variant NAME=JSON`` adds a registered copy of CLIP-OS with these options (e.g. the old behaviour), run on
the same draws. Writes ``draws.csv`` (one row per draw), ``spread.csv`` / ``spread.md`` and ``gains.png``.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch

from clipos_lab.backbone import Backbone
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec
from clipos_lab.evaluation import spread as SP
from clipos_lab.evaluation import tables as T
from clipos_lab.evaluation.runner import encode_banks, run_benchmark
from clipos_lab.methods import registry
from clipos_lab.methods.prompt import CLIPOS
from clipos_lab.pocket.splits import validation_suite
from clipos_lab.pocket.splits2 import drawings_specs
from clipos_lab.runfolder import RunFolder
from clipos_lab.viz.spread import gain_strips

KEPT_SCORES = {"CLIP-OS": ["MCM", "1-p(unknown)"], "CoOp": ["MCM"], "LoCoOp": ["MCM"], "CLIPN": ["ATD"]}
BARS = {"p5_mcm": -0.005, "worst_unknown": -0.02, "mean_mcm": 0.008, "mean_unknown": 0.014}
OUTPUTS = ["draws.csv", "spread.csv", "spread.md", "gains.png"]


def validation_specs(n_splits: int, n_fresh: int, fresh_seed: int, fresh_data_seed: int,
                     world: int = 1) -> list[BenchmarkSpec]:
    if world == 2:
        return [BenchmarkSpec.from_dict(d) for d in drawings_specs(validation=True)[:n_splits]]
    return [BenchmarkSpec.from_dict(d) for d in validation_suite(n_splits, n_fresh, fresh_seed, fresh_data_seed)]


def parse_variants(items: list[str]) -> dict[str, dict]:
    variants = {}
    for item in items:
        name, _, options = item.partition("=")
        try:
            variants[name.strip()] = json.loads(options)
        except json.JSONDecodeError as err:
            raise SystemExit(f"--variant {item!r}: expected NAME={{json options}} ({err})") from err
    return variants


def merge_draws(gains: pd.DataFrame, paths: list[str]) -> pd.DataFrame:
    """Add the draws of earlier runs for methods this run did not fit; refuse runs on other benchmarks/seeds."""
    for item in paths:
        path, _, suffix = item.partition("@")
        other = pd.read_csv(path)
        if suffix:  # e.g. the same method before a change: kept under its own name
            other = other.assign(method=other["method"] + f" {suffix}")
        if gains.empty:  # this run fitted nothing but MCM: the first file sets the benchmarks and baselines
            gains = other
            continue
        drawn = other[other["shots"] > 0]  # zero-shot rows (CLIPN) carry seed 0
        if set(other["spec"]) != set(gains["spec"]) or set(drawn["seed"]) - set(gains["seed"]):
            raise SystemExit(f"--merge {path}: its benchmarks or seeds differ from this run's; rerun it with the "
                             "same --splits/--fresh/--draws/--first-seed")
        base = gains.groupby("spec")["baseline"].first()
        if not (other.groupby("spec")["baseline"].first().reindex(base.index) - base).abs().max() < 1e-9:
            raise SystemExit(f"--merge {path}: its zero-shot MCM differs from this run's (other features?)")
        gains = pd.concat([gains, other[~other["method"].isin(set(gains["method"]))]], ignore_index=True)
    return gains


def bar_report(per_spec: pd.DataFrame, pooled: pd.DataFrame, method: str = "CLIP-OS") -> list[str]:
    lines = []
    for score, col, bar in (("MCM", "p5", BARS["p5_mcm"]), ("1-p(unknown)", "worst", BARS["worst_unknown"])):
        cells = per_spec[(per_spec["method"] == method) & (per_spec["score"] == score)]
        if cells.empty:
            continue
        bad = cells[cells[col] < bar]
        lines.append(f"- {method} [{score}] {col} >= {100 * bar:+.1f} on every benchmark and shots: "
                     f"{'met' if bad.empty else 'MISSED'} ({len(cells) - len(bad)}/{len(cells)} cells; lowest "
                     f"{100 * cells[col].min():+.2f})")
    for score, bar in (("MCM", BARS["mean_mcm"]), ("1-p(unknown)", BARS["mean_unknown"])):
        cells = pooled[(pooled["method"] == method) & (pooled["score"] == score)]
        for _, r in cells.iterrows():
            lines.append(f"- {method} [{score}] {r['shots']}-shot pooled mean {100 * r['mean']:+.2f} "
                         f"(bar {100 * bar:+.1f}: {'met' if r['mean'] >= bar else 'MISSED'})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=101)
    parser.add_argument("--shots", default="1,2")
    parser.add_argument("--splits", type=int, default=10, help="validation splits used (of the ten)")
    parser.add_argument("--fresh", type=int, default=2, help="fresh class splits drawn besides them")
    parser.add_argument("--world", type=int, default=1, choices=[1, 2],
                        help="1: pocket v1 and its shape splits; 2: pocket v2 and its drawings splits")
    parser.add_argument("--fresh-seed", type=int, default=2026)
    parser.add_argument("--fresh-data-seed", type=int, default=7000)
    parser.add_argument("--methods", default="MCM,CLIPN,CoOp,LoCoOp,CLIP-OS")
    parser.add_argument("--variant", action="append", default=[], help="NAME={json CLIP-OS options}")
    parser.add_argument("--merge", action="append", default=[],
                        help="draws.csv of an earlier run on the same benchmarks and seeds: its methods that this "
                             "run does not fit are added to the tables (e.g. CoOp / LoCoOp / CLIPN run once); "
                             "PATH@LABEL appends LABEL to its method names (e.g. CLIP-OS before a change)")
    parser.add_argument("--out", default="benchmarks/results/draw_spread")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--partial", help="also write the draws so far to this CSV after every benchmark (for "
                                          "long runs: nothing is lost when one is stopped early)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # prompt learning is many tiny ops; the machine is shared
    variants = parse_variants(args.variant)
    for name, options in variants.items():
        registry.register(name, CLIPOS, **options)
    methods = [m for m in args.methods.split(",") if m] + list(variants)
    kept = {**KEPT_SCORES, **{name: ["MCM", "1-p(unknown)"] for name in variants}}
    shots = [int(s) for s in args.shots.split(",")]
    seeds = list(range(args.first_seed, args.first_seed + args.draws))
    run = RunFolder(args.out, OUTPUTS, overwrite=args.overwrite)
    try:
        backbone = Backbone.load("pocket2" if args.world == 2 else "pocket")
        specs = validation_specs(args.splits, args.fresh, args.fresh_seed, args.fresh_data_seed, args.world)
        gains = []
        for spec in specs:
            start = time.perf_counter()
            banks = encode_banks(spec, backbone, progress=False)
            result = run_benchmark(spec, backbone, methods=methods, shots=shots, seeds=seeds, banks=banks,
                                   prompt=PromptConfig(progress=False), progress=False, save_prompts=False)
            g = SP.draw_gains(pd.DataFrame(result.rows).assign(spec=spec.name),
                              scores={m: kept.get(m, ["MCM"]) for m in methods if m != "MCM"})
            gains.append(g)
            if args.partial:
                T.write_csv(pd.concat(gains, ignore_index=True), args.partial)
            for (method, score), cell in g.groupby(["method", "score"], sort=False)["gain"]:
                print(f"{spec.name}: {method} [{score}] mean gain over MCM {100 * cell.mean():+.2f}, worst "
                      f"{100 * cell.min():+.2f}", flush=True)
            print(f"{spec.name}: {time.perf_counter() - start:.0f} s", flush=True)
        gains = pd.concat(gains, ignore_index=True)
        gains = merge_draws(gains, args.merge)
        pooled = SP.spread_summary(gains)
        per_spec = SP.spread_summary(gains, by=("spec", "method", "score", "shots"))
        T.write_csv(gains, run.path / "draws.csv")
        T.write_csv(pd.concat([pooled.assign(spec="pooled"), per_spec], ignore_index=True), run.path / "spread.csv")
        caption = SP.SPREAD_CAPTION.format(metric="AUROC", n_specs=len(specs))
        text = ["# Spread over few-shot draws (validation data only)\n",
                f"Command: `python benchmarks/draw_spread.py {' '.join(_argv())}`; draws: seeds {seeds[0]}-"
                f"{seeds[-1]}, shots {shots}; benchmarks: {', '.join(s.name for s in specs)}.\n",
                "## Bars (issue 21)\n", *bar_report(per_spec, pooled), "",
                "## Pooled over benchmarks\n", T.to_markdown(SP.spread_table(pooled), caption), "",
                "## Per benchmark\n", T.to_markdown(SP.spread_table(per_spec), caption)]
        T.write_text("\n".join(text), run.path / "spread.md")
        gain_strips(gains, run.path / "gains.png")
        run.commit({"command": _argv(), "benchmarks": [s.name for s in specs], "seeds": seeds, "shots": shots})
    except BaseException:
        run.discard()
        raise
    print("\n".join(bar_report(per_spec, pooled)))
    print(T.to_markdown(SP.spread_table(pooled), caption))
    print(f"wrote {args.out}")


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()

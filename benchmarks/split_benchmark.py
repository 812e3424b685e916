"""Every method and CLIP-OS ablation on the random class splits of the pocket world, timed.

    python benchmarks/split_benchmark.py [--out benchmarks/results/splits] [--methods ...]

The same as ``python -m clipos_lab benchmark splits`` with the ablations added: each split (``assets/benchmarks/
world-splits``) runs like the default benchmark (1- and 2-shot, seeds 1-3; outputs in ``<out>/<split>/``). One
table per score (MCM, GL-MCM, 1 - p(unknown)) gives, per method and shots, the mean over splits of each split's
seed-averaged, OOD-averaged metric, ± the standard deviation *across splits*, and how many splits the method wins
against each baseline (AUROC). Method defaults were chosen on validation images (``world-validation.yaml``, and
the validation version of these splits, which kept the same defaults: ``tune_defaults.py --splits``), never on
these test images.
"""

from __future__ import annotations

import argparse
import time

from clipos_lab.backbone import Backbone
from clipos_lab.data import default_benchmark_path
from clipos_lab.evaluation.runner import DEFAULT_METHODS
from clipos_lab.evaluation.suite import run_suite
from clipos_lab.methods import methods

ABLATIONS = [n for n in methods() if n.startswith("CLIP-OS w/o")]

SPLITS = default_benchmark_path().parent / "world-splits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/splits")
    parser.add_argument("--methods", default=",".join([*DEFAULT_METHODS, *ABLATIONS]))
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    args = parser.parse_args()
    backbone = Backbone.load()
    start = time.perf_counter()
    suite = run_suite(sorted(SPLITS.glob("world-split*.yaml")), backbone, out_dir=args.out,
                      methods=args.methods.split(","), shots=(1, 2), seeds=(1, 2, 3), progress=False,
                      save_prompts=False, overwrite=args.overwrite)
    for name, result in suite.per_spec.items():
        zero_shot = next(r["mean"] for r in result.summary if (r["method"], r["score"], r["ood"], r["metric"])
                         == ("MCM", "MCM", "Average", "AUROC"))
        print(f"{name}: {result.timings['total_s']:.0f} s (encoding {result.timings['encode_s']:.0f} s), "
              f"zero-shot MCM AUROC {100 * zero_shot:.2f}")
    print(f"whole suite: {time.perf_counter() - start:.0f} s\n")
    print(suite.summary_markdown())


if __name__ == "__main__":
    main()

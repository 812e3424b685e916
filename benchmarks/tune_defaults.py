"""Choose prompt-learning and CLIP-OS defaults on the validation split (never on the test benchmark).

    python benchmarks/tune_defaults.py [--seeds 11,12,13] [--score-temperature 1] [--splits]
                                       [--out benchmarks/results/tuning-temperature1.json]

Grid: the shared prompt-learning schedule (learning rate x minimum number of steps; CoOp, LoCoOp and CLIP-OS all
use it, so it is chosen on their mean) and, for CLIP-OS, outlier alignment on/off and the weight ``beta``.
Every configuration runs 1- and 2-shot over the given seeds on ``assets/benchmarks/world-validation.yaml``, or
with ``--splits`` on the validation versions of the random class splits (``clipos_lab.splits``: the same
classes as ``assets/benchmarks/world-splits``, other images), averaged over splits;
printed numbers are OOD-averaged AUROC (higher score = more ID, ID positive) and ID accuracy, in percent.
``--score-temperature none`` scores prompt methods at the logit scale, as the grids in ``results/tuning*.txt``
made before the temperature-1 default did.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from clipos_lab.backbone import Backbone
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec, default_benchmark_path, few_shot
from clipos_lab.evaluation import metrics as M
from clipos_lab.evaluation.runner import encode_banks
from clipos_lab.methods import build_method
from clipos_lab.pocket.splits import split_specs

VALIDATION = default_benchmark_path().parent / "world-validation.yaml"


def evaluate(method, banks) -> dict:
    id_scores = method.score(banks.id_test)
    ood_scores = {k: method.score(b) for k, b in banks.ood.items()}
    out = {"ACC": M.id_accuracy(method.predict(banks.id_test), banks.id_test.labels.numpy())}
    for score in id_scores:
        out[score] = float(np.mean([M.auroc(id_scores[score], s[score]) for s in ood_scores.values()]))
    return out


def mean_of(runs: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="11,12,13")
    parser.add_argument("--lrs", default="0.002,0.005")
    parser.add_argument("--min-steps", default="0")
    parser.add_argument("--n-ctx", default="4,16", help="context lengths to try")
    parser.add_argument("--betas", default="0.3,1.0", help="CLIP-OS outlier weights to try besides its default")
    parser.add_argument("--score-temperature", default="1",
                        help="MCM / GL-MCM temperature of the prompt methods over cosines; 'none' = logit scale")
    parser.add_argument("--splits", action="store_true", help="tune on the validation random class splits")
    parser.add_argument("--out", default="benchmarks/results/tuning-temperature1.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    temperature = None if args.score_temperature.lower() == "none" else float(args.score_temperature)
    torch.set_num_threads(1)  # prompt learning is many tiny ops: one thread is fastest and leaves a core free
    backbone = Backbone.load()
    specs = ([BenchmarkSpec.from_dict(d) for d in split_specs(validation=True)] if args.splits
             else [BenchmarkSpec.from_yaml(VALIDATION)])
    all_banks = [encode_banks(spec, backbone, progress=False) for spec in specs]
    mcm = mean_of([evaluate(build_method("MCM").fit(backbone, banks.id_train), banks) for banks in all_banks])
    print(f"zero-shot MCM on validation ({len(specs)} benchmark(s)): AUROC {100 * mcm['MCM']:.2f}, "
          f"GL-MCM {100 * mcm['GL-MCM']:.2f}, ACC {100 * mcm['ACC']:.2f}")
    variants = {"CoOp": {}, "LoCoOp": {}, "CLIP-OS": {}, "CLIP-OS unaligned": {"align_outliers": False}}
    variants.update({f"CLIP-OS beta={b:g}": {"beta": b} for b in (float(x) for x in args.betas.split(","))})
    records = []
    for lr, min_steps, n_ctx in itertools.product([float(x) for x in args.lrs.split(",")],
                                                  [int(x) for x in args.min_steps.split(",")],
                                                  [int(x) for x in args.n_ctx.split(",")]):
        prompt = PromptConfig(lr=lr, min_steps=min_steps, n_ctx=n_ctx, progress=False)
        for label, options in variants.items():
            name = label.split(" ")[0]
            runs = []
            start = time.perf_counter()
            for banks, shots, seed in itertools.product(all_banks, (1, 2), seeds):
                _, manifest = few_shot(banks.train_dataset, shots, seed)
                train = banks.id_train.select_ids([m["id"] for m in manifest])
                method = build_method(name, seed=seed, prompt=prompt, score_temperature=temperature,
                                      **options).fit(backbone, train)
                runs.append(evaluate(method, banks))
            mean = mean_of(runs)
            records.append({"lr": lr, "min_steps": min_steps, "n_ctx": n_ctx, "method": label,
                            "score_temperature": temperature, **mean,
                            "seconds": time.perf_counter() - start})
            scores = ", ".join(f"{k} {100 * v:.2f}" for k, v in mean.items())
            print(f"lr {lr:<6g} min_steps {min_steps:<4d} n_ctx {n_ctx:<3d} {label:18s} {scores}  "
                  f"({records[-1]['seconds']:.0f} s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"zero_shot": mcm, "grid": records}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

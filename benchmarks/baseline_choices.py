"""Choose the token kind for CLIP-OS's stages and the surgery class weighting on validation data only.

    python benchmarks/baseline_choices.py [--seeds 11,12,13] [--out benchmarks/results/baseline-choices.json]

Data: ``assets/benchmarks/world-validation.yaml`` and the validation versions of the five random class splits
(``clipos_lab.pocket.splits.split_specs(validation=True)``: the same classes as ``assets/benchmarks/world-splits``,
other images), never a test split. Every few-shot configuration runs 1- and 2-shot over the given seeds.
Printed: OOD-averaged AUROC per score (higher score = more ID, ID positive) and ID accuracy, in percent, averaged
over runs and then over the six validation benchmarks, plus the mean per benchmark for the main score.

Compared:
* GL-MCM's local part on the value-path local features (``local_tokens="local"``) vs final-layer patch tokens;
* CLIP-OS with stages 1-2 on ``patch_tokens`` in {patches, local} x ``surgery_weighting`` in {uniform, reference};
* LoCoOp with per-step selection (reference) vs the one-time zero-shot selection, on local features.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch
from tune_defaults import VALIDATION, evaluate, mean_of  # noqa: E402 - the same helpers as the tuning script

from clipos_lab.backbone import Backbone
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec, few_shot
from clipos_lab.evaluation.runner import encode_banks
from clipos_lab.methods import build_method
from clipos_lab.pocket.splits import split_specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="11,12,13")
    parser.add_argument("--out", default="benchmarks/results/baseline-choices.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    backbone = Backbone.load()
    specs = [BenchmarkSpec.from_yaml(VALIDATION)] + [BenchmarkSpec.from_dict(d) for d in split_specs(validation=True)]
    all_banks = {spec.name: encode_banks(spec, backbone, progress=False) for spec in specs}
    prompt = PromptConfig(progress=False)
    records = []

    def report(label, per_bench):
        overall = mean_of(list(per_bench.values()))
        main_score = "GL-MCM" if label.startswith("GL-MCM") else "MCM"
        per = " ".join(f"{100 * v[main_score]:.2f}" for v in per_bench.values())
        scores = ", ".join(f"{k} {100 * v:.2f}" for k, v in overall.items())
        print(f"{label:44s} {scores}  | {main_score} per benchmark: {per}", flush=True)
        records.append({"label": label, "mean": overall, "per_benchmark": per_bench})

    for tokens in ("local", "patches"):
        per = {name: evaluate(build_method("GL-MCM", local_tokens=tokens).fit(backbone, banks.id_train), banks)
               for name, banks in all_banks.items()}
        report(f"GL-MCM local_tokens={tokens}", per)

    variants = {f"CLIP-OS patch_tokens={t} weighting={w}": ("CLIP-OS", {"patch_tokens": t, "surgery_weighting": w})
                for t, w in itertools.product(("patches", "local"), ("uniform", "reference"))}
    variants.update({f"LoCoOp selection={s}": ("LoCoOp", {"selection": s}) for s in ("per-step", "zero-shot")})
    variants["CoOp"] = ("CoOp", {})
    for label, (name, options) in variants.items():
        start = time.perf_counter()
        per = {}
        for bench, banks in all_banks.items():
            runs = []
            for shots, seed in itertools.product((1, 2), seeds):
                _, manifest = few_shot(banks.train_dataset, shots, seed)
                train = banks.id_train.select_ids([m["id"] for m in manifest])
                runs.append(evaluate(build_method(name, seed=seed, prompt=prompt, **options).fit(backbone, train),
                                     banks))
            per[bench] = mean_of(runs)
        report(f"{label} ({time.perf_counter() - start:.0f} s)", per)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seeds": seeds, "benchmarks": list(all_banks), "records": records},
                                         indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

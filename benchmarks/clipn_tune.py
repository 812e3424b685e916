"""Choose CLIPN's training settings on validation data only (never on the test splits).

    python benchmarks/clipn_tune.py [--steps 600] [--variants '{"exact": {}, "reference": {"targets": "reference"}}']
                                    [--out outputs/clipn_tune]

Each variant trains a pocket no tower for ``--steps`` steps (``clipos_lab.clipn.train``, one torch thread) in
``<out>/<variant>``, then zero-shot MCM and CLIPN (ATD, CTW; at the model's logit scale and at CLIPN's 100) are
scored on ``assets/benchmarks/world-validation.yaml`` and the validation versions of the five random class splits
(``clipos_lab.pocket.splits.split_specs(validation=True)``: the same classes as the test splits, other images).
Printed: OOD-averaged AUROC (higher score = more ID, ID positive), mean over the six validation benchmarks, in %.
Training a variant again resumes (or reuses) its folder. ``--world 2`` does the same for pocket v2 on the
validation versions of its ten drawings splits (``clipos_lab.pocket.splits2.drawings_specs(validation=True)``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_defaults import VALIDATION, evaluate, mean_of  # noqa: E402

from clipos_lab.backbone import Backbone  # noqa: E402
from clipos_lab.clipn import attach  # noqa: E402
from clipos_lab.clipn import train as T  # noqa: E402
from clipos_lab.data import BenchmarkSpec  # noqa: E402
from clipos_lab.evaluation.runner import encode_banks  # noqa: E402
from clipos_lab.methods import build_method  # noqa: E402
from clipos_lab.pocket.splits import split_specs  # noqa: E402
from clipos_lab.pocket.splits2 import drawings_specs  # noqa: E402

DEFAULT_VARIANTS = {"exact": {}, "reference": {"targets": "reference"}, "exact-lr1e-3": {"lr": 1e-3}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--variants", default=json.dumps(DEFAULT_VARIANTS), help="JSON: name -> ClipnConfig fields")
    parser.add_argument("--base", default='{"pool_size": 8000, "threads": 1}', help="JSON: fields of every variant")
    parser.add_argument("--checkpoints", default="", help="evaluate these existing training folders too (comma-sep)")
    parser.add_argument("--out", default="outputs/clipn_tune")
    parser.add_argument("--world", type=int, default=1, choices=[1, 2], help="1: pocket v1; 2: pocket v2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.world == 2:
        backbone = Backbone.load("pocket2")
        specs = [BenchmarkSpec.from_dict(d) for d in drawings_specs(validation=True)]
    else:
        backbone = Backbone.load()
        specs = [BenchmarkSpec.from_yaml(VALIDATION)] + [BenchmarkSpec.from_dict(d)
                                                         for d in split_specs(validation=True)]
    all_banks = [encode_banks(spec, backbone, progress=False) for spec in specs]
    mcm = mean_of([evaluate(build_method("MCM").fit(backbone, b.id_train), b) for b in all_banks])
    print(f"zero-shot MCM on {len(specs)} validation benchmarks: AUROC {100 * mcm['MCM']:.2f}, ACC "
          f"{100 * mcm['ACC']:.2f}", flush=True)
    records = {"zero_shot_MCM": mcm}
    folders = {name: (options, Path(args.out) / name) for name, options in json.loads(args.variants).items()}
    folders.update({Path(f).name: (None, Path(f)) for f in args.checkpoints.split(",") if f})
    for name, (options, folder) in folders.items():
        start = time.perf_counter()
        if options is not None:
            cfg = T.ClipnConfig.from_dict({**json.loads(args.base), "steps": args.steps, **options})
            T.train(backbone, folder, cfg, progress=False)
        attach(backbone, T.load_checkpoint(backbone, folder))
        seconds = time.perf_counter() - start
        for scale in (None, 100.0):
            res = mean_of([evaluate(build_method("CLIPN", scale=scale).fit(backbone, b.id_train), b)
                           for b in all_banks])
            per = [evaluate(build_method("CLIPN", scale=scale).fit(backbone, b.id_train), b)["ATD"]
                   for b in all_banks]
            records[f"{name} scale={scale or 'logit'}"] = {**res, "ATD_per_benchmark": per, "train_s": seconds}
            print(f"{name:16s} scale {scale or 'logit':>5}: ATD {100 * res['ATD']:.2f}  CTW {100 * res['CTW']:.2f}  "
                  f"MCM {100 * res['MCM']:.2f}  ATD per benchmark {np.round(100 * np.array(per), 1).tolist()}  "
                  f"(trained in {seconds:.0f} s)", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "tuning.json").write_text(json.dumps(records, indent=1))
    print(f"wrote {Path(args.out) / 'tuning.json'}")


if __name__ == "__main__":
    main()

"""What each ``python -m clipos_lab`` command does once its options are parsed (:mod:`clipos_lab.cli` builds the
parser and runs them)."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

from .cli_args import anomaly_spec_path, backbone_from, executor_from, json_option, spec_path


def cmd_encode(args) -> int:
    from .data import BenchmarkSpec, FolderDataset
    from .features import FeatureBank

    target = Path(args.source)
    is_spec = target.suffix in (".yaml", ".yml") or args.source == "default"
    backbone = backbone_from(args, spec_path(args.source) if is_spec else None)
    if is_spec:
        spec = BenchmarkSpec.from_yaml(spec_path(args.source))
        spec.validate()
        datasets = {"id": spec.id_dataset(), "id_train": spec.id_train_dataset(), **spec.ood_datasets()}
    else:
        datasets = {target.name: FolderDataset(target)}
    for name, ds in datasets.items():
        bank = FeatureBank.encode(ds, backbone, batch_size=args.batch_size, progress=not args.no_progress,
                                  cache=args.cache_dir or True, num_workers=args.workers)
        folders = getattr(ds, "unreadable_folders", [])
        print(f"{name}: {len(bank)} images, {bank.meta.get('n_skipped', 0)} skipped, "
              + (f"{len(folders)} sub-folders not read ({', '.join(folders[:3])}), " if folders else "")
              + f"cache {bank.meta.get('cache_path', '(loaded)')}")
    return 0


def cmd_benchmark(args, zero_shot_only: bool = False) -> int:
    from .clipos.prompts import PromptConfig
    from .evaluation.runner import run_benchmark
    from .evaluation.suite import run_suite
    from .methods import default_methods

    spec = Path(spec_path(args.spec))
    backbone = backbone_from(args, spec)
    methods = ([m.strip() for m in args.methods.split(",") if m.strip()] if args.methods
               else default_methods("zero-shot") if zero_shot_only else None)
    kwargs = {"methods": methods} if methods else {}
    prompt = PromptConfig(progress=False, **({"epochs": args.epochs} if args.epochs is not None else {}))
    kwargs.update(shots=args.shots, seeds=args.seeds, prompt=prompt, out_dir=args.out, overwrite=args.overwrite,
                  progress=not args.no_progress, cache=args.cache_dir or True, batch_size=args.batch_size,
                  fpr95_rule=args.fpr95_rule, num_workers=args.workers,
                  scores=[s.strip() for s in args.scores.split(",") if s.strip()] if args.scores else None,
                  executor=executor_from(args))
    if args.options:
        kwargs["method_options"] = json_option(args.options, "--options")
    if zero_shot_only:
        kwargs.update(shots=(), seeds=())  # zero-shot: no shots are drawn, so no training image is encoded
    if spec.is_dir():  # a suite: every YAML spec in the folder
        specs = sorted(spec.glob("*.yaml"), key=lambda p: [int(t) if t.isdigit() else t  # split2 before split10
                                                            for t in re.split(r"(\d+)", p.name)])
        if not specs:
            raise FileNotFoundError(f"benchmark folder {spec} has no *.yaml specs")
        suite = run_suite(specs, backbone, **kwargs)
        print(suite.summary_markdown())
        print(f"\nwrote {args.out}/<spec>/ for {len(specs)} specs and {args.out}/suite_summary.csv, "
              "suite_summary.md")
        return 0
    result = run_benchmark(str(spec), backbone, **kwargs)
    _print_result(result, args.out)
    return 0


def _print_result(result, out) -> None:
    print(result.summary_markdown())
    print(f"\nwrote {out}/results.csv, summary.csv, summary.md, metrics.json, run.json "
          f"({result.timings['total_s']:.1f} s, of which encoding {result.timings['encode_s']:.1f} s)")


def cmd_rerun(args) -> int:
    from .evaluation.runner import rerun

    result = rerun(args.run, out_dir=args.out, overwrite=args.overwrite, device=args.device,
                   progress=not args.no_progress, cache=args.cache_dir or True)
    _print_result(result, args.out)
    return 0


def cmd_clipn(args) -> int:
    from .clipn import train as clipn

    backbone = backbone_from(args)  # the shipped v1 pocket model unless --model / --config / --checkpoint say
    if args.action == "train":
        cfg = clipn.ClipnConfig.from_dict(json_option(args.options, "--options")) if args.options else None
        encoder = clipn.train(backbone, args.out, cfg, progress=not args.no_progress,
                              max_steps_this_sitting=args.max_steps)
        print(json.dumps(encoder.meta.get("step")))
    else:
        if not args.to:
            raise ValueError("clipn export needs --to <file.safetensors>")
        print(clipn.export(backbone, args.out, args.to, overwrite=args.overwrite))
    return 0


def cmd_pocket(args) -> int:
    from .pocket import train as pocket

    if args.action == "pack":
        from .pocket.pack import DRAWINGS_DIR, build_pack

        manifest = build_pack(args.out or DRAWINGS_DIR, source=args.source, subset=args.subset,
                              overwrite=args.overwrite, progress=not args.no_progress, reuse=args.reuse)
        print(f"{len(manifest['drawings'])} drawings, {len(manifest['backgrounds'])} backgrounds, "
              f"{len(manifest['classes'])} classes -> {args.out or DRAWINGS_DIR}")
        return 0
    if args.action == "train2":
        from .pocket.train2 import train2

        options = json_option(args.options, "--options") if args.options else None
        row = train2(args.out or "runs/pocket2", options, progress=not args.no_progress,
                     max_steps_this_sitting=args.max_steps, device=args.device, workers=args.workers)
        print(json.dumps(row, indent=1))
        return 0
    if args.action == "export2":  # a v2 training folder -> assets/pocket2 (weights, sha256, thinned log)
        from .resources import POCKET2_NAME, POCKET2_WEIGHTS

        if POCKET2_WEIGHTS.exists() and not args.overwrite:
            raise FileExistsError(errno.EEXIST, "pocket v2 weights exist; pass --overwrite to replace them",
                                  str(POCKET2_WEIGHTS))
        print(pocket.export(args.out or "runs/pocket2", POCKET2_WEIGHTS, POCKET2_NAME))
        return 0
    args.out = args.out or "runs/pocket"
    if args.action == "train":
        cfg = pocket.TrainConfig.from_dict(json_option(args.options, "--options")) if args.options else None
        row = pocket.train(args.out, cfg, progress=not args.no_progress, max_steps_this_sitting=args.max_steps,
                           device=args.device, workers=args.workers)
        print(json.dumps(row, indent=1))
    elif args.action == "export":
        print(pocket.export(args.out))

    elif args.action == "check":
        print(pocket.verify_pocket_weights())
    return 0


def cmd_sweep(args) -> int:
    from .sweep import run_sweep

    result = run_sweep(args.sweep, out_dir=args.out, kernel=args.kernel, executor=executor_from(args))
    print(result)
    return 1 if result.failed else 0


SPLITS_OUT = {1: "outputs/world-splits", 2: "outputs/drawings-splits"}  # never the shipped folders in assets/


def cmd_splits(args) -> int:
    from .pocket.splits import N_SPLITS, write_split_specs
    from .pocket.splits2 import write_drawings_specs

    n = N_SPLITS if args.n is None else args.n
    if args.world == 2 and (args.seed != 0 or args.n_id != 6):
        raise ValueError("--seed and --n-id are for --world 1: the drawings splits follow their seeded rule "
                         "(clipos_lab/pocket/splits2.py), split k from seed k")
    if args.world == 1 and args.validation:
        raise ValueError("--validation is for --world 2; the shapes world's validation splits come from "
                         "clipos_lab.pocket.splits.split_specs(validation=True)")
    out = args.out or SPLITS_OUT[args.world]
    if args.world == 2:
        paths = write_drawings_specs(out, n_splits=n, validation=args.validation, overwrite=args.overwrite)
    else:
        paths = write_split_specs(out, n_splits=n, n_id=args.n_id, seed=args.seed, overwrite=args.overwrite)
    for path in paths:
        print(path)
    return 0


def cmd_anomaly(args) -> int:
    from .anomaly.data import AnomalySpec
    from .anomaly.runner import DEFAULT_METHODS, run_anomaly

    spec_file = anomaly_spec_path(args.spec)
    spec = AnomalySpec.from_yaml(spec_file)
    spec.categories()  # a missing folder fails here, before the backbone loads
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(DEFAULT_METHODS)
    options = json_option(args.options, "--options") if args.options else None  # {"method": {"option": value}}
    if options is not None and not all(isinstance(v, dict) for v in options.values()):
        raise ValueError('--options must be a JSON object {"method": {"option": value}}, got ' + repr(args.options))
    result = run_anomaly(spec, backbone_from(args, spec_file), methods=methods, shots=args.shots, seeds=args.seeds,
                         method_options=options, out_dir=args.out, cache=args.cache_dir or True,
                         progress=not args.no_progress, overwrite=args.overwrite, executor=executor_from(args))
    print(result.summary_markdown())
    if result.skipped:
        print(f"\n{len(result.skipped)} unreadable images skipped (listed in metrics.json), e.g. "
              f"{result.skipped[0]['error']}")
    print(f"\nwrote {args.out}/results.csv, summary.csv, summary.md, metrics.json "
          f"({result.timings['total_s']:.1f} s, of which encoding {result.timings['encode_s']:.1f} s)")
    return 0


def cmd_vocab(args) -> int:
    """Build the WordNet word list the negative-label methods mine (NegLabel, CSP, AdaNeg)."""
    from .negatives.vocab import build_wordnet_vocab

    path = build_wordnet_vocab(args.wordnet, args.out, overwrite=args.overwrite, source=args.source)
    print(f"wrote {path} and {path.parent / 'README.md'}")
    return 0

"""Command line: ``python -m clipos_lab <command>``.

    encode     encode a dataset (folder or benchmark spec) into cached FeatureBanks
    evaluate   the zero-shot methods on a benchmark spec (no training image is encoded)
    benchmark  methods x shots x seeds on a benchmark spec (few-shot and test-time included)
    rerun      a benchmark again from its run.json
    clipn      train / export the pocket model's CLIPN no-text tower
    pocket     train / export / check the shipped pocket model
    sweep      run a notebook through papermill over a parameter grid, then aggregate
    splits     write the benchmark specs of random ID/OOD class splits of the pocket world
    anomaly    anomaly maps (patch memory, mutual scoring, state prompts) x shots x seeds on an anomaly spec
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import re
import sys
from pathlib import Path


def _add_backbone_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backbone")
    g.add_argument("--model", default="pocket", help="open_clip model name, or 'pocket' (default, offline)")
    g.add_argument("--pretrained", default=None, help="open_clip pretrained tag, e.g. openai (needs the hub cache)")
    g.add_argument("--checkpoint", default=None, help="local weights file (no hub access)")
    g.add_argument("--config", default=None, help="open_clip model config JSON")
    g.add_argument("--random-weights", action="store_true", help="seeded random weights (tests, speed only)")
    g.add_argument("--surgery-blocks", type=whole_number("--surgery-blocks", 0), default=None,
                   help="value-value path depth (default: half)")
    g.add_argument("--device", type=device_name, default="auto",
                   help="auto (a CUDA GPU if there is one, else the CPU), cpu, cuda or cuda:<n>; all stages run there")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="autocast precision of forward passes (fp16 needs CUDA); fp32 is exact")
    g.add_argument("--workers", type=whole_number("--workers", 0), default=0,
                   help="DataLoader worker processes decoding and preprocessing images (default 0: in-process)")
    g.add_argument("--threads", type=thread_count, default=None,
                   help="torch threads for every stage (default: $CLIPOS_THREADS, else auto: one thread for small "
                        "work, every core for large work such as ViT-B/16 batches)")


def _backbone(args):
    from .backbone import Backbone

    return Backbone.load(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint, config=args.config,
                         random_weights=args.random_weights, surgery_blocks=args.surgery_blocks, device=args.device,
                         precision=args.precision)


def whole_number(option: str, low: int = 1):
    """An argparse ``type`` for an integer option >= ``low``; its errors name the option."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{option} must be at least {low}, got {value}")
        return value
    parse.__name__ = option  # argparse names the type in its fallback message
    return parse


def number_list(option: str, low: int):
    """An argparse ``type`` for a comma-separated list of distinct whole numbers >= ``low``, e.g. ``1,2,3``."""
    one = whole_number(option, low)

    def parse(text: str) -> list[int]:
        values = [one(x) for x in text.replace(",", " ").split()]
        if not values:
            raise argparse.ArgumentTypeError(f"{option} is empty: give at least one number, e.g. {option} 1,2")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"{option} {text!r} repeats {repeated}: give each value once")
        return values
    parse.__name__ = option
    return parse


def thread_count(text: str) -> int | None:
    """An argparse ``type`` for ``--threads``: a whole number >= 1, or ``auto`` (None)."""
    from .threads import parse_threads

    try:
        return parse_threads(text, "--threads")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def device_name(text: str) -> str:
    """An argparse ``type`` for ``--device``: a torch device that exists on this machine."""
    from .backbone import check_device

    if text == "auto":
        return text
    try:
        return check_device(text)
    except Exception as err:  # noqa: BLE001 - torch's parse error or our own: one message naming the option
        raise argparse.ArgumentTypeError(str(err)) from None


def _spec_path(value: str | None) -> str:
    from .data import default_benchmark_path

    if value == "splits":
        return str(default_benchmark_path().parent / "world-splits")
    return str(default_benchmark_path()) if value in (None, "default") else value


def cmd_encode(args) -> int:
    from .data import BenchmarkSpec, FolderDataset
    from .features import FeatureBank

    backbone = _backbone(args)
    target = Path(args.source)
    if target.suffix in (".yaml", ".yml") or args.source == "default":
        spec = BenchmarkSpec.from_yaml(_spec_path(args.source))
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

    backbone = _backbone(args)
    methods = ([m.strip() for m in args.methods.split(",") if m.strip()] if args.methods
               else default_methods("zero-shot") if zero_shot_only else None)
    kwargs = {"methods": methods} if methods else {}
    prompt = PromptConfig(progress=False, **({"epochs": args.epochs} if args.epochs is not None else {}))
    kwargs.update(shots=args.shots, seeds=args.seeds, prompt=prompt, out_dir=args.out, overwrite=args.overwrite,
                  progress=not args.no_progress, cache=args.cache_dir or True, batch_size=args.batch_size,
                  fpr95_rule=args.fpr95_rule, num_workers=args.workers,
                  scores=[s.strip() for s in args.scores.split(",") if s.strip()] if args.scores else None,
                  executor=_executor(args))
    if args.options:
        kwargs["method_options"] = _json_option(args.options, "--options")
    if zero_shot_only:
        kwargs.update(shots=(), seeds=())  # zero-shot: no shots are drawn, so no training image is encoded
    spec = Path(_spec_path(args.spec))
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


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where cells run (docs/scale.md)")
    g.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (default: this process) or ray (a local Ray cluster, or --address; "
                        "pip install 'clipos_lab[ray]')")
    g.add_argument("--address", default=None,
                   help="Ray cluster to attach to: 'auto' or host:port of `ray start --head`")
    g.add_argument("--task-cpus", type=positive_number("--task-cpus"), default=1.0,
                   help="CPUs per Ray task (default 1)")
    g.add_argument("--task-gpus", type=positive_number("--task-gpus", zero=True), default=0.0,
                   help="GPUs per Ray task, e.g. 0.25 to share one GPU between four tasks (default 0)")


def _executor(args):
    from .evaluation.executor import make_executor

    if args.executor == "local" and (args.address or args.task_gpus or args.task_cpus != 1.0):
        raise ValueError("--address, --task-cpus and --task-gpus are options of --executor ray")
    return make_executor(args.executor, address=args.address, task_cpus=args.task_cpus, task_gpus=args.task_gpus)


def positive_number(option: str, zero: bool = False):
    """An argparse ``type`` for a finite number > 0 (>= 0 with ``zero``); its errors name the option."""
    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{option} must be {'>= 0' if zero else '> 0'}, got {text}")
        return value
    parse.__name__ = option
    return parse


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
    from .backbone import Backbone
    from .clipn import train as clipn

    backbone = Backbone.load()
    if args.action == "train":
        cfg = clipn.ClipnConfig.from_dict(_json_option(args.options, "--options")) if args.options else None
        encoder = clipn.train(backbone, args.out, cfg, progress=not args.no_progress,
                              max_steps_this_sitting=args.max_steps)
        print(json.dumps(encoder.meta.get("step")))
    else:
        if not args.to:
            raise ValueError("clipn export needs --to <file.safetensors>")
        print(clipn.export(backbone, args.out, args.to, overwrite=args.overwrite))
    return 0


def _json_option(text: str, option: str) -> dict:
    """A JSON object given on the command line; a parse error names ``option``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{option} is not valid JSON ({err}): give e.g. '{{\"steps\": 3600}}'") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object, got {text!r}")
    return value


def cmd_pocket(args) -> int:
    from .pocket import train as pocket

    if args.action == "train":
        cfg = pocket.TrainConfig.from_dict(_json_option(args.options, "--options")) if args.options else None
        row = pocket.train(args.out, cfg, progress=not args.no_progress, max_steps_this_sitting=args.max_steps)
        print(json.dumps(row, indent=1))
    elif args.action == "export":
        print(pocket.export(args.out))
    elif args.action == "check":
        print(pocket.verify_pocket_weights())
    return 0


def cmd_sweep(args) -> int:
    from .sweep import run_sweep

    result = run_sweep(args.sweep, out_dir=args.out, kernel=args.kernel, executor=_executor(args))
    print(result)
    return 1 if result.failed else 0


def cmd_splits(args) -> int:
    from .pocket.splits import N_SPLITS, write_split_specs

    n = N_SPLITS if args.n is None else args.n
    for path in write_split_specs(args.out, n_splits=n, n_id=args.n_id, seed=args.seed,
                                  overwrite=args.overwrite):
        print(path)
    return 0


def cmd_anomaly(args) -> int:
    from .anomaly.data import AnomalySpec
    from .anomaly.runner import DEFAULT_METHODS, run_anomaly

    spec = AnomalySpec.from_yaml(_anomaly_spec_path(args.spec))
    spec.categories()  # a missing folder fails here, before the backbone loads
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(DEFAULT_METHODS)
    options = _json_option(args.options, "--options") if args.options else None  # {"method": {"option": value}}
    if options is not None and not all(isinstance(v, dict) for v in options.values()):
        raise ValueError('--options must be a JSON object {"method": {"option": value}}, got ' + repr(args.options))
    result = run_anomaly(spec, _backbone(args), methods=methods, shots=args.shots, seeds=args.seeds,
                         method_options=options, out_dir=args.out, cache=args.cache_dir or True,
                         progress=not args.no_progress, overwrite=args.overwrite, executor=_executor(args))
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


def _anomaly_spec_path(value: str) -> Path:
    from .anomaly.data import shipped_spec

    return shipped_spec(value) or Path(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clipos_lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="encode a dataset folder or every dataset of a benchmark spec")
    p.add_argument("source", help="image folder (one sub-folder per class), a benchmark YAML, or 'default'")
    p.add_argument("--batch-size", type=whole_number("--batch-size"), default=64)
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default $CLIPOS_CACHE_DIR)")
    p.add_argument("--no-progress", action="store_true")
    _add_backbone_args(p)
    p.set_defaults(func=cmd_encode)

    from .methods import all_score_names, default_methods, methods

    for name, helptext in (("evaluate", "the zero-shot methods on a benchmark spec (no training image is encoded)"),
                           ("benchmark", "methods x shots x seeds on a benchmark spec")):
        defaults = default_methods("zero-shot") if name == "evaluate" else default_methods()
        p = sub.add_parser(name, help=helptext)
        p.add_argument("spec", nargs="?", default="default",
                       help="benchmark YAML, a folder of them (a suite), 'default' (the pocket world) or "
                            "'splits' (its ten random class splits, a suite)")
        p.add_argument("--methods", default=None,
                       help=f"comma-separated, from: {', '.join(methods())} (default: {', '.join(defaults)})")
        p.add_argument("--shots", type=number_list("--shots", 1), default=[1, 2],
                       help="comma-separated images per ID class (default 1,2)")
        p.add_argument("--seeds", type=number_list("--seeds", 0), default=[1, 2, 3],
                       help="comma-separated distinct seeds (default 1,2,3)")
        p.add_argument("--epochs", type=whole_number("--epochs"), default=None,
                       help="prompt-learning epochs (default 50)")
        p.add_argument("--options", default=None,
                       help='JSON of method options, e.g. \'{"NegLabel": {"vocabulary": "my-words.txt"}}\'')
        p.add_argument("--scores", default=None,
                       help=f"comma-separated scores to compute ({', '.join(all_score_names())}); default: every "
                            "score of each method. A name no method gives, or a method left with none, is an error. "
                            "Leaving out GL-MCM never reads local tokens at scoring time")
        p.add_argument("--batch-size", type=whole_number("--batch-size"), default=64, help="images per encoder batch")
        p.add_argument("--out", default=f"outputs/{name}", help="output folder (one run; see --overwrite)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace an earlier run in --out (without it, such a folder is refused)")
        p.add_argument("--fpr95-rule", default="first", choices=["first", "closest", "interpolate"],
                       help="how FPR95 reads the 95%% point: first recall >= 0.95 (ours), closest recall "
                            "(MCM / LoCoOp), interpolated (CLIPN)")
        p.add_argument("--cache-dir", default=None)
        p.add_argument("--no-progress", action="store_true")
        _add_backbone_args(p)
        _add_executor_args(p)
        p.set_defaults(func=(lambda a: cmd_benchmark(a, zero_shot_only=True)) if name == "evaluate"
                       else cmd_benchmark)

    p = sub.add_parser("rerun", help="run a benchmark again from its run.json (same config, same results.csv)")
    p.add_argument("run", help="a run.json written by `benchmark` (or the folder holding it)")
    p.add_argument("--out", default="outputs/rerun", help="output folder (one run; see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    p.add_argument("--device", type=device_name, default="auto", help="where to run (auto, cpu, cuda, cuda:<n>)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("clipn", help="train or export the pocket model's CLIPN no-text tower (docs/clipn.md)")
    p.add_argument("action", choices=["train", "export"])
    p.add_argument("--out", default="runs/clipn", help="training folder (checkpoint.pt, training_log.csv)")
    p.add_argument("--options", default=None, help='JSON of ClipnConfig fields, e.g. \'{"steps": 3000}\'')
    p.add_argument("--max-steps", type=whole_number("--max-steps"), default=None,
                   help="stop after this many steps (resume later)")
    p.add_argument("--to", default=None, help="export: the safetensors file to write")
    p.add_argument("--overwrite", action="store_true", help="export: replace an existing file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_clipn)

    p = sub.add_parser("pocket", help="train, export or check the pocket model")
    p.add_argument("action", choices=["train", "export", "check"])
    p.add_argument("--out", default="runs/pocket", help="training folder (checkpoint.pt, training_log.csv)")
    p.add_argument("--options", default=None, help='JSON of TrainConfig fields, e.g. \'{"steps": 3600}\'')
    p.add_argument("--max-steps", type=whole_number("--max-steps"), default=None,
                   help="stop after this many steps (resume later)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_pocket)

    p = sub.add_parser("sweep", help="papermill over a parameter grid, then aggregate")
    p.add_argument("sweep", help="sweep YAML (see notebooks/params/)")
    p.add_argument("--out", default=None, help="output folder (default: the sweep file's `output`)")
    p.add_argument("--kernel", default="python3")
    _add_executor_args(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("splits", help="write benchmark specs of random ID/OOD class splits of the pocket world")
    p.add_argument("--out", default="outputs/world-splits",
                   help="folder for world-split<k>.yaml (the shipped ones are in assets/benchmarks/world-splits)")
    p.add_argument("--n", type=whole_number("--n"), default=None,
                   help="number of splits (default: the 10 shipped ones)")
    p.add_argument("--n-id", type=whole_number("--n-id"), default=6, help="ID shapes per split (the rest are near-OOD)")
    p.add_argument("--seed", type=whole_number("--seed", 0), default=0, help="seed of the permutations")
    p.add_argument("--overwrite", action="store_true", help="replace split specs that already exist in --out")
    p.set_defaults(func=cmd_splits)

    from .anomaly.registry import default_methods as default_anomaly_methods
    from .anomaly.registry import methods as anomaly_methods

    p = sub.add_parser("anomaly", help="anomaly maps x shots x seeds on an anomaly spec (world or MVTec-style)")
    p.add_argument("spec", nargs="?", default="world-anomaly",
                   help="anomaly YAML, or a shipped one: world-anomaly (default), world-anomaly-validation, "
                        "paper-mvtec, paper-visa")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, from: {', '.join(anomaly_methods())} (default: "
                        f"{', '.join(default_anomaly_methods())})")
    p.add_argument("--shots", type=number_list("--shots", 0), default=[0, 1, 2, 4],
                   help="0 runs the zero-shot methods; k > 0 the few-shot ones (default 0,1,2,4)")
    p.add_argument("--seeds", type=number_list("--seeds", 0), default=[1, 2, 3], help="distinct seeds (default 1,2,3)")
    p.add_argument("--options", default=None,
                   help='JSON of method options, e.g. \'{"patch-memory": {"layers": [3, 4]}}\'')
    p.add_argument("--out", default="outputs/anomaly", help="output folder (one run; see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --out (without it, such a folder is refused)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    _add_backbone_args(p)
    _add_executor_args(p)
    p.set_defaults(func=cmd_anomaly)

    p = sub.add_parser("vocab", help="build the WordNet 3.0 noun + adjective list for negative-label mining")
    p.add_argument("--wordnet", default="/usr/share/wordnet",
                   help="WordNet 3.0 database folder with data.noun and data.adj (Debian's wordnet-base)")
    p.add_argument("--out", default=None, help="output folder (default: the shipped assets/vocab)")
    p.add_argument("--source", default="", help="how the WordNet files were obtained, for the README")
    p.add_argument("--overwrite", action="store_true", help="replace an existing word list")
    p.set_defaults(func=cmd_vocab)
    return parser


def _show_progress_logs() -> None:
    """The library logs its progress (``clipos_lab.*`` loggers); the command line shows it on stderr."""
    logger = logging.getLogger("clipos_lab")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _written_where(err: OSError, args) -> str:
    """For a full disk or a file-size limit that names no file: the folders this command writes to."""
    if err.filename is not None or err.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return ""
    folders = [f"{what} {value}" for what, value in (("output folder", getattr(args, "out", None)),
                                                     ("feature cache", getattr(args, "cache_dir", None))) if value]
    if hasattr(args, "cache_dir") and not args.cache_dir:
        from .features import default_cache_dir

        folders.append(f"feature cache {default_cache_dir()}")
    return f" while writing to {' or '.join(folders)}; free space there or choose another folder" if folders else ""


def _thread_policy(args):
    """Commands that compute run under --threads, else $CLIPOS_THREADS, else the rule (clipos_lab.threads)."""
    if not hasattr(args, "threads"):
        return contextlib.nullcontext()
    from .threads import using_threads

    return using_threads(args.threads)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a problem with the input, a file or the machine is one ``error:`` line and exit code 2."""
    from .files import describe_os_error

    args = build_parser().parse_args(argv)
    _show_progress_logs()
    try:
        with _thread_policy(args):
            return args.func(args)
    except OSError as err:  # before ValueError: some errors are both; this names the path
        print(f"error: {describe_os_error(err)}{_written_where(err, args)}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (output folders and caches keep their earlier state)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m clipos_lab <command>``.

    encode     encode a dataset (folder or benchmark spec) into cached FeatureBanks
    evaluate   the zero-shot methods on a benchmark spec (no training image is encoded)
    benchmark  methods x shots x seeds on a benchmark spec (few-shot and test-time included)
    rerun      a benchmark again from its run.json
    clipn      train / export a pocket model's CLIPN no-text tower (v1, or v2 with --model pocket2)
    pocket     train / export / check the shipped pocket model
    sweep      run a notebook through papermill over a parameter grid, then aggregate
    splits     write the benchmark specs of random ID/OOD class splits of the pocket world
    anomaly    anomaly maps (patch memory, mutual scoring, state prompts, ...) x shots x seeds on an anomaly spec
    vocab      build the WordNet word list the negative-label methods mine from

This module builds the parser and runs a command; :mod:`clipos_lab.commands` holds what each command does and
:mod:`clipos_lab.cli_args` the option types and groups they share.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import sys

from . import commands as C
from .cli_args import add_backbone_args, add_executor_args, device_name, number_list, thread_count, whole_number  # noqa: F401
from .commands import cmd_benchmark  # noqa: F401 (tests call it directly)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clipos_lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="encode a dataset folder or every dataset of a benchmark spec")
    p.add_argument("source", help="image folder (one sub-folder per class), a benchmark YAML, or 'default'")
    p.add_argument("--batch-size", type=whole_number("--batch-size"), default=64)
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default $CLIPOS_CACHE_DIR)")
    p.add_argument("--no-progress", action="store_true")
    add_backbone_args(p)
    p.set_defaults(func=C.cmd_encode)

    from .methods import all_score_names, default_methods, methods

    for name, helptext in (("evaluate", "the zero-shot methods on a benchmark spec (no training image is encoded)"),
                           ("benchmark", "methods x shots x seeds on a benchmark spec")):
        defaults = default_methods("zero-shot") if name == "evaluate" else default_methods()
        p = sub.add_parser(name, help=helptext)
        p.add_argument("spec", nargs="?", default="default",
                       help="benchmark YAML, a folder of them (a suite), 'default' (the pocket world), "
                            "'splits' (its ten random class splits, a suite) or 'drawings' (pocket v2's ten class "
                            "splits of the drawings, a suite; the model defaults to pocket2)")
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
        add_backbone_args(p)
        add_executor_args(p)
        p.set_defaults(func=(lambda a: C.cmd_benchmark(a, zero_shot_only=True)) if name == "evaluate"
                       else C.cmd_benchmark)

    p = sub.add_parser("rerun", help="run a benchmark again from its run.json (same config, same results.csv)")
    p.add_argument("run", help="a run.json written by `benchmark` (or the folder holding it)")
    p.add_argument("--out", default="outputs/rerun", help="output folder (one run; see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    p.add_argument("--device", type=device_name, default="auto", help="where to run (auto, cpu, cuda, cuda:<n>)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=C.cmd_rerun)

    p = sub.add_parser("clipn", help="train or export a pocket model's CLIPN no-text tower (docs/clipn.md; "
                       "--model pocket2: pocket v2's, on world v2)")
    p.add_argument("action", choices=["train", "export"])
    p.add_argument("--out", default="runs/clipn", help="training folder (checkpoint.pt, training_log.csv)")
    p.add_argument("--options", default=None, help='JSON of ClipnConfig fields, e.g. \'{"steps": 3000}\'')
    p.add_argument("--max-steps", type=whole_number("--max-steps"), default=None,
                   help="stop after this many steps (resume later)")
    p.add_argument("--to", default=None, help="export: the safetensors file to write")
    p.add_argument("--overwrite", action="store_true", help="export: replace an existing file")
    p.add_argument("--no-progress", action="store_true")
    add_backbone_args(p)
    p.set_defaults(func=C.cmd_clipn)

    p = sub.add_parser("pocket", help="train, export or check the pocket model; build the drawings pack; train v2")
    p.add_argument("action", choices=["train", "export", "check", "pack", "train2", "export2"])
    p.add_argument("--out", default=None, help="training folder (checkpoint.pt, training_log.csv; default "
                   "runs/pocket, train2 / export2: runs/pocket2) or, for pack, the pack folder (default "
                   "assets/drawings)")
    p.add_argument("--source", default="/usr/share/openclipart/svg",
                   help="pack: the Open Clip Art SVG tree (Debian's openclipart-svg)")
    p.add_argument("--subset", type=whole_number("--subset"), default=None,
                   help="pack: keep only the first N drawings and backgrounds (quick checks)")
    p.add_argument("--overwrite", action="store_true", help="pack: replace the pack in --out; export2: replace "
                   "pocket v2's shipped weights")
    p.add_argument("--reuse", default=None, help="pack: an earlier pack whose sprites are copied where the source "
                   "file and renderer are unchanged (same bytes as rendering again, in seconds)")
    p.add_argument("--options", default=None, help='JSON of TrainConfig fields, e.g. \'{"steps": 3600}\'')
    p.add_argument("--max-steps", type=whole_number("--max-steps"), default=None,
                   help="stop after this many steps (resume later)")
    p.add_argument("--device", default="auto", help="train / train2: cpu, cuda, cuda:<index>, or auto (a GPU where "
                   "torch sees one); a run may resume on another device")
    p.add_argument("--workers", type=whole_number("--workers", low=0), default=0,
                   help="train / train2: processes that draw the next batches while the model trains (0: none; "
                        "on a GPU, most of the machine's cores)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=C.cmd_pocket)

    p = sub.add_parser("sweep", help="papermill over a parameter grid, then aggregate")
    p.add_argument("sweep", help="sweep YAML (see notebooks/params/)")
    p.add_argument("--out", default=None, help="output folder (default: the sweep file's `output`)")
    p.add_argument("--kernel", default="python3")
    add_executor_args(p)
    p.set_defaults(func=C.cmd_sweep)

    p = sub.add_parser("splits", help="write benchmark specs of random ID/OOD class splits of the pocket world")
    p.add_argument("--world", type=int, choices=(1, 2), default=1,
                   help="1: the shapes world (world-split<k>.yaml); 2: the drawings (drawings-*.yaml: ID, near-OOD "
                        "siblings, far-OOD, unseen concepts, textures; --n-id does not apply)")
    p.add_argument("--validation", action="store_true",
                   help="--world 2: the validation versions (val drawings, other scenes), for choosing defaults")
    p.add_argument("--out", default=None,
                   help="folder for the specs (default outputs/world-splits or outputs/drawings-splits; the shipped "
                        "ones are in assets/benchmarks/)")
    p.add_argument("--n", type=whole_number("--n"), default=None,
                   help="number of splits (default: the 10 shipped ones)")
    p.add_argument("--n-id", type=whole_number("--n-id"), default=6, help="ID shapes per split (the rest are near-OOD)")
    p.add_argument("--seed", type=whole_number("--seed", 0), default=0, help="seed of the permutations")
    p.add_argument("--overwrite", action="store_true", help="replace split specs that already exist in --out")
    p.set_defaults(func=C.cmd_splits)

    from .anomaly.registry import default_methods as default_anomaly_methods
    from .anomaly.registry import methods as anomaly_methods

    p = sub.add_parser("anomaly", help="anomaly maps x shots x seeds on an anomaly spec (world or MVTec-style)")
    p.add_argument("spec", nargs="?", default="world-anomaly",
                   help="anomaly YAML, or a shipped one: world-anomaly (default), world-anomaly-validation, "
                        "drawings-anomaly, drawings-anomaly-validation (pocket v2's drawn products; the model "
                        "defaults to pocket2), paper-mvtec, paper-visa")
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
    add_backbone_args(p)
    add_executor_args(p)
    p.set_defaults(func=C.cmd_anomaly)

    p = sub.add_parser("vocab", help="build the WordNet 3.0 noun + adjective list for negative-label mining")
    p.add_argument("--wordnet", default="/usr/share/wordnet",
                   help="WordNet 3.0 database folder with data.noun and data.adj (Debian's wordnet-base)")
    p.add_argument("--out", default=None, help="output folder (default: the shipped assets/vocab)")
    p.add_argument("--source", default="", help="how the WordNet files were obtained, for the README")
    p.add_argument("--overwrite", action="store_true", help="replace an existing word list")
    p.set_defaults(func=C.cmd_vocab)
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

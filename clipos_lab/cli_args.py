"""The command line's shared pieces: argparse types whose errors name their option, the backbone and executor
option groups, and the helpers that turn those options into objects."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def add_backbone_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backbone")
    g.add_argument("--model", default=None,
                   help="open_clip model name, 'pocket' or 'pocket2' (default: the pocket model the spec's world was "
                        "drawn for: pocket2 for the drawings, else pocket; both offline)")
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


def backbone_from(args, spec: str | Path | None = None):
    """The backbone the command line asks for; without ``--model``, the pocket model ``spec`` was drawn for."""
    from .backbone import Backbone

    model = args.model or (pocket_model_for(spec) if spec is not None else "pocket")
    return Backbone.load(model, pretrained=args.pretrained, checkpoint=args.checkpoint, config=args.config,
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


def add_executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where cells run (docs/scale.md)")
    g.add_argument("--executor", default="local", choices=["local", "processes", "ray"],
                   help="local (default: this process), processes (--processes worker processes of this "
                        "machine, cells side by side) or ray (a local Ray cluster, or --address; "
                        "pip install 'clipos_lab[ray]')")
    g.add_argument("--processes", type=whole_number("--processes", 1), default=None,
                   help="worker processes of --executor processes (default: one per core)")
    g.add_argument("--address", default=None,
                   help="Ray cluster to attach to: 'auto' or host:port of `ray start --head`")
    g.add_argument("--task-cpus", type=positive_number("--task-cpus"), default=1.0,
                   help="CPUs per Ray task (default 1)")
    g.add_argument("--task-gpus", type=positive_number("--task-gpus", zero=True), default=0.0,
                   help="GPUs per Ray task, e.g. 0.25 to share one GPU between four tasks (default 0)")


def executor_from(args):
    from .evaluation.executor import make_executor

    if args.executor != "ray" and (args.address or args.task_gpus or args.task_cpus != 1.0):
        raise ValueError("--address, --task-cpus and --task-gpus are options of --executor ray")
    return make_executor(args.executor, address=args.address, task_cpus=args.task_cpus, task_gpus=args.task_gpus,
                         processes=args.processes)  # which options go with which executor: checked there


def positive_number(option: str, zero: bool = False):
    """An argparse ``type`` for a finite number > 0 (>= 0 with ``zero``); its errors name the option."""
    def parse(text: str) -> float:

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{option} must be {'>= 0' if zero else '> 0'}, got {text}")
        return value
    parse.__name__ = option
    return parse


def json_option(text: str, option: str) -> dict:
    """A JSON object given on the command line; a parse error names ``option``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{option} is not valid JSON ({err}): give e.g. '{{\"steps\": 3600}}'") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object, got {text!r}")
    return value


SUITES = {"splits": "world-splits", "drawings": "drawings-splits"}  # shipped suites by their short names


def spec_path(value: str | None) -> str:
    from .data import default_benchmark_path

    if value in SUITES:
        return str(default_benchmark_path().parent / SUITES[value])
    return str(default_benchmark_path()) if value in (None, "default") else value


def pocket_model_for(spec: str | Path) -> str:
    """"pocket2" when a spec (or the first spec of a suite folder) draws the drawings world, else "pocket": world
    v2's images are what pocket v2 was trained for, and v1's model has never seen a drawing."""
    import yaml

    path = Path(spec)
    if path.is_dir():
        path = next(iter(sorted(path.glob("*.yaml"))), path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return "pocket"  # the spec's own loader reports what is wrong with it

    def draws_drawings(node) -> bool:
        if isinstance(node, dict):
            return node.get("type") == "drawings" or any(draws_drawings(v) for v in node.values())
        return isinstance(node, list) and any(draws_drawings(v) for v in node)

    return "pocket2" if draws_drawings(data) else "pocket"


def anomaly_spec_path(value: str) -> Path:
    from .anomaly.data import shipped_spec

    return shipped_spec(value) or Path(value)

"""One run record: a frozen config that is both what the runner runs and what ``run.json`` stores.

:class:`RunConfig` holds everything that decides a benchmark's numbers: the spec (its content and sha256), each
method with every option, shots, seeds, the prompt-learning config, the scores asked for, the FPR95 rule, the
backbone (how to load it, and its weights' identity) and the package version. ``python -m clipos_lab rerun
run.json`` rebuilds the config and the backbone from the file and runs it again; the same config gives the same
``results.csv``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..clipos.prompts import PromptConfig
from ..data import BenchmarkSpec
from ..files import sha256_file
from ..methods import build_method
from . import metrics as M

RECORD_VERSION = 1


@dataclass(frozen=True)
class MethodChoice:
    """A registered method name and every option of the built method (preset, user options and defaults)."""

    name: str
    options: dict = field(default_factory=dict)

    @classmethod
    def resolve(cls, name: str, options: dict | None = None) -> "MethodChoice":
        """Build the method once to read back all its options (so a later change of a default is visible)."""
        params = build_method(name, **(options or {})).get_params()
        return cls(name, {k: v for k, v in params.items() if k not in ("seed", "prompt")})

    def build(self, seed: int = 0, prompt: PromptConfig | None = None):
        return build_method(self.name, seed=seed, prompt=prompt, **self.options)


@dataclass(frozen=True)
class RunConfig:
    """What a benchmark run runs; :meth:`to_dict` is ``run.json``'s ``config`` and :meth:`from_dict` reads it."""

    spec: dict                      # the spec's content: name, id, ood, id_train, metrics
    spec_base_dir: str              # relative paths in ``spec`` are read from here
    methods: tuple[MethodChoice, ...]
    shots: tuple[int, ...] = (1, 2)
    seeds: tuple[int, ...] = (1, 2, 3)
    prompt: dict = field(default_factory=lambda: asdict(PromptConfig(progress=False)))
    scores: tuple[str, ...] | None = None
    fpr95_rule: str = M.DEFAULT_FPR95_RULE
    batch_size: int = 64
    backbone: dict = field(default_factory=dict)  # load arguments + weights id + checkpoint sha256
    spec_path: str | None = None
    spec_sha256: str | None = None
    package_version: str = __version__

    @classmethod
    def create(cls, spec: BenchmarkSpec, backbone, methods: Sequence[str], shots, seeds,
               prompt: PromptConfig | None = None, method_options: dict | None = None,
               scores: Sequence[str] | None = None, fpr95_rule: str = M.DEFAULT_FPR95_RULE,
               batch_size: int = 64) -> "RunConfig":
        method_options = method_options or {}
        prompt = prompt or PromptConfig(progress=False)
        return cls(spec=spec_content(spec), spec_base_dir=str(Path(spec.base_dir).resolve()),
                   methods=tuple(MethodChoice.resolve(m, method_options.get(m)) for m in methods),
                   shots=tuple(int(s) for s in shots), seeds=tuple(int(s) for s in seeds),
                   prompt=asdict(prompt), scores=None if scores is None else tuple(scores),
                   fpr95_rule=fpr95_rule, batch_size=int(batch_size), backbone=backbone_record(backbone),
                   spec_path=None if spec.path is None else str(Path(spec.path).resolve()),
                   spec_sha256=sha256_file(spec.path) if spec.path is not None else None)

    # ------------------------------------------------------------------------------------------ what it runs
    @property
    def method_names(self) -> list[str]:
        return [m.name for m in self.methods]

    @property
    def prompt_config(self) -> PromptConfig:
        return PromptConfig(**self.prompt)

    def benchmark_spec(self) -> BenchmarkSpec:
        spec = BenchmarkSpec.from_dict(dict(self.spec), base_dir=self.spec_base_dir)
        spec.path = None if self.spec_path is None else Path(self.spec_path)
        return spec

    def load_args(self) -> dict:
        """How the run's backbone was loaded (``Backbone.load`` keyword arguments)."""
        args = self.backbone.get("load_args")
        if not args:
            raise ValueError("this run record has no backbone load arguments (the backbone was built by hand, not "
                             "by Backbone.load): load it yourself and pass it to run_config")
        return args

    def load_backbone(self, device: str = "auto"):
        """The backbone this run used, loaded again (its weights must be the same: :meth:`check_backbone`)."""
        from ..backbone import Backbone

        return self.check_backbone(Backbone.load(**self.load_args(), device=device))

    def check_backbone(self, backbone):
        """``backbone`` if its weights are the ones this run used (weights id, checkpoint sha256), else an error."""
        args = self.load_args()
        if backbone.weights_id != self.backbone.get("weights_id") and args.get("checkpoint") is None:
            raise ValueError(f"the backbone loads as {backbone.weights_id}, but the run used "
                             f"{self.backbone.get('weights_id')}: the weights changed since")
        digest = self.backbone.get("checkpoint_sha256")
        if digest and sha256_file(args["checkpoint"]) != digest:
            raise ValueError(f"checkpoint {args['checkpoint']} is not the file the run used (sha256 differs)")
        return backbone

    # ------------------------------------------------------------------------------------------ run.json
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["methods"] = [{"name": m.name, "options": m.options} for m in self.methods]
        for key in ("shots", "seeds", "scores"):
            d[key] = None if d[key] is None else list(d[key])
        return {"record_version": RECORD_VERSION, **json.loads(json.dumps(d, default=str))}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        version = d.pop("record_version", None)
        if version != RECORD_VERSION:
            raise ValueError(f"run record version {version!r} is not {RECORD_VERSION}: rerun it with the "
                             "clipos_lab version that wrote it")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"run record has unknown keys {unknown}")
        d["methods"] = tuple(MethodChoice(m["name"], dict(m.get("options") or {})) for m in d["methods"])
        for key in ("shots", "seeds", "scores"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


def spec_content(spec: BenchmarkSpec) -> dict:
    out = {"name": spec.name, "id": spec.id, "ood": spec.ood}
    if spec.id_train is not None:
        out["id_train"] = spec.id_train
    if spec.metrics is not None:
        out["metrics"] = list(spec.metrics)
    return json.loads(json.dumps(out, default=str))


def backbone_record(backbone) -> dict:
    args = getattr(backbone, "load_args", None)
    record = {"name": backbone.name, "weights_id": backbone.weights_id, "load_args": args}
    checkpoint = (args or {}).get("checkpoint")
    if checkpoint is not None:
        record["checkpoint_sha256"] = sha256_file(checkpoint)
    return record

"""The benchmark runner: methods x shots x seeds on one benchmark spec, on cached features, in one tidy table.

Every image (ID test, every OOD set, the ID training pool) is encoded once into a FeatureBank; each seed draws
its own few-shot set from the training pool (a manifest records the files), and every method is fitted and
scored on features only. What a method needs comes from its kind (the method contract, ``docs/contract.md``):
zero-shot methods are fitted and scored once (``shots = 0``, ``seed = 0``); test-time methods are fitted once and
scored once per seed (the seed orders the test stream; tables mark them transductive); few-shot methods are
fitted per shots x seed.

The tidy table has one row per (method, score, shots, seed, ood, metric); ``summary`` gives mean and std over
seeds of the OOD-set average, per method, score and shots. Scores are higher = more ID; ID is the positive
class (FPR95 = OOD accepted at 95% ID recall), as in MCM and LoCoOp; ``FPR95_OOD_POS`` is the same with OOD
positive. ``fpr95_rule`` names how the 95% point is read (:data:`clipos_lab.evaluation.metrics.FPR95_RULES`).

A run is described by a :class:`~clipos_lab.evaluation.record.RunConfig`; :func:`run_config` runs one,
:func:`run_benchmark` builds it from arguments, and ``run.json`` stores it (``python -m clipos_lab rerun``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ..clipos.prompts import PromptConfig
from ..data import BenchmarkSpec, write_manifest
from ..files import RunFolder, atomic_path, check_name, slug, write_csv, write_json, write_text
from ..methods import default_methods, kind_of, score_names_of
from ..methods import methods as registered_methods
from . import metrics as M
from . import tables as T
from .banks import Banks, OverlapWarning, TrainPool, check_banks, encode_banks
from .executor import Cell, LocalExecutor
from .record import RunConfig

__all__ = ["BENCHMARK_OUTPUTS", "Banks", "BenchmarkResult", "DEFAULT_METHODS", "METRICS", "OverlapWarning",
           "TrainPool", "check_banks", "check_run_arguments", "encode_banks", "run_benchmark", "run_config"]

DEFAULT_METHODS = tuple(default_methods())
METRICS = ("AUROC", "FPR95", "FPR95_OOD_POS", "AUPR_IN", "AUPR_OUT")
BENCHMARK_OUTPUTS = ["results.csv", "summary.csv", "summary.md", "metrics.json", "manifests", "prompts"]


@dataclass
class BenchmarkResult:
    rows: list[dict]
    summary: list[dict]
    timings: dict = field(default_factory=dict)
    fpr95_rule: str = M.DEFAULT_FPR95_RULE
    fitted: dict = field(default_factory=dict)  # (method, shots, seed) -> fitted method, for notebooks
    scores: dict = field(default_factory=dict)  # (method, shots, seed) -> {"id": {...}, ood name: {...}}
    skipped: dict = field(default_factory=dict)  # set -> [{"id", "error"}] of unreadable images
    config: RunConfig | None = None

    def summary_markdown(self) -> str:
        text = T.summary_markdown(self.summary, fpr95_rule=self.fpr95_rule)
        transductive = [m.name for m in (self.config.methods if self.config else ()) if
                        kind_of(m.name) == "test-time"]
        if transductive:
            text += (f"\n\nTransductive (test-time) methods: {', '.join(transductive)}: their scores depend on the "
                     "test stream, fed in a seeded order (one order per seed).")
        return text


def run_benchmark(spec: BenchmarkSpec | str | os.PathLike, backbone, methods: Sequence[str] = DEFAULT_METHODS,
                  shots: Sequence[int] = (1, 2), seeds: Sequence[int] = (1, 2, 3), prompt: PromptConfig | None = None,
                  method_options: dict | None = None, out_dir: str | os.PathLike | None = None, cache=True,
                  progress: bool = True, batch_size: int = 64, save_prompts: bool = True,
                  banks: Banks | None = None, keep_fitted: bool = False,
                  fpr95_rule: str = M.DEFAULT_FPR95_RULE, overwrite: bool = False, num_workers: int = 0,
                  scores: Sequence[str] | None = None, executor=None) -> BenchmarkResult:
    """Fit and score every method; write ``results.csv``, ``summary.csv``, ``summary.md``, ``metrics.json``.

    ``out_dir`` is written as a whole (see :class:`~clipos_lab.files.RunFolder`): with ``run.json`` listing every
    file and the run's :class:`RunConfig`, never mixed with an earlier run, and an earlier run there is replaced
    only with ``overwrite=True``. ``scores`` limits the scores computed (e.g. ``["MCM"]`` never reads local
    tokens); a name no selected method gives, or a method that gives none of them, is an error. ``executor``
    (:func:`~clipos_lab.evaluation.executor.make_executor`) runs the cells: in this process by default, or on Ray.
    """
    M.check_fpr95_rule(fpr95_rule)
    if isinstance(spec, (str, os.PathLike)):
        spec = BenchmarkSpec.from_yaml(spec)
    check_run_arguments(methods, shots, seeds, batch_size, scores, method_options)
    check_name(spec.name, "benchmark name")
    config = RunConfig.create(spec, backbone, methods, shots, seeds, prompt=prompt, method_options=method_options,
                              scores=scores, fpr95_rule=fpr95_rule, batch_size=batch_size)
    return run_config(config, backbone, out_dir=out_dir, overwrite=overwrite, cache=cache, progress=progress,
                      save_prompts=save_prompts, banks=banks, keep_fitted=keep_fitted, num_workers=num_workers,
                      spec=spec, executor=executor)


def run_config(config: RunConfig, backbone, out_dir: str | os.PathLike | None = None, overwrite: bool = False,
               cache=True, progress: bool = True, save_prompts: bool = True, banks: Banks | None = None,
               keep_fitted: bool = False, num_workers: int = 0, spec: BenchmarkSpec | None = None,
               executor=None) -> BenchmarkResult:
    """Run ``config`` with ``backbone``; the other arguments change where things go, where cells run and what
    is kept, never a number. ``run.json`` in ``out_dir`` stores ``config`` (see :func:`rerun`)."""
    spec = spec or config.benchmark_spec()
    if out_dir is None:
        return _run(config, spec, backbone, None, cache, progress, save_prompts, banks, keep_fitted, num_workers,
                    executor)
    run = RunFolder(out_dir, BENCHMARK_OUTPUTS, overwrite=overwrite)  # refuses before any work
    try:
        result = _run(config, spec, backbone, run.path, cache, progress, save_prompts, banks, keep_fitted,
                      num_workers, executor)
        run.commit(run_info(spec, backbone, config=config.to_dict()))
    except BaseException:
        run.discard()
        raise
    return result


def rerun(run_json: str | os.PathLike, out_dir: str | os.PathLike | None = None, overwrite: bool = False,
          device: str = "auto", **options) -> BenchmarkResult:
    """Run the benchmark a ``run.json`` records again (same spec content, methods with every option, shots,
    seeds, prompt config, scores, FPR95 rule and backbone); the same code gives the same ``results.csv``."""
    import json
    from pathlib import Path

    path = Path(run_json)
    if path.is_dir():
        path = path / "run.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"run record {path} does not exist: give a run.json written by a benchmark run "
                                "(or its folder)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"run record {path} is not valid JSON ({err})") from None
    if "config" not in record:
        raise ValueError(f"{path} holds no run config (a suite's run.json lists its specs' folders: rerun each "
                         "<spec>/run.json, or a run written before run records existed)")
    config = RunConfig.from_dict(record["config"])
    return run_config(config, config.load_backbone(device), out_dir=out_dir, overwrite=overwrite, **options)


def check_run_arguments(methods: Sequence[str], shots: Sequence[int], seeds: Sequence[int],
                        batch_size: int = 64, scores: Sequence[str] | None = None,
                        method_options: dict | None = None) -> None:
    """Every argument problem at once, before any image is encoded."""
    problems = []
    known = registered_methods()
    unknown = [m for m in methods if m not in known]
    if unknown:
        problems.append(f"unknown methods {unknown}; choose from {known}")
    if not list(methods):
        problems.append("methods is empty: name at least one method")
    for what, values, low in (("shots", shots, 1), ("seeds", seeds, 0)):
        values = list(values)
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low for v in values):
            problems.append(f"{what}={values}: every entry must be a whole number >= {low}")
        elif len(set(values)) != len(values):
            repeated = sorted({v for v in values if values.count(v) > 1})
            problems.append(f"{what}={values} repeats {repeated}: each value once (a repeated seed would be averaged "
                            f"as if it were an independent run)")
    seeded = [m for m in methods if m in known and kind_of(m) != "zero-shot"]
    if [m for m in seeded if kind_of(m) == "few-shot"] and (not list(shots) or not list(seeds)):
        problems.append(f"few-shot methods {seeded} need at least one shots value and one seed "
                        f"(got shots={list(shots)}, seeds={list(seeds)})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        problems.append(f"batch_size={batch_size!r} must be a whole number >= 1")
    stray = sorted(set(method_options or {}) - set(methods))
    if stray:
        problems.append(f"method_options names methods that are not run: {stray}")
    if scores is not None and not unknown and list(methods):
        problems.extend(_score_problems(methods, scores, method_options or {}))
    if problems:
        raise ValueError("; ".join(problems))


def _score_problems(methods, scores, method_options) -> list[str]:
    """A score nobody gives, or a method that gives none of the scores, would silently lose results."""
    if isinstance(scores, str) or not list(scores):
        return [f"scores={scores!r}: give a list of score names"]
    gives = {m: score_names_of(m, **method_options.get(m, {})) for m in methods}
    problems = []
    nobody = [s for s in scores if not any(s in g for g in gives.values())]
    if nobody:
        every = list(dict.fromkeys(s for g in gives.values() for s in g))
        problems.append(f"scores {nobody} are given by none of the methods {list(methods)} (they give {every})")
    idle = [m for m, g in gives.items() if not set(g) & set(scores)]
    if idle:
        problems.append("methods " + ", ".join(f"{m} (gives {list(gives[m])})" for m in idle)
                        + f" give none of the scores {list(scores)}: add one of theirs or leave the method out")
    return problems


def run_info(spec, backbone, **extra) -> dict:
    return {"benchmark": spec.name, "spec": str(spec.path) if getattr(spec, "path", None) else None,
            "model": backbone.name, "weights": backbone.weights_id, **extra,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _run(config: RunConfig, spec, backbone, out, cache, progress, save_prompts, banks, keep_fitted,
         num_workers, executor=None) -> BenchmarkResult:
    job = BenchmarkJob(config, spec, backbone, out, cache, progress, save_prompts, banks, keep_fitted, num_workers,
                       executor)
    return job.finish((executor or LocalExecutor()).run(job.cells(), progress=progress, desc="fit + score"))


class BenchmarkJob:
    """One spec's run split into cells (see :mod:`.executor`): the encoding happens here, the cells (one per
    method x shots x seed) anywhere, and :meth:`finish` assembles their results in cell order."""

    def __init__(self, config: RunConfig, spec, backbone, out, cache, progress, save_prompts, banks, keep_fitted,
                 num_workers, executor=None):
        self.config, self.spec, self.backbone, self.out = config, spec, backbone, out
        self.progress, self.save_prompts, self.keep_fitted = progress, save_prompts, keep_fitted
        self.t0 = time.perf_counter()
        in_process = executor is None or executor.in_process
        if keep_fitted and not in_process:
            raise ValueError("keep_fitted needs the local executor (fitted methods stay in the Ray workers)")
        self.banks = banks or encode_banks(spec, backbone, batch_size=config.batch_size, cache=cache,
                                           progress=progress, num_workers=num_workers)
        self.context = CellContext(config.to_dict(), _cache_arg(cache), str(backbone.device), num_workers,
                                   save_prompts and out is not None, keep_fitted)
        if in_process:  # cells in this process use these objects instead of loading them again
            _LIVE[self.context.key] = _Live(backbone, self.banks)

    def cells(self) -> list[Cell]:
        kinds = {m.name: kind_of(m.name) for m in self.config.methods}
        todo = []
        for i, m in enumerate(self.config.methods):
            if kinds[m.name] != "few-shot":
                for seed in [0] if kinds[m.name] == "zero-shot" else self.config.seeds:
                    todo.append(Cell(run_cell, (self.context, i, 0, int(seed)), m.name))
        if any(k == "few-shot" for k in kinds.values()):  # no learner: no shots drawn, no training image encoded
            for n_shots in self.config.shots:
                for seed in self.config.seeds:
                    for i, m in enumerate(self.config.methods):
                        if kinds[m.name] == "few-shot":
                            todo.append(Cell(run_cell, (self.context, i, int(n_shots), int(seed)),
                                             f"{m.name} {n_shots}-shot seed {seed}"))
        return todo

    def finish(self, outcomes: list["CellOutcome"]) -> BenchmarkResult:
        _LIVE.pop(self.context.key, None)
        result = BenchmarkResult([], [], fpr95_rule=self.config.fpr95_rule, config=self.config)
        fit_seconds: dict[str, float] = {}
        for outcome in outcomes:
            name = self.config.methods[outcome.method].name
            _add_rows(result, self.spec, name, outcome.shots, outcome.seed, outcome.scores, outcome.predicted,
                      self.banks)
            fit_seconds[name] = fit_seconds.get(name, 0.0) + outcome.seconds
            self.banks.encode_seconds += outcome.draw_seconds
            self.banks.id_train.skipped.update(outcome.skipped)
            if outcome.fitted is not None:
                result.fitted[(name, outcome.shots, outcome.seed)] = outcome.fitted
            if self.out is not None and outcome.manifest is not None:
                path = self.out / "manifests" / f"shots{outcome.shots}-seed{outcome.seed}.json"
                if not path.exists():
                    write_manifest(outcome.manifest, path)
            if self.out is not None and outcome.prompts is not None:
                path = self.out / "prompts" / f"{slug(name)}-shots{outcome.shots}-seed{outcome.seed}.safetensors"
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    Path(tmp).write_bytes(outcome.prompts)
        result.summary = T.summarise(result.rows)
        result.skipped = self.banks.skipped()
        result.timings = {"encode_s": self.banks.encode_seconds, "total_s": time.perf_counter() - self.t0,
                          "fit_and_score_s": fit_seconds}
        if self.out is not None:
            write_outputs(result, self.out, self.spec, self.backbone)
        return result


@dataclass(frozen=True)
class CellContext:
    """What a cell needs to find (in this process) or rebuild (in a Ray worker) the backbone and the banks."""

    config: dict
    cache: object
    device: str
    num_workers: int
    save_prompts: bool
    keep_fitted: bool

    @property
    def key(self) -> str:
        import hashlib
        import json

        return hashlib.sha1(json.dumps([self.config, str(self.cache), self.device], sort_keys=True,
                                       default=str).encode()).hexdigest()


@dataclass
class CellOutcome:
    method: int
    shots: int
    seed: int
    scores: dict                     # set name -> {score name: array}
    predicted: np.ndarray
    seconds: float
    draw_seconds: float = 0.0
    manifest: list | None = None
    prompts: bytes | None = None     # the learned method's safetensors file
    skipped: dict = field(default_factory=dict)
    fitted: object = None


@dataclass
class _Live:
    backbone: object
    banks: Banks
    draws: dict = field(default_factory=dict)   # (shots, seed) -> (bank, manifest): one draw per shots x seed
    memo: dict = field(default_factory=dict)    # score signature -> scores (zero-shot MCM and GL-MCM share)


_LIVE: dict[str, _Live] = {}  # per process: the running jobs' objects, or what a Ray worker rebuilt


def _live(context: CellContext) -> _Live:
    live = _LIVE.get(context.key)
    if live is None:  # a Ray worker: load the backbone and read the banks from the (shared) feature cache
        config = RunConfig.from_dict(context.config)
        backbone = config.load_backbone("auto" if context.device.startswith("cuda") else context.device)
        banks = encode_banks(config.benchmark_spec(), backbone, batch_size=config.batch_size, cache=context.cache,
                             progress=False, num_workers=context.num_workers)
        live = _LIVE[context.key] = _Live(backbone, banks)
    return live


def run_cell(context: CellContext, method_index: int, n_shots: int, seed: int) -> CellOutcome:
    """Fit one method (on its draw, for a few-shot method) and score every set: one cell of a benchmark."""
    import tempfile

    live = _live(context)
    config = RunConfig.from_dict(context.config)
    choice = config.methods[method_index]
    banks, backbone = live.banks, live.backbone
    outcome = CellOutcome(method_index, n_shots, seed, {}, np.empty(0), 0.0)
    train = banks.id_train
    if n_shots:
        start = time.perf_counter()
        if (n_shots, seed) not in live.draws:
            live.draws = {(n_shots, seed): banks.id_train.draw(n_shots, seed)}  # keep only the current draw
        train, outcome.manifest = live.draws[(n_shots, seed)]
        outcome.draw_seconds = time.perf_counter() - start
        outcome.skipped = dict(banks.id_train.skipped)
    start = time.perf_counter()
    method = choice.build(seed=seed, prompt=config.prompt_config).fit(backbone, train)
    wanted = None if config.scores is None else [s for s in config.scores if s in method.score_names]
    signature = method.score_signature()
    key = None if signature is None else (signature, None if wanted is None else tuple(wanted))
    if key is None or key not in live.memo:
        live.memo.clear()  # prompt methods never share a signature: keep only the last
        scored = (method.score_sets({"id": banks.id_test, **banks.ood}, scores=wanted, seed=seed),
                  method.predict(banks.id_test))
        if key is not None:
            live.memo[key] = scored
    else:
        scored = live.memo[key]
    outcome.scores, outcome.predicted = scored
    if context.save_prompts and n_shots:
        with tempfile.TemporaryDirectory() as tmp:
            method.save(Path(tmp) / "prompts.safetensors")
            outcome.prompts = (Path(tmp) / "prompts.safetensors").read_bytes()
    if context.keep_fitted:
        outcome.fitted = method
    outcome.seconds = time.perf_counter() - start
    return outcome


def _cache_arg(cache):
    return str(cache) if isinstance(cache, (str, os.PathLike)) else cache


def _add_rows(result: BenchmarkResult, spec, name, n_shots, seed, per_set, predicted, banks) -> None:
    id_scores = per_set["id"]
    acc = M.id_accuracy(predicted, banks.id_test.labels.numpy())
    ood_scores = {ood: per_set[ood] for ood in banks.ood}
    result.scores[(name, n_shots, seed)] = {"id": id_scores, **ood_scores}
    for score_name in id_scores:
        # a test-time method scores the ID set once per OOD set (its stream); "id@<ood>" holds that pair's
        per_ood = {ood: M.ood_metrics(per_set.get(f"id@{ood}", id_scores)[score_name], s[score_name],
                                      result.fpr95_rule) for ood, s in ood_scores.items()}
        for row in M.results_table(per_ood):
            for metric in getattr(spec, "metrics", None) or METRICS:
                result.rows.append({"method": name, "score": score_name, "shots": n_shots, "seed": seed,
                                    "ood": row["ood"], "metric": metric, "value": float(row[metric])})
        result.rows.append({"method": name, "score": score_name, "shots": n_shots, "seed": seed,
                            "ood": "ID", "metric": "ACC", "value": float(acc)})


def write_outputs(result: BenchmarkResult, out, spec, backbone) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(result.rows, out / "results.csv")
    write_csv(result.summary, out / "summary.csv")
    write_text(result.summary_markdown(), out / "summary.md")
    metrics_json = {
        "benchmark": getattr(spec, "name", ""), "model": backbone.name, "weights": backbone.weights_id,
        "convention": M.convention(result.fpr95_rule), "positive_class": "ID",
        "fpr95_rule": result.fpr95_rule, "fpr95_rule_description": M.FPR95_RULES[result.fpr95_rule],
        "fpr95_ood_pos_positive_class": "OOD", "timings": result.timings,
        "methods": {m.name: {"kind": kind_of(m.name), "options": m.options} for m in result.config.methods},
        "prompt": result.config.prompt,
        "skipped_images": result.skipped,
        "summary": result.summary,
    }
    write_json(metrics_json, out / "metrics.json")

"""One spec's run as cells: :class:`BenchmarkJob` encodes the banks, splits the run into cells (one fit and
scoring per method x shots x seed, :func:`run_cell`) that an executor runs anywhere (this process, worker
processes or Ray workers, :mod:`.executor`), and assembles their results in cell order into the tables and
files of a run.

A cell running in this process uses the job's backbone and banks; in a worker it loads the backbone again
from the run config and reads the banks from the shared feature cache (the driver encoded them).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import write_manifest
from ..files import atomic_path, slug, write_csv, write_json, write_text
from ..methods import kind_of
from . import metrics as M
from . import tables as T
from .banks import Banks, encode_banks, shard_cells
from .executor import Cell, portable_cache, worker_backbone
from .memory import map_large_blocks
from .record import RunConfig
from .resume import cell_folder, cell_path, forget, load_outcome, readable, save_outcome
from .spread import spread_markdown

METRICS = ("AUROC", "FPR95", "FPR95_OOD_POS", "AUPR_IN", "AUPR_OUT")


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
        spread = spread_markdown(self)
        return text + (f"\n\n{spread}" if spread else "")


class BenchmarkJob:
    """One spec's run split into cells (see :mod:`.executor`): the encoding happens here, the cells (one per
    method x shots x seed) anywhere, and :meth:`finish` assembles their results in cell order."""

    def __init__(self, config: RunConfig, spec, backbone, out, cache, progress, save_prompts, banks, keep_fitted,
                 num_workers, executor=None):
        self.config, self.spec, self.backbone, self.out = config, spec, backbone, out
        self.t0 = time.perf_counter()
        in_process = executor is None or executor.in_process
        if keep_fitted and not in_process:
            raise ValueError("keep_fitted needs the local executor (fitted methods stay in the workers)")
        load_args = config.backbone.get("load_args")
        if banks is None and not in_process and cache is not False and load_args:  # workers encode, side by side
            executor.run(shard_cells(spec, load_args, portable_cache(cache), config.batch_size), progress=progress,
                         desc=f"encode {spec.name}")
        self.banks = banks or encode_banks(spec, backbone, batch_size=config.batch_size, cache=cache,
                                           progress=progress, num_workers=num_workers)
        resumable = cache is not False and not keep_fitted
        self.cell_dir = str(cell_folder(_cache_root(cache), config.to_dict())) if resumable else None
        self.context = CellContext(config.to_dict(), portable_cache(cache), str(backbone.device), num_workers,
                                   save_prompts and out is not None, keep_fitted, self.cell_dir)
        if in_process:  # cells in this process use these objects instead of loading them again
            _LIVE[self.context.key] = _Live(config, backbone, self.banks)

    def cells(self) -> list[Cell]:
        """One cell per zero-shot method, test-time method x seed and few-shot method x shots x seed, in the
        order the tables list them; a cell finished by an earlier, stopped run of this config is loaded."""
        kinds = {m.name: kind_of(m.name) for m in self.config.methods}
        plan = []
        for i, m in enumerate(self.config.methods):
            if kinds[m.name] != "few-shot":
                for seed in [0] if kinds[m.name] == "zero-shot" else self.config.seeds:
                    plan.append((i, 0, int(seed), m.name))
        if any(k == "few-shot" for k in kinds.values()):  # no learner: no shots drawn, no training image encoded
            for n_shots in self.config.shots:
                for seed in self.config.seeds:
                    plan.extend((i, int(n_shots), int(seed), f"{m.name} {n_shots}-shot seed {seed}")
                                for i, m in enumerate(self.config.methods) if kinds[m.name] == "few-shot")
        todo = []
        for i, n_shots, seed, label in plan:
            done = None if self.cell_dir is None else cell_path(Path(self.cell_dir), i, n_shots, seed)
            if done is not None and done.is_file() and readable(done):
                todo.append(Cell(load_outcome, (done, CellOutcome), f"{label} (finished earlier)"))
            else:
                todo.append(Cell(run_cell, (self.context, i, n_shots, seed), label))
        return todo

    def release(self) -> None:
        """Forget this job's in-process backbone and banks (done by :meth:`finish`, or by a failed run)."""
        _LIVE.pop(self.context.key, None)

    def finish(self, outcomes: list["CellOutcome"]) -> BenchmarkResult:
        self.release()
        result = BenchmarkResult([], [], fpr95_rule=self.config.fpr95_rule, config=self.config)
        fit_seconds: dict[str, float] = {}
        for outcome in outcomes:
            name = self.config.methods[outcome.method].name
            add_rows(result, self.spec, name, outcome.shots, outcome.seed, outcome.scores, outcome.predicted,
                      self.banks, outcome.metrics)
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
        if self.cell_dir is not None:
            forget(Path(self.cell_dir))
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
    cell_dir: str | None = None  # where finished cells are kept until the run is written (see .resume)

    @property
    def key(self) -> str:
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
    metrics: dict | None = None      # score name -> OOD set -> metrics, measured where the cell ran (or None)


@dataclass
class _Live:
    config: RunConfig
    backbone: object
    banks: Banks
    draws: dict = field(default_factory=dict)   # (shots, seed) -> (bank, manifest): one draw per shots x seed
    memo: dict = field(default_factory=dict)    # score signature -> scores (zero-shot MCM and GL-MCM share)


_LIVE: dict[str, _Live] = {}  # per process: the running jobs' objects, or what a worker rebuilt
_REBUILT: list[str] = []  # keys of _LIVE a worker rebuilt, oldest first
KEEP_REBUILT = 2


def _live(context: CellContext) -> _Live:
    live = _LIVE.get(context.key)
    if live is None:  # a worker: load the backbone and read the banks from the (shared) feature cache
        config = RunConfig.from_dict(context.config)
        device = "auto" if context.device.startswith("cuda") else context.device
        backbone = config.check_backbone(worker_backbone(config.load_args(), device))
        banks = encode_banks(config.benchmark_spec(), backbone, batch_size=config.batch_size, cache=context.cache,
                             progress=False, num_workers=context.num_workers)
        live = _LIVE[context.key] = _Live(config, backbone, banks)
        _REBUILT.append(context.key)
        while len(_REBUILT) > KEEP_REBUILT:  # a worker of a suite meets every spec in turn: keep the latest few
            _LIVE.pop(_REBUILT.pop(0), None)
    return live


def run_cell(context: CellContext, method_index: int, n_shots: int, seed: int) -> CellOutcome:
    """Fit one method (on its draw, for a few-shot method) and score every set: one cell of a benchmark."""
    map_large_blocks()  # in whichever process runs the cell: see evaluation/memory.py
    live = _live(context)
    config = live.config
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
    # measured here, side by side with the other cells, rather than one after another when the run is written
    outcome.metrics = cell_metrics(outcome.scores, list(banks.ood), config.fpr95_rule)
    if context.save_prompts and n_shots:
        with tempfile.TemporaryDirectory() as tmp:
            method.save(Path(tmp) / "prompts.safetensors")
            outcome.prompts = (Path(tmp) / "prompts.safetensors").read_bytes()
    if context.keep_fitted:
        outcome.fitted = method
    outcome.seconds = time.perf_counter() - start
    if context.cell_dir is not None:
        save_outcome(outcome, cell_path(Path(context.cell_dir), method_index, n_shots, seed))
    return outcome


def _cache_root(cache) -> Path:
    from ..features import default_cache_dir

    return default_cache_dir() if cache is True else Path(cache)


def cell_metrics(per_set: dict, ood_names, fpr95_rule: str) -> dict:
    """Score name -> OOD set -> :func:`~clipos_lab.evaluation.metrics.ood_metrics` of one cell's scores."""
    id_scores = per_set["id"]
    # a test-time method scores the ID set once per OOD set (its stream); "id@<ood>" holds that pair's
    return {score_name: {ood: M.ood_metrics(per_set.get(f"id@{ood}", id_scores)[score_name],
                                            per_set[ood][score_name], fpr95_rule) for ood in ood_names}
            for score_name in id_scores}


def add_rows(result: BenchmarkResult, spec, name, n_shots, seed, per_set, predicted, banks,
             metrics: dict | None = None) -> None:
    """The cell's rows of ``results.csv``; ``metrics`` as the cell measured them (measured here when None: a
    cell loaded from an earlier, stopped run)."""
    id_scores = per_set["id"]
    acc = M.id_accuracy(predicted, banks.id_test.labels.numpy())
    ood_scores = {ood: per_set[ood] for ood in banks.ood}
    result.scores[(name, n_shots, seed)] = {"id": id_scores, **ood_scores}
    if metrics is None:
        metrics = cell_metrics(per_set, list(banks.ood), result.fpr95_rule)
    for score_name in id_scores:
        per_ood = metrics[score_name]
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

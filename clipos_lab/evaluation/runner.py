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
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ..clipos.prompts import PromptConfig
from ..data import BenchmarkSpec
from ..files import check_name
from ..methods import default_methods, kind_of, score_names_of
from ..methods import methods as registered_methods
from ..runfolder import RunFolder
from . import metrics as M
from .banks import Banks, OverlapWarning, TrainPool, check_banks, encode_banks
from .executor import LocalExecutor
from .job import METRICS, BenchmarkJob, BenchmarkResult, write_outputs
from .memory import map_large_blocks
from .record import RunConfig

__all__ = ["BENCHMARK_OUTPUTS", "Banks", "BenchmarkJob", "BenchmarkResult", "DEFAULT_METHODS", "METRICS",
           "OverlapWarning", "TrainPool", "check_banks", "check_run_arguments", "encode_banks", "rerun",
           "run_benchmark", "run_config", "write_outputs"]

DEFAULT_METHODS = tuple(default_methods())
BENCHMARK_OUTPUTS = ["results.csv", "summary.csv", "summary.md", "metrics.json", "manifests", "prompts"]


def run_benchmark(spec: BenchmarkSpec | str | os.PathLike, backbone, methods: Sequence[str] = DEFAULT_METHODS,
                  shots: Sequence[int] = (1, 2), seeds: Sequence[int] = (1, 2, 3), prompt: PromptConfig | None = None,
                  method_options: dict | None = None, out_dir: str | os.PathLike | None = None, cache=True,
                  progress: bool = True, batch_size: int = 64, save_prompts: bool = True,
                  banks: Banks | None = None, keep_fitted: bool = False,
                  fpr95_rule: str = M.DEFAULT_FPR95_RULE, overwrite: bool = False, num_workers: int = 0,
                  scores: Sequence[str] | None = None, executor=None) -> BenchmarkResult:
    """Fit and score every method; write ``results.csv``, ``summary.csv``, ``summary.md``, ``metrics.json``.

    ``out_dir`` is written as a whole (see :class:`~clipos_lab.runfolder.RunFolder`): with ``run.json`` listing every
    file and the run's :class:`RunConfig`, never mixed with an earlier run, and an earlier run there is replaced
    only with ``overwrite=True``. ``scores`` limits the scores computed (e.g. ``["MCM"]`` never reads local
    tokens); a name no selected method gives, or a method that gives none of them, is an error. ``executor``
    (:func:`~clipos_lab.evaluation.executor.make_executor`) runs the cells: in this process by default, in worker
    processes, or on Ray.
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
    map_large_blocks()  # multi-MB tensors returned when freed, not left in fragmented arenas (evaluation/memory.py)
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
    try:
        outcomes = (executor or LocalExecutor()).run(job.cells(), progress=progress, desc="fit + score")
    except BaseException:
        job.release()  # a failed run keeps no backbone or banks alive (its finished cells stay on disk)
        raise
    return job.finish(outcomes)

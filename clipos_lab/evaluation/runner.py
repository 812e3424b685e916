"""The benchmark runner: methods x shots x seeds on one benchmark spec, on cached features, in one tidy table.

Every image (ID test, every OOD set, the ID training pool) is encoded once into a FeatureBank; each seed draws
its own few-shot set from the training pool (a manifest records the files), and every method is fitted and
scored on features only. Zero-shot methods do not depend on shots or seeds and are scored once (``shots = 0``).

The tidy table has one row per (method, score, shots, seed, ood, metric); ``summary`` gives mean and std over
seeds of the OOD-set average, per method, score and shots. Scores are higher = more ID; ID is the positive
class (FPR95 = OOD accepted at 95% ID recall), as in MCM and LoCoOp; ``FPR95_OOD_POS`` is the same with OOD
positive. ``fpr95_rule`` names how the 95% point is read (:data:`clipos_lab.evaluation.metrics.FPR95_RULES`);
every table and ``metrics.json`` says which rule and which positive class.

A *suite* is several specs run the same way (e.g. the random class splits of ``clipos_lab.splits``);
:func:`run_suite` adds a summary over specs: the mean of each spec's seed-averaged metric ± the std across specs,
and per-spec win counts against the baselines.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..clipos.prompts import PromptConfig
from ..data import BenchmarkSpec, DataError, few_shot, write_manifest
from ..features import FeatureBank
from ..files import RunFolder, check_name, write_json
from ..methods import build_method, is_few_shot
from ..methods import methods as registered_methods
from . import metrics as M
from . import tables as T

DEFAULT_METHODS = ("MCM", "GL-MCM", "CoOp", "LoCoOp", "CLIP-OS")
METRICS = ("AUROC", "FPR95", "FPR95_OOD_POS", "AUPR_IN", "AUPR_OUT")


class TrainPool:
    """The few-shot training pool: its file list, encoded only where shots are drawn.

    :meth:`draw` samples the shots from the file list first (seeded, as :func:`~clipos_lab.data.few_shot`
    does) and encodes just those images; every seed and shot count shares the pool's cache rows, so an image
    drawn twice is encoded once. A drawn image that turns out unreadable is recorded as skipped and the draw is
    repeated without it (without only the unreadable images that draw met, so a draw does not depend on what
    other draws found).
    """

    def __init__(self, dataset, backbone, batch_size: int = 64, cache=True, progress: bool = True,
                 num_workers: int = 0):
        self.dataset, self.backbone = dataset, backbone
        self._encode_options = {"batch_size": batch_size, "cache": cache, "progress": progress,
                                "num_workers": num_workers}
        self._row = {s.id: i for i, s in enumerate(dataset.samples)}
        self.skipped: dict[str, str] = {}

    @property
    def classnames(self) -> list[str]:
        return list(self.dataset.classnames)

    def __len__(self) -> int:
        return len(self.dataset)

    def select_ids(self, ids) -> FeatureBank:
        """The bank of these sample ids, in this order, encoding only those not cached yet."""
        unknown = [i for i in ids if i not in self._row]
        if unknown:
            raise KeyError(f"{len(unknown)} ids are not in the pool {self.dataset.name!r}, e.g. {unknown[:3]}")
        bank = FeatureBank.encode(self.dataset, self.backbone, indices=[self._row[i] for i in ids],
                                  **self._encode_options)
        self.skipped.update({s["id"]: s["error"] for s in bank.skipped})
        return bank

    def draw(self, shots: int, seed: int) -> tuple[FeatureBank, list[dict]]:
        """``(bank, manifest)`` of ``shots`` readable images per class drawn with ``seed``."""
        unreadable: set[str] = set()
        while True:
            pool = self.dataset if not unreadable else self.dataset.subset(
                [i for i, s in enumerate(self.dataset.samples) if s.id not in unreadable])
            _, manifest = few_shot(pool, int(shots), int(seed))
            ids = [m["id"] for m in manifest]
            bank = self.select_ids(ids)
            missing = set(ids) - set(bank.ids)
            if not missing:
                return bank, manifest
            unreadable |= missing


@dataclass
class Banks:
    """The encoded features one benchmark needs (the training pool is encoded only where shots are drawn)."""

    id_test: FeatureBank
    id_train: TrainPool
    ood: dict[str, FeatureBank]
    train_dataset: object
    encode_seconds: float = 0.0

    def skipped(self) -> dict[str, list[dict]]:
        """Unreadable images per set (``id_test``, ``id_train``, ``ood/<name>``), for metrics.json."""
        out = {"id_test": self.id_test.skipped, **{f"ood/{k}": b.skipped for k, b in self.ood.items()},
               "id_train": [{"id": i, "error": e} for i, e in self.id_train.skipped.items()]}
        return {k: v for k, v in out.items() if v}


@dataclass
class BenchmarkResult:
    rows: list[dict]
    summary: list[dict]
    timings: dict = field(default_factory=dict)
    fpr95_rule: str = M.DEFAULT_FPR95_RULE
    fitted: dict = field(default_factory=dict)  # (method, shots, seed) -> fitted method, for notebooks
    scores: dict = field(default_factory=dict)  # (method, shots, seed) -> {"id": {...}, ood name: {...}}
    skipped: dict = field(default_factory=dict)  # set -> [{"id", "error"}] of unreadable images

    def summary_markdown(self) -> str:
        return T.summary_markdown(self.summary, fpr95_rule=self.fpr95_rule)


def encode_banks(spec: BenchmarkSpec, backbone, batch_size: int = 64, cache=True, progress: bool = True,
                 num_workers: int = 0) -> Banks:
    """Validate the spec, then encode (or load from cache) the ID test set and every OOD set; the training
    pool is only listed here (its shots are encoded when drawn)."""
    spec.validate()
    start = time.perf_counter()
    id_ds, train_ds, ood_ds = spec.id_dataset(), spec.id_train_dataset(), spec.ood_datasets()
    options = {"batch_size": batch_size, "cache": cache, "progress": progress, "num_workers": num_workers}
    enc = lambda ds: FeatureBank.encode(ds, backbone, **options)  # noqa: E731
    pool = TrainPool(train_ds, backbone, **options)
    banks = Banks(enc(id_ds), pool, {name: enc(ds) for name, ds in ood_ds.items()}, train_ds)
    banks.encode_seconds = time.perf_counter() - start
    check_banks(banks, id_ds)
    return banks


class OverlapWarning(UserWarning):
    """An OOD set shares images with the ID test set, so its AUROC is pulled towards 50."""


def check_banks(banks: Banks, id_dataset=None) -> None:
    """Refuse features that are not finite (naming the cache file); warn when an OOD set or the few-shot pool
    repeats ID test images (the pool, never encoded as a whole, is compared by its files' fingerprints)."""
    named = {"ID test": banks.id_test, **{f"OOD set '{k}'": b for k, b in banks.ood.items()}}
    for what, bank in named.items():
        bad = ~torch.isfinite(bank.global_.float()).all(dim=-1)
        if bool(bad.any()):
            where = bank.meta.get("cache_path") or "not cached"
            raise DataError(f"{what} has {int(bad.sum())} of {len(bank)} feature vectors with NaN or inf (e.g. "
                            f"{bank.ids[int(bad.nonzero()[0])]!r}; cache file: {where}): delete that file to encode "
                            f"again, and check the model weights if it comes back")
    id_rows = {row.numpy().tobytes() for row in banks.id_test.global_}
    for name, bank in banks.ood.items():
        shared = sum(row.numpy().tobytes() in id_rows for row in bank.global_)
        if shared == len(bank) and len(bank) == len(banks.id_test):
            warnings.warn(f"OOD set '{name}' is identical to the ID test set ({shared} images): its AUROC will be "
                          f"about 50; check the spec", OverlapWarning, stacklevel=3)
        elif shared:
            warnings.warn(f"{shared} of {len(bank)} images of OOD set '{name}' are also ID test images: they count "
                          f"as OOD and as ID; check the spec", OverlapWarning, stacklevel=3)
    if id_dataset is None:
        return
    id_prints = set(id_dataset.fingerprint())
    shared = sum(f in id_prints for f in banks.train_dataset.fingerprint())
    if shared:
        warnings.warn(f"{shared} of {len(banks.id_train)} images of the few-shot pool are also ID test images: "
                      f"few-shot methods may train on test images; give `id_train` its own images", OverlapWarning,
                      stacklevel=3)


def run_benchmark(spec: BenchmarkSpec | str | os.PathLike, backbone, methods: Sequence[str] = DEFAULT_METHODS,
                  shots: Sequence[int] = (1, 2), seeds: Sequence[int] = (1, 2, 3), prompt: PromptConfig | None = None,
                  method_options: dict | None = None, out_dir: str | os.PathLike | None = None, cache=True,
                  progress: bool = True, batch_size: int = 64, save_prompts: bool = True,
                  banks: Banks | None = None, keep_fitted: bool = False,
                  fpr95_rule: str = M.DEFAULT_FPR95_RULE, overwrite: bool = False, num_workers: int = 0,
                  scores: Sequence[str] | None = None) -> BenchmarkResult:
    """Fit and score every method; write ``results.csv``, ``summary.csv``, ``summary.md``, ``metrics.json``.

    ``out_dir`` is written as a whole (see :class:`~clipos_lab.files.RunFolder`): with ``run.json`` listing every
    file, never mixed with an earlier run, and an earlier run there is replaced only with ``overwrite=True``.
    ``scores`` limits the scores computed (e.g. ``["MCM"]`` never reads patch tokens); default: all of them.
    """
    M.check_fpr95_rule(fpr95_rule)
    if isinstance(spec, (str, os.PathLike)):
        spec = BenchmarkSpec.from_yaml(spec)
    check_run_arguments(methods, shots, seeds, batch_size)
    check_name(spec.name, "benchmark name")
    if out_dir is None:
        return _run_benchmark(spec, backbone, methods, shots, seeds, prompt, method_options, None, cache, progress,
                              batch_size, save_prompts, banks, keep_fitted, fpr95_rule, num_workers, scores)
    run = RunFolder(out_dir, BENCHMARK_OUTPUTS, overwrite=overwrite)  # refuses before any work
    try:
        result = _run_benchmark(spec, backbone, methods, shots, seeds, prompt, method_options, run.path, cache,
                                progress, batch_size, save_prompts, banks, keep_fitted, fpr95_rule, num_workers,
                                scores)
        run.commit(_run_info(spec, backbone, methods=list(methods), shots=list(shots), seeds=list(seeds)))
    except BaseException:
        run.discard()
        raise
    return result


BENCHMARK_OUTPUTS = ["results.csv", "summary.csv", "summary.md", "metrics.json", "manifests", "prompts"]


def check_run_arguments(methods: Sequence[str], shots: Sequence[int], seeds: Sequence[int],
                        batch_size: int = 64) -> None:
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
    few_shot_methods = [m for m in methods if m in known and is_few_shot(m)]
    if few_shot_methods and (not list(shots) or not list(seeds)):
        problems.append(f"few-shot methods {few_shot_methods} need at least one shots value and one seed "
                        f"(got shots={list(shots)}, seeds={list(seeds)})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        problems.append(f"batch_size={batch_size!r} must be a whole number >= 1")
    if problems:
        raise ValueError("; ".join(problems))


def _run_info(spec, backbone, **extra) -> dict:
    return {"benchmark": spec.name, "spec": str(spec.path) if getattr(spec, "path", None) else None,
            "model": backbone.name, "weights": backbone.weights_id, **extra,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _run_benchmark(spec, backbone, methods, shots, seeds, prompt, method_options, out, cache, progress, batch_size,
                   save_prompts, banks, keep_fitted, fpr95_rule, num_workers, scores) -> BenchmarkResult:
    prompt = prompt or PromptConfig(progress=False)
    method_options = method_options or {}
    t0 = time.perf_counter()
    banks = banks or encode_banks(spec, backbone, batch_size=batch_size, cache=cache, progress=progress,
                                  num_workers=num_workers)
    result = BenchmarkResult([], [], fpr95_rule=fpr95_rule)
    fit_seconds: dict[str, float] = {}
    n_fits = sum(not is_few_shot(m) for m in methods) + len(shots) * len(seeds) * sum(map(is_few_shot, methods))
    bar = tqdm(total=n_fits, disable=not progress, desc="fit + score", leave=False)

    memo: dict[tuple, tuple] = {}  # score signature -> (per-set scores, ID predictions): zero-shot MCM and
    # GL-MCM share their text and scale, so each bank is scored once for both

    def evaluate(name: str, method, n_shots: int, seed: int):
        signature = method.score_signature()
        if signature not in memo:
            per_set = {"id": method.score(banks.id_test, scores=scores),
                       **{ood: method.score(bank, scores=scores) for ood, bank in banks.ood.items()}}
            memo.clear()  # prompt methods never share a signature: keep only the last
            memo[signature] = (per_set, method.predict(banks.id_test))
        per_set, predicted = memo[signature]
        id_scores = per_set["id"]
        acc = M.id_accuracy(predicted, banks.id_test.labels.numpy())
        ood_scores = {ood: per_set[ood] for ood in banks.ood}
        result.scores[(name, n_shots, seed)] = {"id": id_scores, **ood_scores}
        for score_name in id_scores:
            per_ood = {ood: M.ood_metrics(id_scores[score_name], s[score_name], fpr95_rule)
                       for ood, s in ood_scores.items()}
            for row in M.results_table(per_ood):
                for metric in getattr(spec, "metrics", None) or METRICS:
                    result.rows.append({"method": name, "score": score_name, "shots": n_shots, "seed": seed,
                                        "ood": row["ood"], "metric": metric, "value": float(row[metric])})
            result.rows.append({"method": name, "score": score_name, "shots": n_shots, "seed": seed,
                                "ood": "ID", "metric": "ACC", "value": float(acc)})
        if keep_fitted:
            result.fitted[(name, n_shots, seed)] = method
        bar.set_postfix_str(f"{name} {n_shots}-shot seed {seed}" if n_shots else name, refresh=False)
        bar.update(1)

    for name in [m for m in methods if not is_few_shot(m)]:
        start = time.perf_counter()
        method = build_method(name, **method_options.get(name, {})).fit(backbone, banks.id_train)
        evaluate(name, method, 0, 0)
        fit_seconds[name] = time.perf_counter() - start
    for n_shots in shots:
        for seed in seeds:
            start = time.perf_counter()
            train, manifest = banks.id_train.draw(int(n_shots), int(seed))
            banks.encode_seconds += time.perf_counter() - start
            if out is not None:
                write_manifest(manifest, out / "manifests" / f"shots{n_shots}-seed{seed}.json")
            for name in [m for m in methods if is_few_shot(m)]:
                start = time.perf_counter()
                method = build_method(name, seed=int(seed), prompt=prompt, **method_options.get(name, {}))
                method.fit(backbone, train)
                evaluate(name, method, int(n_shots), int(seed))
                fit_seconds[name] = fit_seconds.get(name, 0.0) + time.perf_counter() - start
                if out is not None and save_prompts:
                    method.save(out / "prompts" / f"{_slug(name)}-shots{n_shots}-seed{seed}.safetensors")
    bar.close()
    result.summary = T.summarise(result.rows)
    result.skipped = banks.skipped()
    result.timings = {"encode_s": banks.encode_seconds, "total_s": time.perf_counter() - t0,
                      "fit_and_score_s": fit_seconds}
    if out is not None:
        write_outputs(result, out, spec, backbone)
    return result


@dataclass
class SuiteResult:
    per_spec: dict[str, BenchmarkResult]
    summary: list[dict]  # method, score, shots, metric, mean, std (across specs), n_specs, wins_vs_<rival>
    fpr95_rule: str = M.DEFAULT_FPR95_RULE

    def summary_markdown(self, scores: Sequence[str] = ("MCM", "GL-MCM", "1-p(unknown)", "ATD", "CTW")) -> str:
        return "\n\n".join(suite_markdown(self.summary, score, len(self.per_spec), self.fpr95_rule)
                             for score in scores if any(r["score"] == score for r in self.summary))


SUITE_RIVALS = ("MCM", "CoOp", "LoCoOp")


def run_suite(specs: Sequence[BenchmarkSpec | str | os.PathLike], backbone, out_dir: str | os.PathLike | None = None,
              overwrite: bool = False, **kwargs) -> SuiteResult:
    """:func:`run_benchmark` on every spec (outputs in ``<out_dir>/<spec name>/``), then the across-spec summary
    (``suite_summary.csv`` / ``.md`` in ``out_dir``). ``out_dir`` is one run folder, as in :func:`run_benchmark`."""
    specs = [BenchmarkSpec.from_yaml(s) if isinstance(s, (str, os.PathLike)) else s for s in specs]
    names = [check_name(s.name, "benchmark name") for s in specs]
    if not specs or len(set(names)) != len(names):
        raise ValueError(f"a suite needs at least one spec and distinct spec names, got {names}")
    if len({n.lower() for n in names}) != len(names):
        raise ValueError(f"suite spec names {names} differ only in case; their output folders would collide")
    check_run_arguments(kwargs.get("methods", DEFAULT_METHODS), kwargs.get("shots", (1, 2)),
                        kwargs.get("seeds", (1, 2, 3)), kwargs.get("batch_size", 64))
    run = None if out_dir is None else RunFolder(out_dir, [*names, "suite_summary.csv", "suite_summary.md"],
                                                 overwrite=overwrite)
    out = None if run is None else run.path
    try:
        per_spec = {s.name: run_benchmark(s, backbone, out_dir=None if out is None else out / s.name, **kwargs)
                    for s in specs}
        result = SuiteResult(per_spec, summarise_suite({n: r.summary for n, r in per_spec.items()}),
                             kwargs.get("fpr95_rule", M.DEFAULT_FPR95_RULE))
        if out is not None:
            T.write_csv(result.summary, out / "suite_summary.csv")
            T.write_text(result.summary_markdown(), out / "suite_summary.md")
            run.commit({"suite": names, "model": backbone.name, "weights": backbone.weights_id,
                        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    except BaseException:
        if run is not None:
            run.discard()
        raise
    return result


def summarise_suite(summaries: dict[str, list[dict]]) -> list[dict]:
    """Across specs: see :func:`clipos_lab.evaluation.tables.suite_summary` (rivals: ``SUITE_RIVALS``)."""
    return T.suite_summary(summaries, SUITE_RIVALS)


def suite_markdown(summary: list[dict], score: str, n_specs: int, fpr95_rule: str = M.DEFAULT_FPR95_RULE) -> str:
    """One line per (method, shots) for ``score``: mean ± std across specs and AUROC wins per spec."""
    return T.to_markdown(T.suite_table(summary, score, SUITE_RIVALS),
                         T.suite_caption(score, n_specs, SUITE_RIVALS, fpr95_rule))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_outputs(result: BenchmarkResult, out: Path, spec, backbone) -> None:
    out.mkdir(parents=True, exist_ok=True)
    T.write_csv(result.rows, out / "results.csv")
    T.write_csv(result.summary, out / "summary.csv")
    T.write_text(result.summary_markdown(), out / "summary.md")
    metrics_json = {
        "benchmark": getattr(spec, "name", ""), "model": backbone.name, "weights": backbone.weights_id,
        "convention": M.convention(result.fpr95_rule), "positive_class": "ID",
        "fpr95_rule": result.fpr95_rule, "fpr95_rule_description": M.FPR95_RULES[result.fpr95_rule],
        "fpr95_ood_pos_positive_class": "OOD", "timings": result.timings,
        "skipped_images": result.skipped,
        "summary": result.summary,
    }
    write_json(metrics_json, out / "metrics.json")

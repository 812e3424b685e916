"""The benchmark runner: methods x shots x seeds on one benchmark spec, on cached features, in one tidy table.

Every image (ID test, every OOD set, the ID training pool) is encoded once into a FeatureBank; each seed draws
its own few-shot set from the training pool (a manifest records the files), and every method is fitted and
scored on features only. Zero-shot methods do not depend on shots or seeds and are scored once (``shots = 0``).

The tidy table has one row per (method, score, shots, seed, ood, metric); ``summary`` gives mean and std over
seeds of the OOD-set average, per method, score and shots. Scores are higher = more ID; ID is the positive
class (FPR95 = OOD accepted at 95% ID recall), as in MCM and LoCoOp.

A *suite* is several specs run the same way (e.g. the random class splits of ``clipos_lab.splits``);
:func:`run_suite` adds a summary over specs: the mean of each spec's seed-averaged metric ± the std across specs,
and per-spec win counts against the baselines.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..clipos.prompts import PromptConfig
from ..data import BenchmarkSpec, few_shot, write_manifest
from ..features import FeatureBank
from ..files import write_json
from ..methods import build_method, is_few_shot
from ..methods import methods as registered_methods
from . import metrics as M
from . import tables as T

DEFAULT_METHODS = ("MCM", "GL-MCM", "CoOp", "LoCoOp", "CLIP-OS")
METRICS = ("AUROC", "FPR95", "AUPR_IN", "AUPR_OUT")


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
    fitted: dict = field(default_factory=dict)  # (method, shots, seed) -> fitted method, for notebooks
    scores: dict = field(default_factory=dict)  # (method, shots, seed) -> {"id": {...}, ood name: {...}}
    skipped: dict = field(default_factory=dict)  # set -> [{"id", "error"}] of unreadable images

    def summary_markdown(self) -> str:
        return T.summary_markdown(self.summary)


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
    return banks


def run_benchmark(spec: BenchmarkSpec | str | os.PathLike, backbone, methods: Sequence[str] = DEFAULT_METHODS,
                  shots: Sequence[int] = (1, 2), seeds: Sequence[int] = (1, 2, 3), prompt: PromptConfig | None = None,
                  method_options: dict | None = None, out_dir: str | os.PathLike | None = None, cache=True,
                  progress: bool = True, batch_size: int = 64, save_prompts: bool = True,
                  banks: Banks | None = None, keep_fitted: bool = False, num_workers: int = 0,
                  scores: Sequence[str] | None = None) -> BenchmarkResult:
    """Fit and score every method; write ``results.csv``, ``summary.csv``, ``summary.md``, ``metrics.json``.

    ``scores`` limits the scores computed (e.g. ``["MCM"]`` never reads patch tokens); default: all of them.
    """
    if isinstance(spec, (str, os.PathLike)):
        spec = BenchmarkSpec.from_yaml(spec)
    unknown = [m for m in methods if m not in registered_methods()]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {registered_methods()}")
    if any(int(s) < 1 for s in shots):
        raise ValueError(f"shots={list(shots)}: every entry must be at least 1")
    prompt = prompt or PromptConfig(progress=False)
    method_options = method_options or {}
    t0 = time.perf_counter()
    banks = banks or encode_banks(spec, backbone, batch_size=batch_size, cache=cache, progress=progress,
                                  num_workers=num_workers)
    out = Path(out_dir) if out_dir is not None else None
    result = BenchmarkResult([], [])
    fit_seconds: dict[str, float] = {}

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
            per_ood = {ood: M.ood_metrics(id_scores[score_name], s[score_name]) for ood, s in ood_scores.items()}
            for row in M.results_table(per_ood):
                for metric in getattr(spec, "metrics", None) or METRICS:
                    result.rows.append({"method": name, "score": score_name, "shots": n_shots, "seed": seed,
                                        "ood": row["ood"], "metric": metric, "value": float(row[metric])})
            result.rows.append({"method": name, "score": score_name, "shots": n_shots, "seed": seed,
                                "ood": "ID", "metric": "ACC", "value": float(acc)})
        if keep_fitted:
            result.fitted[(name, n_shots, seed)] = method

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

    def summary_markdown(self, scores: Sequence[str] = ("MCM", "GL-MCM", "1-p(unknown)")) -> str:
        return "\n\n".join(suite_markdown(self.summary, score, len(self.per_spec)) for score in scores
                             if any(r["score"] == score for r in self.summary))


SUITE_RIVALS = ("MCM", "CoOp", "LoCoOp")


def run_suite(specs: Sequence[BenchmarkSpec | str | os.PathLike], backbone, out_dir: str | os.PathLike | None = None,
              **kwargs) -> SuiteResult:
    """:func:`run_benchmark` on every spec (outputs in ``<out_dir>/<spec name>/``), then the across-spec summary
    (``suite_summary.csv`` / ``.md`` in ``out_dir``)."""
    specs = [BenchmarkSpec.from_yaml(s) if isinstance(s, (str, os.PathLike)) else s for s in specs]
    names = [s.name for s in specs]
    if not specs or len(set(names)) != len(names):
        raise ValueError(f"a suite needs at least one spec and distinct spec names, got {names}")
    out = Path(out_dir) if out_dir is not None else None
    per_spec = {s.name: run_benchmark(s, backbone, out_dir=None if out is None else out / s.name, **kwargs)
                for s in specs}
    result = SuiteResult(per_spec, summarise_suite({n: r.summary for n, r in per_spec.items()}))
    if out is not None:
        T.write_csv(result.summary, out / "suite_summary.csv")
        T.write_text(result.summary_markdown(), out / "suite_summary.md")
    return result


def summarise_suite(summaries: dict[str, list[dict]]) -> list[dict]:
    """Across specs: see :func:`clipos_lab.evaluation.tables.suite_summary` (rivals: ``SUITE_RIVALS``)."""
    return T.suite_summary(summaries, SUITE_RIVALS)


def suite_markdown(summary: list[dict], score: str, n_specs: int) -> str:
    """One line per (method, shots) for ``score``: mean ± std across specs and AUROC wins per spec."""
    return T.to_markdown(T.suite_table(summary, score, SUITE_RIVALS), T.suite_caption(score, n_specs, SUITE_RIVALS))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_outputs(result: BenchmarkResult, out: Path, spec, backbone) -> None:
    out.mkdir(parents=True, exist_ok=True)
    T.write_csv(result.rows, out / "results.csv")
    T.write_csv(result.summary, out / "summary.csv")
    T.write_text(result.summary_markdown(), out / "summary.md")
    metrics_json = {
        "benchmark": getattr(spec, "name", ""), "model": backbone.name, "weights": backbone.weights_id,
        "convention": M.CONVENTION, "timings": result.timings,
        "skipped_images": result.skipped,
        "summary": result.summary,
    }
    write_json(metrics_json, out / "metrics.json")

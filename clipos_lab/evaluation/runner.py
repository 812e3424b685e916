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

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..clipos.prompts import PromptConfig
from ..data import BenchmarkSpec, few_shot, write_manifest
from ..features import FeatureBank
from ..files import atomic_path
from ..methods import METHODS, build_method, is_few_shot
from . import metrics as M
from .tables import average_cells, mean_std

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
        return summary_markdown(self.summary)


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
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
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
    result.summary = summarise(result.rows)
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
        _write_csv(result.summary, out / "suite_summary.csv")
        with atomic_path(out / "suite_summary.md") as tmp:
            Path(tmp).write_text(result.summary_markdown() + "\n")
    return result


def summarise_suite(summaries: dict[str, list[dict]]) -> list[dict]:
    """Across specs: per (method, score, shots, metric) the mean and std of each spec's seed-mean of the OOD
    average (ID accuracy for ACC), and for AUROC how many specs it beats each rival in (rivals without the score
    are compared through their MCM; zero-shot rivals through shots 0)."""
    per_spec = {name: {(*key, metric): r["mean"] for key, cell in average_cells(summary).items()
                       for metric, r in cell.items()} for name, summary in summaries.items()}
    keys = [k for k in next(iter(per_spec.values())) if all(k in v for v in per_spec.values())]
    rows = []
    for method, score, shots, metric in keys:
        values_of_key = [values[(method, score, shots, metric)] for values in per_spec.values()]
        mean, std = mean_std(values_of_key)
        row = {"method": method, "score": score, "shots": shots, "metric": metric, "mean": mean, "std": std,
               "n_specs": len(values_of_key)}
        if metric == "AUROC":
            for rival in SUITE_RIVALS:
                candidates = [(rival, sc, sh, "AUROC") for sc in (score, "MCM") for sh in (shots, 0)]
                rival_key = next((k for k in candidates if k in keys), None)
                if rival != method and rival_key is not None:
                    row[f"wins_vs_{rival}"] = int(sum(values[(method, score, shots, metric)] > values[rival_key]
                                                      for values in per_spec.values()))
        rows.append(row)
    return rows


def suite_markdown(summary: list[dict], score: str, n_specs: int) -> str:
    """One line per (method, shots) for ``score``: mean ± std across specs and AUROC wins per spec."""
    index: dict[tuple, dict] = {}
    for r in summary:
        if r["score"] == score:
            index.setdefault((r["method"], r["shots"]), {})[r["metric"]] = r
    rivals = "" if score == "MCM" else f" (their {score} where they have it, else their MCM)"
    lines = [f"Score {score}; higher = more ID; ID positive; FPR95 = OOD accepted at 95% ID recall. Mean over "
             f"{n_specs} benchmarks (each the mean over seeds, averaged over OOD sets) ± std across benchmarks, "
             f"in %. Wins: benchmarks where the method's AUROC beats {' / '.join(SUITE_RIVALS)}{rivals}.", "",
             "| method | shots | AUROC | FPR95 | ACC | " + " | ".join(f"wins vs {r}" for r in SUITE_RIVALS) + " |",
             "|---|---|---|---|---|" + "---|" * len(SUITE_RIVALS)]
    for (method, shots), rows in index.items():
        cells = [M.format_mean_std(rows[m]["mean"], rows[m]["std"]) if m in rows else "" for m in
                 ("AUROC", "FPR95", "ACC")]
        auroc = rows.get("AUROC", {})
        wins = [f"{auroc[f'wins_vs_{r}']}/{n_specs}" if f"wins_vs_{r}" in auroc else "" for r in SUITE_RIVALS]
        lines.append(f"| {method} | {shots} | " + " | ".join(cells + wins) + " |")
    return "\n".join(lines)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds, per method, score, shots, OOD set (incl. Average) and metric."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["score"], r["shots"], r["ood"], r["metric"]), []).append(r["value"])
    summary = []
    for (method, score, shots, ood, metric), values in groups.items():
        mean, std = mean_std(values)
        summary.append({"method": method, "score": score, "shots": shots, "ood": ood, "metric": metric,
                        "mean": mean, "std": std, "n_seeds": len(values)})
    return summary


def summary_markdown(summary: list[dict], metrics: Sequence[str] = ("AUROC", "FPR95"),
                     scores: Sequence[str] | None = None) -> str:
    """One line per (method, score, shots): OOD-average metrics and ID accuracy, mean +- std, in percent."""
    cols = list(metrics) + ["ACC"]
    index = {key: {m: M.format_mean_std(r["mean"], r["std"]) for m, r in cell.items()}
             for key, cell in average_cells(summary, cols).items() if scores is None or key[1] in scores}
    lines = ["Higher score = more ID; ID positive; FPR95 = OOD accepted at 95% ID recall; mean ± std over "
             "seeds, averaged over OOD sets, in %.", "",
             "| method | score | shots | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for (method, score, shots), vals in index.items():
        lines.append(f"| {method} | {score} | {shots} | " + " | ".join(vals.get(c, "") for c in cols) + " |")
    return "\n".join(lines)


def _write_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            fields = list(dict.fromkeys(k for row in rows for k in row)) or ["empty"]  # rows may differ in keys
            writer = csv.DictWriter(fh, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)


def write_outputs(result: BenchmarkResult, out: Path, spec, backbone) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(result.rows, out / "results.csv")
    _write_csv(result.summary, out / "summary.csv")
    with atomic_path(out / "summary.md") as tmp:
        Path(tmp).write_text(result.summary_markdown() + "\n")
    metrics_json = {
        "benchmark": getattr(spec, "name", ""), "model": backbone.name, "weights": backbone.weights_id,
        "convention": M.CONVENTION, "timings": result.timings,
        "skipped_images": result.skipped,
        "summary": result.summary,
    }
    with atomic_path(out / "metrics.json") as tmp:
        Path(tmp).write_text(json.dumps(metrics_json, indent=1))

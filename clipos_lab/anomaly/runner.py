"""Anomaly runs: methods x shots x seeds on every category of an anomaly spec, in one tidy table.

Per category, the normal training pool and the test set are encoded once (:func:`encode_tokens`). Zero-shot
methods (mutual scoring, state prompts) are scored once at ``shots = 0``; few-shot methods (patch memory) once per
shot count and seed, each seed drawing its own normal shots from the pool (a manifest records them). Rows: one
per (method, shots, seed, category, defect, metric); ``defect = "all"`` is the whole test set, a defect type is
its images against the good ones, and ``category = "mean"`` averages the categories. The summary gives mean and
std over seeds; outputs mirror the OOD runner's: ``results.csv``, ``summary.csv``, ``summary.md``,
``metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data import few_shot, write_manifest
from ..data.errors import DataError, ImageLoadError
from ..evaluation import tables as T
from ..evaluation.executor import Cell, LocalExecutor, portable_cache, worker_backbone
from ..files import slug, write_json
from ..runfolder import RunFolder
from . import metrics as AM
from .base import AnomalyScores
from .data import AnomalySpec
from .dataset import AnomalyCategory
from .registry import build_anomaly_method, default_methods
from .registry import methods as registered
from .tokens import encode_tokens
from .windows import WithImages

CONVENTION = "higher score = more anomalous; anomalous images / defect pixels positive; AUPRO up to FPR 0.3"
DEFAULT_METHODS = tuple(default_methods())


@dataclass
class AnomalyResult:
    rows: list[dict]
    summary: list[dict]
    timings: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)  # (method, shots, seed, category) -> AnomalyScores
    categories: dict = field(default_factory=dict)  # name -> AnomalyCategory
    skipped: list = field(default_factory=list)  # unreadable images left out: {category, split, id, error}

    def summary_markdown(self) -> str:
        return summary_markdown(self.summary)


def evaluate_scores(category: AnomalyCategory, scores: AnomalyScores, masks: np.ndarray | None) -> list[dict]:
    """Metric rows of one scored test set: the whole set, then each defect type against the good images."""
    labels = category.test.labels
    rows = []
    groups = [("all", np.ones(len(labels), dtype=bool))]
    groups += [(t, (labels == 0) | (labels == k)) for k, t in enumerate(category.test.classnames) if k > 0]
    for defect, keep in groups:
        if not (labels[keep] > 0).any():
            continue
        values = AM.anomaly_metrics(labels[keep] > 0, scores.image[keep],
                                    None if masks is None else masks[keep], scores.maps[keep])
        rows += [{"category": category.name, "defect": defect, "metric": m, "value": v} for m, v in values.items()]
    return rows


def run_anomaly(spec: AnomalySpec | str | os.PathLike, backbone, methods: Sequence[str] = DEFAULT_METHODS,
                shots: Sequence[int] = (0, 1, 2, 4), seeds: Sequence[int] = (1, 2, 3),
                method_options: dict | None = None, out_dir: str | os.PathLike | None = None, cache=True,
                progress: bool = True, batch_size: int = 32, keep_scores: bool = False,
                overwrite: bool = False, executor=None) -> AnomalyResult:
    """Score every method on every category; write the outputs when ``out_dir`` is given.

    ``out_dir`` is written as a whole (:class:`~clipos_lab.runfolder.RunFolder`: ``run.json`` lists every file, a
    failed run leaves the folder as it was) and an earlier run there is replaced only with ``overwrite=True``.
    ``executor`` runs the cells (category x method x shots x seed) here, or as Ray tasks (docs/cluster.md).
    """
    if isinstance(spec, (str, os.PathLike)):
        spec = AnomalySpec.from_yaml(spec)
    unknown = [m for m in methods if m not in registered()]
    if unknown or not methods:
        raise ValueError(f"unknown anomaly methods {unknown or list(methods)}; choose from {registered()}")
    shots = [int(s) for s in shots]
    if any(s < 0 for s in shots):
        raise ValueError(f"shots={shots}: use 0 (zero-shot methods) or positive counts")
    method_options = method_options or {}
    if not isinstance(method_options, dict) or not all(isinstance(v, dict) for v in method_options.values()):
        raise ValueError(f'method options must map a method to its options, e.g. {{"mutual": {{"fraction": 0.3}}}}; '
                         f"got {method_options!r}")
    stray = [m for m in method_options if m not in methods]
    if stray:
        raise ValueError(f"options given for {stray}, which this run does not include (methods: {list(methods)})")
    built = {m: build_anomaly_method(m, **method_options.get(m, {})) for m in methods}  # options checked early
    zero = [m for m in methods if built[m].kind == "zero-shot"]
    few = [m for m in methods if not built[m].kind == "zero-shot"]
    if not (zero and 0 in shots) and not (few and any(s > 0 for s in shots)):
        raise ValueError(f"nothing to run: zero-shot methods {zero} need shots 0, few-shot methods {few} need "
                         f"shots >= 1 (got shots={shots})")
    layers = sorted({layer for m in built.values() for layer in m.layers if layer != "surgery"}, key=str) or [-1]
    run = None if out_dir is None else RunFolder(out_dir, ANOMALY_OUTPUTS, overwrite=overwrite)  # refuses early
    try:
        result = _run(spec, backbone, methods, shots, seeds, method_options, built, few, zero, layers, cache,
                      progress, batch_size, keep_scores, None if run is None else run.path, executor)
        if run is not None:
            run.commit({"benchmark": spec.name, "model": backbone.name, "weights": backbone.weights_id,
                        "methods": list(methods), "shots": list(shots), "seeds": list(seeds)})
    except BaseException:
        if run is not None:
            run.discard()
        raise
    return result


ANOMALY_OUTPUTS = ["results.csv", "summary.csv", "summary.md", "metrics.json", "manifests"]


def _run(spec, backbone, methods, shots, seeds, method_options, built, few, zero, layers, cache, progress,
         batch_size, keep_scores, out, executor=None) -> AnomalyResult:
    t0 = time.perf_counter()
    categories = spec.categories()
    result = AnomalyResult([], [], categories={c.name: c for c in categories})
    seconds = {"encode_s": 0.0, "score_s": {m: 0.0 for m in methods}, "images_scored": {m: 0 for m in methods}}
    context = AnomalyContext(spec, getattr(backbone, "load_args", None), tuple(layers), portable_cache(cache),
                             batch_size, method_options, keep_scores)
    in_process = executor is None or executor.in_process
    if not in_process and not context.load_args:
        raise ValueError("a remote executor needs a backbone made by Backbone.load (its workers load it again)")
    prepared = _PREPARED.setdefault(context.key, {"backbone": backbone}) if in_process else {}
    cells = []
    for category in list(categories):  # encode here (and fill the cache the workers read), then plan the cells
        start = time.perf_counter()
        ready = prepare_category(category, backbone, context, progress)
        seconds["encode_s"] += time.perf_counter() - start
        if ready.lost:
            result.skipped += ready.lost
            warnings.warn(f"{category.name}: {len(ready.lost)} unreadable images skipped, e.g. "
                          f"{ready.lost[0]['error']}", SkippedImageWarning, stacklevel=2)
            result.categories[category.name] = ready.category
        if in_process:
            prepared[category.name] = ready
        category = ready.category
        cells += [Cell(anomaly_cell, (context, category.name, name, 0, 0), f"{category.name} {name}")
                  for name in (zero if 0 in shots else [])]
        for n_shots in [s for s in shots if s > 0] if few else []:
            if n_shots > len(category.train):
                raise ValueError(f"shots={n_shots} but category {category.name!r} has only "
                                 f"{len(category.train)} normal training images")
            for seed in seeds:
                _, manifest = few_shot(category.train, n_shots, int(seed))
                if out is not None:
                    manifest_name = f"{slug(category.name)}-shots{n_shots}-seed{seed}.json"
                    write_manifest(manifest, out / "manifests" / manifest_name)
                cells += [Cell(anomaly_cell, (context, category.name, name, n_shots, int(seed)),
                               f"{category.name} {name} {n_shots}-shot seed {seed}") for name in few]
    try:
        outcomes = (executor or LocalExecutor()).run(cells, progress=progress, desc="anomaly cells")
    finally:
        _PREPARED.pop(context.key, None)
    for outcome in outcomes:
        result.rows += outcome["rows"]
        seconds["score_s"][outcome["method"]] += outcome["seconds"]
        seconds["images_scored"][outcome["method"]] += outcome["images"]
        if keep_scores:
            result.scores[outcome["key"]] = outcome["scores"]
    if len(categories) > 1:
        result.rows += category_means(result.rows)
    result.summary = summarise(result.rows)
    seconds["total_s"] = time.perf_counter() - t0
    seconds["ms_per_image"] = {m: 1000 * seconds["score_s"][m] / max(1, seconds["images_scored"][m])
                               for m in methods}
    result.timings = seconds
    if out is not None:
        write_outputs(result, out, spec, backbone, method_options, {m: built[m].options() for m in methods})
    return result


@dataclass(frozen=True)
class AnomalyContext:
    """What an anomaly cell needs to find (here) or rebuild (in a Ray worker) its category's tokens."""

    spec: AnomalySpec
    load_args: dict | None
    layers: tuple
    cache: object
    batch_size: int
    method_options: dict
    keep_scores: bool

    @property
    def key(self) -> str:
        return hashlib.sha1(json.dumps([repr(self.spec), self.load_args, list(self.layers), str(self.cache)],
                                       default=str).encode()).hexdigest()


@dataclass
class Prepared:
    """A category with its readable images encoded: tokens of the normal pool and of the test set, masks."""

    category: AnomalyCategory
    train_bank: object
    test_bank: object
    masks: np.ndarray | None
    lost: list


_PREPARED: dict[str, dict] = {}  # per process: the running run's backbone and categories, or a worker's


def prepare_category(category, backbone, context: AnomalyContext, progress: bool = False) -> Prepared:
    enc = lambda ds: encode_tokens(ds, backbone, list(context.layers), batch_size=context.batch_size,  # noqa: E731
                                   cache=context.cache, progress=progress)
    train, train_bank, lost_train = encode_readable(category.train, enc)
    test, test_bank, lost_test = encode_readable(category.test, enc)
    lost = [{"category": category.name, "split": split, **s}
            for split, items in (("train", lost_train), ("test", lost_test)) for s in items]
    if lost:
        category = AnomalyCategory(category.name, train, test)
        check_test_set(category)
    return Prepared(category, train_bank, test_bank, category.test.masks(backbone.image_size), lost)


def anomaly_cell(context: AnomalyContext, category_name: str, name: str, n_shots: int, seed: int) -> dict:
    """Fit one method (on its drawn normal shots, for a few-shot method) and score one category's test set."""
    prepared = _PREPARED.get(context.key)
    if prepared is None:  # a Ray worker: load the backbone, read the category's tokens from the shared cache
        prepared = _PREPARED[context.key] = {"backbone": worker_backbone(context.load_args)}
    backbone = prepared["backbone"]
    if category_name not in prepared:
        category = next(c for c in context.spec.categories() if c.name == category_name)
        prepared[category_name] = prepare_category(category, backbone, context)
    ready: Prepared = prepared[category_name]
    category = ready.category
    method = build_anomaly_method(name, **context.method_options.get(name, {}))
    start = time.perf_counter()
    if n_shots == 0:
        method.fit(None, backbone, category.name)
    else:
        _, manifest = few_shot(category.train, n_shots, int(seed))
        ids = [m["id"] for m in manifest]
        normal = ready.train_bank.select_ids(ids)
        method.fit(WithImages(normal, category.train.select(ids)) if method.needs_images else normal, backbone,
                   category.name)  # fitting counts as the method's cost
    test = WithImages(ready.test_bank, category.test) if method.needs_images else ready.test_bank
    scores = method.score(test)
    elapsed = time.perf_counter() - start
    rows = [{"method": name, "shots": n_shots, "seed": seed, **row}
            for row in evaluate_scores(category, scores, ready.masks)]
    return {"method": name, "rows": rows, "seconds": elapsed, "images": len(ready.test_bank),
            "key": (name, n_shots, seed, category.name), "scores": scores if context.keep_scores else None}


class SkippedImageWarning(UserWarning):
    """Images that could not be read were left out of a category (``AnomalyResult.skipped`` lists them)."""


def encode_readable(dataset, encode) -> tuple:
    """``(dataset, bank, skipped)``: ``dataset`` encoded, leaving out every image that cannot be read.

    An unreadable image stops :func:`encode_tokens` with :class:`ImageLoadError`; it is dropped and the rest
    encoded again, so one corrupt file is a counted skip, not the end of the run. An encoder that skips images by
    itself (fewer ids in the bank) is followed the same way.
    """
    skipped = []
    while True:
        try:
            bank = encode(dataset)
        except ImageLoadError as err:
            bad = [s.id for s in dataset.samples if s.path == err.path]
            if not bad:
                raise
            skipped += [{"id": i, "error": str(err)} for i in bad]
            dataset = dataset.without(bad)
            if not len(dataset):
                raise DataError(f"no image of {dataset.name} can be read ({len(skipped)} skipped, e.g. "
                                f"{skipped[0]['error']})") from err
            continue
        ids = [s.id for s in dataset.samples]
        if list(bank.ids) != ids:
            kept = set(bank.ids)
            gone = [i for i in ids if i not in kept]
            skipped += [{"id": i, "error": "skipped by the encoder (unreadable)"} for i in gone]
            dataset = dataset.without(gone)
            bank = bank.select_ids([s.id for s in dataset.samples])
        return dataset, bank, skipped


def check_test_set(category: AnomalyCategory) -> None:
    """A test set must still hold good and defective images (after unreadable ones were left out)."""
    labels = category.test.labels
    if not (labels == 0).any() or not (labels > 0).any():
        raise DataError(f"category {category.name!r}: after leaving out unreadable images its test set has no "
                        f"{'good' if not (labels == 0).any() else 'defective'} image left; every metric needs both")


def category_means(rows: list[dict]) -> list[dict]:
    """Rows with ``category = "mean"``: per method, shots, seed, defect and metric, the mean over categories."""
    keys = ["method", "shots", "seed", "defect", "metric"]
    means = T.frame(rows).groupby(keys, sort=False)["value"].mean().reset_index()
    means.insert(3, "category", "mean")
    return means[["method", "shots", "seed", "category", "defect", "metric", "value"]].to_dict("records")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per method, shots, category, defect and metric (first-seen order)."""
    grouped = T.frame(rows).groupby(SUMMARY_KEYS, sort=False)["value"]
    return T.records(grouped.agg(mean="mean", std=lambda v: T.mean_std(v)[1], n_seeds="size").reset_index())


SUMMARY_KEYS = ["method", "shots", "category", "defect", "metric"]


def summary_table(summary: list[dict], category: str | None = None) -> pd.DataFrame:
    """One row per (method, shots): ``"mean ± std"`` (in %) of each metric over the whole test set of
    ``category`` (default: the mean over categories, or the only one)."""
    df = T.frame(summary)
    if category is None:
        category = "mean" if (df["category"] == "mean").any() else df["category"].iloc[0]
    cells = df[(df["category"] == category) & (df["defect"] == "all")].copy()
    cells["text"] = [T.mean_std_text(m, s, percent=True) for m, s in zip(cells["mean"], cells["std"])]
    table = cells.pivot_table(index=["method", "shots"], columns="metric", values="text", aggfunc="first",
                              sort=False)
    return table.reindex(columns=[m for m in AM.METRICS if m in table.columns]).reset_index()


def summary_markdown(summary: list[dict], category: str | None = None) -> str:
    df = T.frame(summary)
    shown = category or ("mean" if (df["category"] == "mean").any() else df["category"].iloc[0])
    caption = (f"Anomaly detection, category {shown} ({CONVENTION}); mean ± std over seeds, in %; "
               "shots 0 = zero-shot.")
    return T.to_markdown(summary_table(summary, category), caption)


def defect_table(summary: list[dict], metric: str = "image_AUROC", category: str = "mean") -> pd.DataFrame:
    """Rows (method, shots), columns defect types: the seed-mean of ``metric``."""
    df = T.frame(summary)
    cells = df[(df["category"] == category) & (df["metric"] == metric)]
    return cells.pivot_table(index=["method", "shots"], columns="defect", values="mean", sort=False)


def write_outputs(result: AnomalyResult, out: Path, spec, backbone, method_options: dict, options: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    T.write_csv(result.rows, out / "results.csv")
    T.write_csv(result.summary, out / "summary.csv")
    T.write_text(result.summary_markdown(), out / "summary.md")
    write_json({"benchmark": spec.name, "model": backbone.name, "weights": backbone.weights_id,
                "convention": CONVENTION, "method_options": options, "timings": result.timings,
                "n_skipped": len(result.skipped), "skipped": result.skipped, "summary": result.summary},
               out / "metrics.json")

"""A suite: several benchmark specs run the same way (e.g. the random class splits of the pocket world), then a
summary over specs: the mean of each spec's seed-averaged metric ± the std across specs, and per-spec win counts
against the baselines (:data:`SUITE_RIVALS`), and the ranking with a sign test for every pair (:mod:`.ranking`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Sequence

import pandas as pd

from ..data import BenchmarkSpec
from ..files import check_name, write_csv, write_text
from ..methods import all_score_names
from ..runfolder import RunFolder
from . import metrics as M
from . import tables as T
from .memory import release_freed_memory
from .ranking import benchmark_means, pairwise, ranking, ranking_markdown
from .record import RunConfig
from .runner import (
    BENCHMARK_OUTPUTS,
    DEFAULT_METHODS,
    BenchmarkJob,
    BenchmarkResult,
    check_run_arguments,
    run_benchmark,
    run_info,
)
from .spread import result_rows, spread_markdown

SUITE_RIVALS = ("MCM", "CoOp", "LoCoOp")
SUITE_OUTPUTS = ["suite_summary.csv", "suite_summary.md", "suite_ranking.csv", "suite_pairs.csv"]


@dataclass
class SuiteResult:
    per_spec: dict[str, BenchmarkResult]
    summary: list[dict]  # method, score, shots, metric, mean, std (across specs), n_specs, wins_vs_<rival>
    fpr95_rule: str = M.DEFAULT_FPR95_RULE

    def summary_markdown(self, scores: Sequence[str] | None = None) -> str:
        """One table per score (every score some method gave, in the registry's order, or ``scores``)."""
        present = {r["score"] for r in self.summary}
        order = [s for s in all_score_names() if s in present] + sorted(present - set(all_score_names()))
        tables = [suite_markdown(self.summary, score, len(self.per_spec), self.fpr95_rule)
                  for score in (order if scores is None else scores) if score in present]
        extra = [spread_markdown(self.rows), ranking_markdown(self.rows)]
        return "\n\n".join(tables + [t for t in extra if t])

    @cached_property
    def rows(self) -> pd.DataFrame:
        """Every spec's tidy result rows with a ``spec`` column (built once for the spread and the ranking)."""
        return result_rows(self)

    def ranking_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Every (method, score, shots) entry ranked across specs, and every pair's wins / losses / sign test
        (what ``suite_ranking.csv`` and ``suite_pairs.csv`` hold; :mod:`.ranking`)."""
        wide = benchmark_means(self.rows)
        return ranking(wide), pairwise(wide)


def run_suite(specs: Sequence[BenchmarkSpec | str | os.PathLike], backbone, out_dir: str | os.PathLike | None = None,
              overwrite: bool = False, executor=None, **kwargs) -> SuiteResult:
    """:func:`~clipos_lab.evaluation.runner.run_benchmark` on every spec (outputs and ``run.json`` in
    ``<out_dir>/<spec name>/``), then the across-spec summary (``suite_summary.csv`` / ``.md`` in ``out_dir``).
    ``out_dir`` is one run folder, as in :func:`run_benchmark`. With a ``processes`` or Ray ``executor`` the cells
    of every spec are submitted together, so specs run side by side; the files written are the same."""
    specs = [BenchmarkSpec.from_yaml(s) if isinstance(s, (str, os.PathLike)) else s for s in specs]
    names = [check_name(s.name, "benchmark name") for s in specs]
    if not specs or len(set(names)) != len(names):
        raise ValueError(f"a suite needs at least one spec and distinct spec names, got {names}")
    if len({n.lower() for n in names}) != len(names):
        raise ValueError(f"suite spec names {names} differ only in case; their output folders would collide")
    check_run_arguments(kwargs.get("methods", DEFAULT_METHODS), kwargs.get("shots", (1, 2)),
                        kwargs.get("seeds", (1, 2, 3)), kwargs.get("batch_size", 64), kwargs.get("scores"),
                        kwargs.get("method_options"))
    run = None if out_dir is None else RunFolder(out_dir, [*names, *SUITE_OUTPUTS],
                                                 overwrite=overwrite)
    out = None if run is None else run.path
    try:
        if executor is None or executor.in_process:  # one spec after the other: one spec's banks in memory
            per_spec = {}
            for s in specs:
                per_spec[s.name] = run_benchmark(s, backbone, out_dir=None if out is None else out / s.name,
                                                 executor=executor, **kwargs)
                release_freed_memory()  # freed, yet kept by the allocator: see evaluation/memory.py
        else:
            per_spec = _run_side_by_side(specs, backbone, out, executor, kwargs)
        result = SuiteResult(per_spec, summarise_suite({n: r.summary for n, r in per_spec.items()}),
                             kwargs.get("fpr95_rule", M.DEFAULT_FPR95_RULE))
        if out is not None:
            write_csv(result.summary, out / "suite_summary.csv")
            write_text(result.summary_markdown(), out / "suite_summary.md")
            if len(specs) > 1:
                ranked, pairs = result.ranking_tables()
                write_csv(ranked, out / "suite_ranking.csv")
                write_csv(pairs, out / "suite_pairs.csv")
            run.commit({"suite": names, "runs": [f"{n}/run.json" for n in names], "model": backbone.name,
                        "weights": backbone.weights_id,
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


def _run_side_by_side(specs, backbone, out, executor, kwargs) -> dict[str, BenchmarkResult]:
    """Every spec's cells in one submission (a remote executor runs them side by side), each spec's outputs in
    its own run folder, as :func:`run_benchmark` writes them."""
    options = {"methods": DEFAULT_METHODS, "shots": (1, 2), "seeds": (1, 2, 3), **kwargs}
    job_args = {k: options.pop(k) for k in ("cache", "progress", "save_prompts", "keep_fitted", "num_workers")
                if k in options}
    options.pop("banks", None)
    folders, jobs = [], []
    try:
        for spec in specs:
            config = RunConfig.create(spec, backbone, options["methods"],
                                      options["shots"], options["seeds"], prompt=options.get("prompt"),
                                      method_options=options.get("method_options"), scores=options.get("scores"),
                                      fpr95_rule=options.get("fpr95_rule", M.DEFAULT_FPR95_RULE),
                                      batch_size=options.get("batch_size", 64))
            folder = None if out is None else RunFolder(out / spec.name, BENCHMARK_OUTPUTS)
            folders.append(folder)
            jobs.append(BenchmarkJob(config, spec, backbone, None if folder is None else folder.path,
                                     cache=job_args.get("cache", True), progress=job_args.get("progress", True),
                                     save_prompts=job_args.get("save_prompts", True), banks=None,
                                     keep_fitted=job_args.get("keep_fitted", False),
                                     num_workers=job_args.get("num_workers", 0), executor=executor))
        cells = [job.cells() for job in jobs]
        outcomes = executor.run([c for job_cells in cells for c in job_cells],
                                progress=job_args.get("progress", True), desc="fit + score (suite)")
        per_spec, start = {}, 0
        for spec, job, job_cells, folder in zip(specs, jobs, cells, folders):
            per_spec[spec.name] = job.finish(outcomes[start: start + len(job_cells)])
            start += len(job_cells)
            if folder is not None:
                folder.commit(run_info(spec, backbone, config=job.config.to_dict()))
        return per_spec
    except BaseException:
        for folder in folders:
            if folder is not None:
                folder.discard()
        raise

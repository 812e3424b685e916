"""A suite: several benchmark specs run the same way (e.g. the random class splits of the pocket world), then a
summary over specs: the mean of each spec's seed-averaged metric ± the std across specs, and per-spec win counts
against the baselines (:data:`SUITE_RIVALS`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from ..data import BenchmarkSpec
from ..files import RunFolder, check_name, write_csv, write_text
from ..methods import all_score_names
from . import metrics as M
from . import tables as T
from .memory import release_freed_memory
from .runner import DEFAULT_METHODS, BenchmarkResult, check_run_arguments, run_benchmark

SUITE_RIVALS = ("MCM", "CoOp", "LoCoOp")


@dataclass
class SuiteResult:
    per_spec: dict[str, BenchmarkResult]
    summary: list[dict]  # method, score, shots, metric, mean, std (across specs), n_specs, wins_vs_<rival>
    fpr95_rule: str = M.DEFAULT_FPR95_RULE

    def summary_markdown(self, scores: Sequence[str] | None = None) -> str:
        """One table per score (every score some method gave, in the registry's order, or ``scores``)."""
        present = {r["score"] for r in self.summary}
        order = [s for s in all_score_names() if s in present] + sorted(present - set(all_score_names()))
        return "\n\n".join(suite_markdown(self.summary, score, len(self.per_spec), self.fpr95_rule)
                           for score in (order if scores is None else scores) if score in present)


def run_suite(specs: Sequence[BenchmarkSpec | str | os.PathLike], backbone, out_dir: str | os.PathLike | None = None,
              overwrite: bool = False, **kwargs) -> SuiteResult:
    """:func:`~clipos_lab.evaluation.runner.run_benchmark` on every spec (outputs and ``run.json`` in
    ``<out_dir>/<spec name>/``), then the across-spec summary (``suite_summary.csv`` / ``.md`` in ``out_dir``).
    ``out_dir`` is one run folder, as in :func:`run_benchmark`."""
    specs = [BenchmarkSpec.from_yaml(s) if isinstance(s, (str, os.PathLike)) else s for s in specs]
    names = [check_name(s.name, "benchmark name") for s in specs]
    if not specs or len(set(names)) != len(names):
        raise ValueError(f"a suite needs at least one spec and distinct spec names, got {names}")
    if len({n.lower() for n in names}) != len(names):
        raise ValueError(f"suite spec names {names} differ only in case; their output folders would collide")
    check_run_arguments(kwargs.get("methods", DEFAULT_METHODS), kwargs.get("shots", (1, 2)),
                        kwargs.get("seeds", (1, 2, 3)), kwargs.get("batch_size", 64), kwargs.get("scores"),
                        kwargs.get("method_options"))
    run = None if out_dir is None else RunFolder(out_dir, [*names, "suite_summary.csv", "suite_summary.md"],
                                                 overwrite=overwrite)
    out = None if run is None else run.path
    try:
        per_spec = {}
        for s in specs:
            per_spec[s.name] = run_benchmark(s, backbone, out_dir=None if out is None else out / s.name, **kwargs)
            release_freed_memory()  # freed, yet kept by the allocator: see evaluation/memory.py
        result = SuiteResult(per_spec, summarise_suite({n: r.summary for n, r in per_spec.items()}),
                             kwargs.get("fpr95_rule", M.DEFAULT_FPR95_RULE))
        if out is not None:
            write_csv(result.summary, out / "suite_summary.csv")
            write_text(result.summary_markdown(), out / "suite_summary.md")
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

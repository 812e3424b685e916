"""The spread of a few-shot method over draws: per draw its gain over zero-shot MCM, and how bad the bad draws are.

A user with one or two shots per class gets *one* draw of shots, not the mean over three. A mean hides a draw on
which the method falls far below zero-shot MCM, so benchmark reports also give, per method and score, the share
of draws that beat MCM, the 5th percentile and the worst case of the gain (docs/robustness.md).

Everything here reads the runner's tidy rows (:class:`~clipos_lab.evaluation.runner.BenchmarkResult.rows`, or a
DataFrame of them, optionally with a ``spec`` column when several benchmarks are pooled): the OOD-set
``Average`` of ``metric`` per (method, score, shots, seed) minus the baseline's (zero-shot, ``shots = 0``) on the
same benchmark. Gains are in the metric's units (AUROC as a fraction; tables multiply by 100).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .tables import frame

BASELINE = ("MCM", "MCM")  # (method, score): zero-shot MCM
SPREAD_COLUMNS = ["method", "score", "shots", "n_draws", "mean", "median", "p5", "worst", "beats_baseline"]


def draw_gains(rows: Iterable[dict] | pd.DataFrame, metric: str = "AUROC", baseline: tuple[str, str] = BASELINE,
               scores: dict[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """One row per draw (``spec`` if present, method, score, shots, seed): the OOD-average ``metric``, the
    baseline's on the same benchmark, ``gain`` = value - baseline, and the run's ID accuracy (``acc``) when the
    rows have it.

    ``scores`` maps a method to the scores kept for it (default: every score of every few-shot method, i.e.
    ``shots > 0``). Zero-shot methods other than the baseline (e.g. CLIPN) are kept when ``scores`` names them;
    they appear once per benchmark with ``shots = 0``.
    """
    df = frame(rows)
    if df.empty:
        raise ValueError("draw_gains: no result rows")
    if "spec" not in df.columns:
        df = df.assign(spec="")
    avg = df[(df["ood"] == "Average") & (df["metric"] == metric)]
    if avg.empty:
        raise ValueError(f"draw_gains: no OOD-average {metric} rows (metrics present: {sorted(set(df['metric']))})")
    base_method, base_score = baseline
    base = avg[(avg["method"] == base_method) & (avg["score"] == base_score) & (avg["shots"] == 0)]
    if base.empty:
        raise ValueError(f"draw_gains: the results have no zero-shot {base_method} ({base_score} score) to compare "
                         f"with; run the benchmark with methods including {base_method!r}")
    base = base.groupby("spec")["value"].first().rename("baseline")
    if scores is None:
        keep = avg["shots"] > 0
    else:
        keep = pd.Series(False, index=avg.index)
        for method, names in scores.items():
            keep |= (avg["method"] == method) & avg["score"].isin(list(names))
    out = avg[keep].merge(base.reset_index(), on="spec", how="inner")
    out = out.rename(columns={"value": metric.lower()})
    out["gain"] = out[metric.lower()] - out["baseline"]
    cols = ["spec", "method", "score", "shots", "seed", metric.lower(), "baseline", "gain"]
    acc = df[df["metric"] == "ACC"].groupby(["spec", "method", "score", "shots", "seed"])["value"].first()
    if len(acc):  # ID accuracy of the same run: a draw that loses ID classes shows here
        out = out.merge(acc.rename("acc").reset_index(), on=["spec", "method", "score", "shots", "seed"],
                        how="left")
        cols.append("acc")
    return out[cols].reset_index(drop=True)


def spread_summary(gains: pd.DataFrame, by: Sequence[str] = ("method", "score", "shots"),
                   percentile: float = 5.0) -> pd.DataFrame:
    """Per group: number of draws, mean, median, ``percentile``-th percentile (``p5``) and minimum (``worst``) of
    the gain, and the share of draws whose gain is positive (``beats_baseline``, a fraction)."""
    if gains.empty:
        raise ValueError("spread_summary: no draws")
    by = list(by)
    grouped = gains.groupby(by, sort=False)["gain"]
    out = grouped.agg(n_draws="size", mean="mean", median="median",
                      p5=lambda g: float(np.percentile(g, percentile)), worst="min",
                      beats_baseline=lambda g: float((g > 0).mean()))
    return out.reset_index()


def result_rows(result) -> pd.DataFrame:
    """Tidy rows of a :class:`~clipos_lab.evaluation.runner.BenchmarkResult` (``.rows``), of a suite result
    (``.per_spec``: one benchmark result per spec, tagged with a ``spec`` column), or rows as they are."""
    per_spec = getattr(result, "per_spec", None)
    if per_spec is not None:
        return pd.concat([frame(r.rows).assign(spec=name) for name, r in per_spec.items()], ignore_index=True)
    return frame(getattr(result, "rows", result))


def spread(result, metric: str = "AUROC", baseline: tuple[str, str] = BASELINE,
           scores: dict[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Per (method, score, shots), pooled over benchmarks: :func:`spread_summary` of :func:`draw_gains`.

    ``result``: a benchmark or suite result, or its tidy rows (:func:`result_rows`). What ``make benchmark``
    prints: the share of draws that beat MCM (``beats_baseline``) and the worst-case gain (``worst``)."""
    return spread_summary(draw_gains(result_rows(result), metric, baseline, scores))


def spread_table(summary: pd.DataFrame, percent: bool = True) -> pd.DataFrame:
    """The summary as readable text: gains in AUROC points (``+0.83``), the share of draws as ``17/20``."""
    f = 100.0 if percent else 1.0
    table = summary.copy()
    for col in ("mean", "median", "p5", "worst"):
        table[col] = [f"{f * v:+.2f}" for v in summary[col]]
    table["beats_baseline"] = [f"{round(b * n)}/{n}" for b, n in zip(summary["beats_baseline"], summary["n_draws"])]
    return table.rename(columns={"beats_baseline": "beats MCM", "p5": "5th pct"})


SPREAD_CAPTION = ("Gain of the OOD-average {metric} over zero-shot MCM per few-shot draw, in points (higher = "
                  "better); {n_specs} benchmark(s); 'beats MCM' = draws with a positive gain.")


def has_draws(rows: pd.DataFrame) -> bool:
    """Whether tidy result rows hold few-shot draws and a zero-shot MCM to compare them with."""
    if rows.empty:
        return False
    return bool(((rows["method"] == BASELINE[0]) & (rows["shots"] == 0)).any() and (rows["shots"] > 0).any())


def spread_markdown(result, metric: str = "AUROC") -> str:
    """The spread table as Markdown, or "" when the run has no few-shot draws or no zero-shot MCM to compare with
    (what ``make benchmark`` prints under the summary)."""
    from .tables import to_markdown

    rows = result_rows(result)
    if not has_draws(rows):
        return ""
    n_specs = rows["spec"].nunique() if "spec" in rows.columns else 1
    return to_markdown(spread_table(spread(rows, metric)), SPREAD_CAPTION.format(metric=metric, n_specs=n_specs),
                       numparse=False)


__all__ = ["BASELINE", "SPREAD_CAPTION", "SPREAD_COLUMNS", "draw_gains", "has_draws", "result_rows", "spread",
           "spread_markdown", "spread_summary", "spread_table"]

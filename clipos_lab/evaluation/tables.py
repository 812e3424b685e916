"""Every table of the workbench, built with pandas: CSV files, Markdown summaries and mean ± std regroupings.

The runner produces *tidy rows* (one per method, score, shots, seed, OOD set and metric, with a ``value``).
Everything else is a view of them:

* :func:`summarise`: mean and std over seeds per (method, score, shots, OOD set, metric);
* :func:`averages`: the cells readers want most, the OOD-set ``Average`` of each metric plus ID accuracy
  (which the runner files under ``ood = "ID"``);
* :func:`summary_table` / :func:`suite_table`: those cells as DataFrames of ``"mean ± std"`` text, in %;
* :func:`write_csv` / :func:`to_markdown`: files and text from any of them.

Students and researchers read tables with pandas, so notebooks ``display`` these DataFrames directly.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..files import write_csv, write_text  # noqa: F401 (part of this module's API)

RUN_KEYS = ["method", "score", "shots", "ood", "metric"]
CELL_KEYS = ["method", "score", "shots"]


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of ``values``: seeds are a sample of runs."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("mean_std needs at least one value")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def mean_std_text(mean: float, std: float, percent: bool = True) -> str:
    """``"92.31 ± 1.20"`` (in % by default)."""
    f = 100.0 if percent else 1.0
    return f"{mean * f:.2f} ± {std * f:.2f}"


def frame(rows: Iterable[dict] | pd.DataFrame) -> pd.DataFrame:
    """A DataFrame from rows (dicts) or a DataFrame; rows may differ in keys (missing cells are NaN)."""
    return rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def records(df: pd.DataFrame) -> list[dict]:
    """Plain-Python rows (what metrics.json and the sweep read)."""
    return df.to_dict("records")


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarise(rows: Iterable[dict] | pd.DataFrame) -> list[dict]:
    """Mean and std over seeds, per method, score, shots, OOD set (incl. ``Average``) and metric, in first-seen
    order; ``n_seeds`` counts the values behind each cell."""
    df = frame(rows)
    if df.empty:
        return []
    grouped = df.groupby(RUN_KEYS, sort=False)["value"]
    out = grouped.agg(mean="mean", std=_std, n_seeds="size").reset_index()
    return records(out)


def averages(summary: Iterable[dict] | pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The OOD-average rows of each metric and the ID accuracy rows, in summary order (long form)."""
    df = frame(summary)
    if df.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "metric", "mean", "std"])
    keep = (df["ood"] == "Average") | (df["metric"] == "ACC")
    if metrics is not None:
        keep &= df["metric"].isin(list(metrics))
    return df[keep].reset_index(drop=True)


def average_cells(summary: Iterable[dict], metrics: Sequence[str] | None = None) -> dict[tuple, dict[str, dict]]:
    """``(method, score, shots) -> {metric: summary row}`` for :func:`averages`, in summary order."""
    cells: dict[tuple, dict[str, dict]] = {}
    for r in records(averages(summary, metrics)):
        cells.setdefault((r["method"], r["score"], r["shots"]), {})[r["metric"]] = r
    return cells


def _text_columns(long: pd.DataFrame, index: list[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Long rows (``metric``, ``mean``, ``std``) -> one text column per metric, index columns first."""
    if long.empty:
        return pd.DataFrame(columns=[*index, *metrics])
    long = long.assign(text=[mean_std_text(m, s) for m, s in zip(long["mean"], long["std"])])
    wide = long.pivot_table(index=index, columns="metric", values="text", aggfunc="first", sort=False)
    wide = wide.reindex(columns=[m for m in metrics if m in wide.columns]).fillna("")
    return wide.reset_index().rename_axis(columns=None)


def summary_table(summary: Iterable[dict], metrics: Sequence[str] = ("AUROC", "FPR95"),
                  scores: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (method, score, shots): OOD-average metrics and ID accuracy as ``mean ± std`` in %."""
    cols = [*metrics, "ACC"]
    long = averages(summary, cols)
    if scores is not None:
        long = long[long["score"].isin(list(scores))]
    return _text_columns(long, CELL_KEYS, cols)


SUMMARY_CAPTION = ("Higher score = more ID; ID positive; FPR95 = OOD accepted at 95% ID recall (rule {rule!r}); "
                   "mean ± std over seeds, averaged over OOD sets, in %.")


def summary_markdown(summary: Iterable[dict], metrics: Sequence[str] = ("AUROC", "FPR95"),
                     scores: Sequence[str] | None = None, fpr95_rule: str = "first") -> str:
    """:func:`summary_table` as Markdown under its caption (which names the FPR95 rule,
    :data:`clipos_lab.evaluation.metrics.FPR95_RULES`)."""
    return to_markdown(summary_table(summary, metrics, scores), SUMMARY_CAPTION.format(rule=fpr95_rule))


def suite_summary(summaries: dict[str, list[dict]], rivals: Sequence[str]) -> list[dict]:
    """Across specs: per (method, score, shots, metric) the mean and std of each spec's seed-mean of the OOD
    average (ID accuracy for ACC), the number of specs, and for AUROC how many specs it beats each rival in.

    A rival without the method's score is compared through its MCM; a zero-shot rival through shots 0.
    """
    long = pd.concat([averages(s).assign(spec=name) for name, s in summaries.items()], ignore_index=True)
    keys = [*CELL_KEYS, "metric"]
    per_spec = long.pivot_table(index=keys, columns="spec", values="mean", aggfunc="first", sort=False)
    per_spec = per_spec.dropna()  # keys every spec has
    rows = []
    for key, values in per_spec.iterrows():
        method, score, shots, metric = key
        mean, std = mean_std(values.to_numpy())
        row = {"method": method, "score": score, "shots": shots, "metric": metric, "mean": mean, "std": std,
               "n_specs": len(values)}
        if metric == "AUROC":
            for rival in rivals:
                candidates = [(rival, sc, sh, "AUROC") for sc in (score, "MCM") for sh in (shots, 0)]
                rival_key = next((k for k in candidates if k in per_spec.index), None)
                if rival != method and rival_key is not None:
                    row[f"wins_vs_{rival}"] = int((values > per_spec.loc[rival_key]).sum())
        rows.append(row)
    return rows


def suite_table(summary: Iterable[dict], score: str, rivals: Sequence[str]) -> pd.DataFrame:
    """One row per (method, shots) for ``score``: AUROC, FPR95 and ACC as mean ± std across specs (in %) and the
    AUROC wins per spec against each rival."""
    df = frame(summary)
    df = df[df["score"] == score]
    table = _text_columns(df, ["method", "shots"], ["AUROC", "FPR95", "ACC"])
    auroc = df[df["metric"] == "AUROC"].set_index(["method", "shots"])
    for rival in rivals:
        col = f"wins_vs_{rival}"
        wins = []
        for method, shots in zip(table["method"], table["shots"]):
            value = auroc[col].get((method, shots), np.nan) if col in auroc else np.nan
            n = auroc["n_specs"].get((method, shots), 0)
            wins.append("" if pd.isna(value) else f"{int(value)}/{int(n)}")
        table[f"wins vs {rival}"] = wins
    return table


def suite_caption(score: str, n_specs: int, rivals: Sequence[str], fpr95_rule: str = "first") -> str:
    rival_note = "" if score == "MCM" else f" (their {score} where they have it, else their MCM)"
    return (f"Score {score}; higher = more ID; ID positive; FPR95 = OOD accepted at 95% ID recall "
            f"(rule {fpr95_rule!r}). Mean over "
            f"{n_specs} benchmarks (each the mean over seeds, averaged over OOD sets) ± std across benchmarks, "
            f"in %. Wins: benchmarks where the method's AUROC beats {' / '.join(rivals)}{rival_note}.")


def to_markdown(df: pd.DataFrame, caption: str = "", numparse: bool = True) -> str:
    """A DataFrame as a GitHub Markdown table (no index), with an optional caption line above it;
    ``numparse=False`` keeps text cells as written (e.g. signed gains "+0.10")."""
    table = df.to_markdown(index=False, tablefmt="github", disable_numparse=not numparse) if len(df.columns) else ""
    return f"{caption}\n\n{table}" if caption else table


__all__ = ["CELL_KEYS", "RUN_KEYS", "SUMMARY_CAPTION", "average_cells", "averages", "frame", "mean_std",
           "mean_std_text", "records", "suite_caption", "suite_summary", "suite_table", "summarise",
           "summary_markdown", "summary_table", "to_markdown", "write_csv", "write_text"]

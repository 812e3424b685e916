"""pandas tables for the notebooks: numbers a cell shows with ``display`` (a formatted table in JupyterLab and in
executed notebooks), built here so that cells hold no loops over results.

Metrics are fractions in [0, 1]; higher score = more ID; ID positive; FPR95 = OOD accepted at 95% ID recall.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ..evaluation import metrics as M


def records_frame(records: Mapping, index_name: str, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``{key: {column: value}}`` as a DataFrame indexed by key; ``columns`` (old -> new name) keeps and renames
    a subset of columns, in that order."""
    df = pd.DataFrame.from_dict({k: dict(v) for k, v in records.items()}, orient="index")
    df.index.name = index_name
    if columns:
        df = df[list(columns)].rename(columns=dict(columns))
    return df


def ood_metrics_frame(scores: Mapping[str, Mapping[str, Mapping[str, object]]], id_key: str = "ID",
                      accuracy: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Per method, score and OOD set (plus their ``Average``): AUROC and FPR95 from per-image scores
    ``scores[method][score][set]`` (``set`` = ``id_key`` or an OOD set), and the method's ID accuracy."""
    rows = []
    for method, by_score in scores.items():
        for score, per_set in by_score.items():
            per_ood = {k: M.ood_metrics(per_set[id_key], v) for k, v in per_set.items() if k != id_key}
            for r in M.results_table(per_ood):
                row = {"method": method, "score": score, "ood": r["ood"], "AUROC": float(r["AUROC"]),
                       "FPR95": float(r["FPR95"])}
                if accuracy is not None:
                    row["ID acc"] = float(accuracy[method])
                rows.append(row)
    return pd.DataFrame(rows).set_index(["method", "score", "ood"])


def averages(frame: pd.DataFrame) -> pd.DataFrame:
    """The OOD-average rows of :func:`ood_metrics_frame`, indexed by (method, score)."""
    return frame.xs("Average", level="ood")


def auroc_at_temperatures(methods: Mapping[str, object], id_bank, ood_banks: Mapping[str, object],
                          temperatures: Mapping[str, float]) -> pd.DataFrame:
    """OOD-average MCM AUROC of each fitted method rescored at each softmax temperature (column label ->
    temperature), through :func:`clipos_lab.methods.cosine.at_temperature`; the methods are not changed. Methods
    without an MCM score at a temperature of their own (NegLabel, CSP, AdaNeg) are left out."""
    from ..methods.cosine import CosineMethod, at_temperature

    table = {}
    for name, method in methods.items():
        if "MCM" not in method.score_names or not (isinstance(method, CosineMethod) or hasattr(method, "temperature")):
            continue
        table[name] = {}
        for label, t in temperatures.items():
            twin = at_temperature(method, t)
            id_s = twin.score(id_bank)["MCM"]
            table[name][label] = float(np.mean([M.auroc(id_s, twin.score(b)["MCM"]) for b in ood_banks.values()]))
    return records_frame(table, "method")


def method_averages_frame(per_method: Mapping[str, Mapping]) -> pd.DataFrame:
    """:func:`clipos_lab.notebook.setup.method_averages` as a table: one row per method with its main score."""
    return records_frame(per_method, "method", {"score": "score", "AUROC": "AUROC", "FPR95": "FPR95",
                                                "ACC": "ID acc"})


def nested(frame: pd.DataFrame) -> dict:
    """:func:`ood_metrics_frame` as ``{method: {score: {ood: {metric: value}}}}`` (for ``metrics.json``)."""
    out: dict = {}
    for (method, score, ood), row in frame.iterrows():
        out.setdefault(method, {}).setdefault(score, {})[ood] = {k: float(v) for k, v in row.items()}
    return out


def distance_frame(distances: Mapping[str, Mapping], outliers: Mapping[float, object]) -> pd.DataFrame:
    """One row per alpha: how near its outliers land to real OOD images (``viz.distance_to_ood`` output, keyed by
    ``f"{alpha:g}"``) and how far their mixing weights lie from 0.5 (``outliers`` keyed by alpha)."""
    rows = {}
    for alpha, o in outliers.items():
        d = distances[f"{alpha:g}"]
        rows[f"{alpha:g}"] = {"outliers: nn-cos to OOD": d["nn_cos"]["outliers"],
                              "ID: nn-cos to OOD": d["nn_cos"]["id"],
                              "outliers - ID": d["outliers_minus_id"],
                              "mean |lam - 0.5|": float((o.lam - 0.5).abs().mean())}
    return records_frame(rows, "alpha")


PERCENT = ("AUROC", "FPR95", "ID acc", "ACC", "on object", "object share")


def shown(frame: pd.DataFrame, percent=PERCENT, digits: int = 3):
    """``frame`` as a notebook shows it: metric columns (``percent``) in %, with one decimal, as every summary table
    of the package; other numbers with ``digits`` decimals, not sixteen. The data stay fractions (metrics.json)."""
    columns = [c for c in frame.columns if c in percent]
    styled = frame.style.format({c: "{:.1%}" for c in columns}, precision=digits)
    if columns:
        styled = styled.set_caption(f"{', '.join(columns)} in %")
    return styled


def same_as_zero_shot(summary, reference: str = "MCM", metrics=("AUROC", "FPR95")) -> list[str]:
    """Methods whose every OOD-average ``metrics`` value equals zero-shot ``reference``'s (runner summary rows).

    A prompt method trained for very few steps keeps the order of every image's score (its prompts start from the
    zero-shot template), and AUROC / FPR95 only see that order; the notebook then says so instead of leaving two
    identical rows as a puzzle."""
    cells: dict = {}
    for r in summary:
        if r["ood"] == "Average" and r["metric"] in metrics:
            cells.setdefault((r["method"], r["shots"]), {})[r["metric"]] = r["mean"]
    ref = next((v for (m, k), v in cells.items() if m == reference and k == 0), None)
    if not ref:
        return []
    return sorted({m for (m, k), v in cells.items() if m != reference and k > 0 and set(v) == set(ref)
                   and all(abs(v[x] - ref[x]) < 1e-12 for x in ref)})


__all__ = ["PERCENT", "auroc_at_temperatures", "averages", "distance_frame", "method_averages_frame", "nested",
           "ood_metrics_frame", "records_frame", "same_as_zero_shot", "shown"]

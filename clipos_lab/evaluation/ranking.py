"""Ranking methods over a suite: per-benchmark means, mean ranks, and a sign test for every pair.

A suite's mean ± std says how large the differences are, not whether one method beats another *consistently*.
Here each benchmark of the suite (e.g. one random class split) is one paired trial: a method's value on it is
its seed-mean OOD-average AUROC, and for every pair of entries the benchmarks one wins, loses and ties are
counted. The two-sided sign test (``scipy.stats.binomtest`` on wins out of wins + losses, p = 0.5) asks whether
that split could be a coin's; with ten benchmarks a 9-1 split gives p = 0.021, 8-2 gives p = 0.11.

An *entry* is a (method, score, shots) triple; zero-shot methods have ``shots = 0`` and meet the few-shot entries
of every shot count. The printed ranking lists every score of every method and marks the one each method is
reported with (:func:`~clipos_lab.methods.main_score`); the printed matrices compare the reported scores, and
``suite_pairs.csv`` (:func:`pairwise`) every pair of every score.
"""

from __future__ import annotations

from itertools import combinations
from typing import Mapping

import pandas as pd
from scipy.stats import binomtest

from .tables import frame, to_markdown

ENTRY = ["method", "score", "shots"]


def benchmark_means(rows, metric: str = "AUROC") -> pd.DataFrame:
    """Wide table: one row per benchmark (``spec``), one column per entry, the seed-mean OOD-average ``metric``.
    Entries missing on some benchmark are dropped (a pair must be compared on the same benchmarks)."""
    df = frame(rows)
    if "spec" not in df.columns:
        df = df.assign(spec="")
    avg = df[(df["ood"] == "Average") & (df["metric"] == metric)]
    if avg.empty:
        raise ValueError(f"ranking: no OOD-average {metric} rows to rank")
    means = avg.groupby(["spec", *ENTRY], sort=False)["value"].mean()
    return means.unstack(ENTRY).dropna(axis=1)


def reported_scores(methods) -> dict[str, str]:
    """Each method's reported score (its ``default_score`` as registered), for the methods the registry knows."""
    from ..methods import main_score
    from ..methods.registry import build_method
    from ..methods.registry import methods as registered

    known = set(registered())
    built = {m: build_method(m) for m in methods if m in known}
    return {m: main_score(method, method.score_names) for m, method in built.items()}


def headline(wide: pd.DataFrame, scores: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The columns of ``wide`` that carry each method's reported score (``scores`` overrides the registry's; a
    method neither names keeps "MCM" if it has it, else its first score)."""
    present: dict[str, list[str]] = {}
    for method, score, _ in wide.columns:
        present.setdefault(method, [])
        if score not in present[method]:
            present[method].append(score)
    chosen = {**reported_scores(present), **(scores or {})}
    pick = {m: next(s for s in (chosen.get(m), "MCM", names[0]) if s in names) for m, names in present.items()}
    return wide[[c for c in wide.columns if pick[c[0]] == c[1]]]


def ranking(wide: pd.DataFrame) -> pd.DataFrame:
    """One row per entry, best first: mean and std across benchmarks, mean rank (1 = best on a benchmark; ties
    share the average rank) and how many benchmarks it was best on."""
    ranks = wide.rank(axis=1, ascending=False, method="average")
    out = pd.DataFrame({"mean": wide.mean(), "std": wide.std(ddof=1) if len(wide) > 1 else 0.0,
                        "mean_rank": ranks.mean(), "best_on": (ranks == 1).sum(), "n_specs": len(wide)})
    out = out.sort_values(["mean", "mean_rank"], ascending=[False, True]).reset_index()
    return out.rename(columns={c: n for c, n in zip(out.columns[:3], ENTRY)})


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test p-value of ``wins`` against ``losses`` (ties dropped); 1.0 with no untied trial."""
    n = wins + losses
    return 1.0 if n == 0 else float(binomtest(wins, n, 0.5).pvalue)


def pairwise(wide: pd.DataFrame, same_shots: bool = True) -> pd.DataFrame:
    """Every pair of entries (``a`` ranked above ``b`` by mean): benchmarks ``a`` wins, loses and ties against
    ``b``, the mean difference (a - b) and the sign test's p. With ``same_shots`` a pair is compared only at one
    shot count (zero-shot entries against everything)."""
    order = list(ranking(wide)[ENTRY].itertuples(index=False, name=None))
    rows = []
    for a, b in combinations(order, 2):
        if same_shots and a[2] and b[2] and a[2] != b[2]:
            continue
        diff = wide[a] - wide[b]
        wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
        rows.append({"a_method": a[0], "a_score": a[1], "a_shots": a[2], "b_method": b[0], "b_score": b[1],
                     "b_shots": b[2], "wins": wins, "losses": losses, "ties": int(len(diff) - wins - losses),
                     "mean_diff": float(diff.mean()), "p_sign": sign_test(wins, losses)})
    return pd.DataFrame(rows, columns=["a_method", "a_score", "a_shots", "b_method", "b_score", "b_shots", "wins",
                                       "losses", "ties", "mean_diff", "p_sign"])


def _label(entry) -> str:
    method, score, shots = entry
    return f"{method} ({score}{f', {shots}-shot' if shots else ''})"


def ranking_markdown(rows, metric: str = "AUROC", scores: Mapping[str, str] | None = None) -> str:
    """What a suite prints under its tables: every (method, score, shots) entry ranked (each method's reported
    score marked), then, over the reported scores, one matrix of per-benchmark wins-losses per shot count with
    the sign test's p; "" for a single benchmark."""
    wide = benchmark_means(rows, metric)
    if len(wide) < 2:
        return ""
    reported = set(headline(wide, scores).columns)
    rank = ranking(wide)
    entries = list(rank[ENTRY].itertuples(index=False, name=None))
    table = pd.DataFrame({"rank": range(1, len(rank) + 1),
                          "entry": [_label(e) + (" *" if e in reported else "") for e in entries],
                          metric: [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(rank["mean"], rank["std"])],
                          "mean rank": [f"{r:.2f}" for r in rank["mean_rank"]],
                          "best on": [f"{b}/{n}" for b, n in zip(rank["best_on"], rank["n_specs"])]})
    parts = [to_markdown(table, f"Ranking of every method and score: {metric} mean ± std over {len(wide)} "
                                "benchmarks (each the seed mean, averaged over OOD sets), in %; mean rank over "
                                "benchmarks (1 = best); * = the score the method is reported with "
                                "(its default_score).", numparse=False)]
    wide = wide[[e for e in entries if e in reported]]
    pairs = pairwise(wide)
    order = [e for e in entries if e in reported]
    for shots in sorted({e[2] for e in order if e[2]}) or [0]:
        group = [e for e in order if e[2] in (0, shots)]
        cells = {e: {f: "" for f in group} for e in group}
        for p in pairs.itertuples(index=False):
            a, b = (p.a_method, p.a_score, p.a_shots), (p.b_method, p.b_score, p.b_shots)
            if a in cells and b in cells:
                star = "*" if p.p_sign < 0.05 else ""
                cells[a][b] = f"{p.wins}-{p.losses}{star} (p={p.p_sign:.2g})"
                cells[b][a] = f"{p.losses}-{p.wins}{star}"
        matrix = pd.DataFrame([{"": _label(e), **{_label(f): cells[e][f] or "·" for f in group}} for e in group])
        title = f"{shots}-shot entries and zero-shot methods" if shots else "zero-shot methods"
        parts.append(to_markdown(matrix, f"Pairwise, reported scores, {title}: benchmarks the row wins-loses "
                                         f"against the column ({metric}); * = two-sided sign test p < 0.05 (ties "
                                         "dropped); suite_pairs.csv has every pair of every score.",
                                 numparse=False))
    return "\n\n".join(parts)


__all__ = ["benchmark_means", "headline", "pairwise", "ranking", "ranking_markdown", "reported_scores",
           "sign_test"]

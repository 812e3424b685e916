"""The suite ranking: per-benchmark means, mean ranks, pairwise wins and the sign test."""

import pandas as pd
import pytest
from scipy.stats import binomtest

from clipos_lab.evaluation.ranking import benchmark_means, headline, pairwise, ranking, ranking_markdown, sign_test


def rows_of(values: dict[tuple, list[list[float]]]) -> list[dict]:
    """Tidy OOD-average AUROC rows: ``values[(method, score, shots)][spec][seed]``."""
    rows = []
    for (method, score, shots), per_spec in values.items():
        for k, seeds in enumerate(per_spec):
            for seed, v in enumerate(seeds):
                rows.append({"spec": f"split{k}", "method": method, "score": score, "shots": shots, "seed": seed,
                             "ood": "Average", "metric": "AUROC", "value": v})
                rows.append({"spec": f"split{k}", "method": method, "score": score, "shots": shots, "seed": seed,
                             "ood": "near", "metric": "AUROC", "value": 0.0})  # not an average: never read
    return rows


def test_means_are_seed_means_of_the_ood_average_per_benchmark():
    wide = benchmark_means(rows_of({("MCM", "MCM", 0): [[0.8, 0.8], [0.6, 0.7]],
                                    ("CoOp", "MCM", 1): [[0.9, 0.7], [0.5, 0.6]]}))
    assert wide.loc["split0", ("CoOp", "MCM", 1)] == pytest.approx(0.8)
    assert wide.loc["split1", ("MCM", "MCM", 0)] == pytest.approx(0.65)


def test_pairs_count_wins_losses_ties_and_sign_test():
    a = [[0.9]] * 9 + [[0.5]]  # beats b on 9 benchmarks of 10, loses one
    b = [[0.6]] * 10
    c = [[0.6]] * 10  # ties b everywhere
    wide = benchmark_means(rows_of({("A", "MCM", 1): a, ("B", "MCM", 1): b, ("C", "MCM", 1): c}))
    rank = ranking(wide)
    assert rank["method"].iloc[0] == "A" and rank["best_on"].iloc[0] == 9
    pairs = pairwise(wide).set_index(["a_method", "b_method"])
    ab = pairs.loc[("A", "B")]
    assert (ab["wins"], ab["losses"], ab["ties"]) == (9, 1, 0)
    assert ab["p_sign"] == pytest.approx(binomtest(9, 10, 0.5).pvalue) and ab["p_sign"] < 0.05
    bc = pairs.loc[("B", "C")] if ("B", "C") in pairs.index else pairs.loc[("C", "B")]
    assert (bc["wins"], bc["losses"], bc["ties"], bc["p_sign"]) == (0, 0, 10, 1.0)
    assert sign_test(5, 5) == pytest.approx(1.0) and sign_test(0, 0) == 1.0


def test_entries_at_different_shots_are_not_paired_but_zero_shot_meets_all():
    wide = benchmark_means(rows_of({("MCM", "MCM", 0): [[0.7]] * 3, ("CoOp", "MCM", 1): [[0.8]] * 3,
                                    ("CoOp", "MCM", 2): [[0.9]] * 3}))
    pairs = {(p.a_shots, p.b_shots) for p in pairwise(wide).itertuples()}
    assert pairs == {(2, 0), (1, 0)}


def test_headline_keeps_each_methods_reported_score():
    wide = benchmark_means(rows_of({("GL-MCM", "MCM", 0): [[0.7]] * 2, ("GL-MCM", "GL-MCM", 0): [[0.8]] * 2,
                                    ("CLIPN", "ATD", 0): [[0.9]] * 2, ("CLIPN", "MCM", 0): [[0.7]] * 2,
                                    ("Mine", "X", 0): [[0.5]] * 2, ("Mine", "MCM", 0): [[0.4]] * 2}))
    kept = set(headline(wide).columns)
    assert kept == {("GL-MCM", "GL-MCM", 0), ("CLIPN", "ATD", 0), ("Mine", "MCM", 0)}
    assert ("Mine", "X", 0) in set(headline(wide, {"Mine": "X"}).columns)


def test_markdown_ranks_and_marks_significant_pairs():
    text = ranking_markdown(rows_of({("MCM", "MCM", 0): [[0.6]] * 10,
                                     ("CLIP-OS", "MCM", 1): [[0.7]] * 10}))
    assert text.index("CLIP-OS (MCM, 1-shot) *") < text.index("MCM (MCM) *")
    assert "10-0*" in text and "0-10*" in text
    assert ranking_markdown(rows_of({("MCM", "MCM", 0): [[0.6]]})) == ""  # one benchmark: nothing to test


def test_every_score_is_ranked_but_only_reported_scores_are_paired_in_the_matrix():
    text = ranking_markdown(rows_of({("CLIP-OS", "MCM", 1): [[0.6]] * 4, ("CLIP-OS", "1-p(unknown)", 1): [[0.9]] * 4,
                                     ("MCM", "MCM", 0): [[0.5]] * 4}))
    ranking_part, matrix = text.split("Pairwise", 1)
    assert ranking_part.index("CLIP-OS (1-p(unknown), 1-shot)") < ranking_part.index("CLIP-OS (MCM, 1-shot) *")
    assert "1-p(unknown)" not in matrix and "CLIP-OS (MCM, 1-shot)" in matrix


def test_no_average_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="no OOD-average AUROC"):
        benchmark_means(pd.DataFrame([{"spec": "s", "method": "MCM", "score": "MCM", "shots": 0, "seed": 0,
                                       "ood": "near", "metric": "AUROC", "value": 0.5}]))

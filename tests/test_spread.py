import pandas as pd
import pytest

from clipos_lab.evaluation import spread as SP


def _rows(spec_mcm=0.90, gains=(0.02, -0.05, 0.01, 0.03), spec=None):
    """A benchmark's tidy rows: zero-shot MCM, and CLIP-OS over four seeds with known AUROC gains."""
    rows = [{"method": "MCM", "score": "MCM", "shots": 0, "seed": 0, "ood": "Average", "metric": "AUROC",
             "value": spec_mcm},
            {"method": "MCM", "score": "MCM", "shots": 0, "seed": 0, "ood": "near", "metric": "AUROC", "value": 0.5}]
    for seed, gain in enumerate(gains, 1):
        for score, offset in (("MCM", 0.0), ("1-p(unknown)", 0.01)):
            base = {"method": "CLIP-OS", "score": score, "shots": 1, "seed": seed}
            rows.append({**base, "ood": "Average", "metric": "AUROC", "value": spec_mcm + gain + offset})
            rows.append({**base, "ood": "near", "metric": "AUROC", "value": 0.1})  # not the average: ignored
            rows.append({**base, "ood": "Average", "metric": "FPR95", "value": 0.3})
            rows.append({**base, "ood": "ID", "metric": "ACC", "value": 0.9 - seed / 100})
    return [dict(r, spec=spec) for r in rows] if spec else rows


def test_draw_gains_subtract_the_same_benchmarks_mcm_and_keep_accuracy():
    gains = SP.draw_gains(_rows())
    mcm = gains[gains["score"] == "MCM"].set_index("seed")
    assert list(mcm["gain"]) == pytest.approx([0.02, -0.05, 0.01, 0.03])
    assert list(mcm["acc"]) == pytest.approx([0.89, 0.88, 0.87, 0.86])
    assert set(gains["method"]) == {"CLIP-OS"}  # the baseline itself is not a draw


def test_pooled_benchmarks_are_compared_with_their_own_mcm():
    rows = _rows(0.90, (0.01,) * 4, "a") + _rows(0.70, (0.02,) * 4, "b")
    gains = SP.draw_gains(pd.DataFrame(rows), scores={"CLIP-OS": ["MCM"]})
    assert len(gains) == 8
    assert sorted(set(gains["gain"].round(6))) == [0.01, 0.02]  # a pooled baseline would give other numbers


def test_spread_summary_worst_share_and_percentile():
    summary = SP.spread(_rows()).set_index("score")
    row = summary.loc["MCM"]
    assert row["n_draws"] == 4
    assert row["worst"] == pytest.approx(-0.05)
    assert row["beats_baseline"] == pytest.approx(0.75)
    assert row["mean"] == pytest.approx(0.0025)
    assert row["median"] == pytest.approx(0.015)
    assert row["worst"] <= row["p5"] <= row["median"]
    assert summary.loc["1-p(unknown)", "worst"] == pytest.approx(-0.04)
    table = SP.spread_table(SP.spread(_rows()))
    assert table.loc[0, "beats MCM"] == "3/4" and table.loc[0, "worst"] == "-5.00"


def test_missing_baseline_is_a_clear_error():
    rows = [r for r in _rows() if r["method"] != "MCM"]
    with pytest.raises(ValueError, match="no zero-shot MCM"):
        SP.draw_gains(rows)


def test_spread_reads_benchmark_and_suite_results():
    class Result:  # what run_benchmark returns: tidy rows in .rows
        def __init__(self, rows):
            self.rows = rows

    class Suite:  # what run_suite returns: one result per spec
        per_spec = {"a": Result(_rows(0.90, (0.01,) * 4)), "b": Result(_rows(0.70, (-0.03,) * 4))}

    one = SP.spread(Result(_rows())).set_index("score")
    assert one.loc["MCM", "worst"] == pytest.approx(-0.05)
    pooled = SP.spread(Suite()).set_index("score")
    assert pooled.loc["MCM", "n_draws"] == 8 and pooled.loc["MCM", "beats_baseline"] == pytest.approx(0.5)
    assert pooled.loc["MCM", "worst"] == pytest.approx(-0.03)

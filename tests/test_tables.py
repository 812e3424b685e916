import pandas as pd
import pytest

from clipos_lab.evaluation import tables as T


def _rows():
    rows = []
    for seed, (a, f) in enumerate([(0.90, 0.30), (0.92, 0.36), (0.94, 0.33)], 1):
        for ood, shift in (("near", -0.1), ("far", 0.1)):
            rows.append({"method": "CoOp", "score": "MCM", "shots": 1, "seed": seed, "ood": ood, "metric": "AUROC",
                         "value": a + shift})
        rows.append({"method": "CoOp", "score": "MCM", "shots": 1, "seed": seed, "ood": "Average", "metric": "AUROC",
                     "value": a})
        rows.append({"method": "CoOp", "score": "MCM", "shots": 1, "seed": seed, "ood": "Average", "metric": "FPR95",
                     "value": f})
        rows.append({"method": "CoOp", "score": "MCM", "shots": 1, "seed": seed, "ood": "ID", "metric": "ACC",
                     "value": 0.5})
    rows.append({"method": "MCM", "score": "MCM", "shots": 0, "seed": 0, "ood": "Average", "metric": "AUROC",
                 "value": 0.8})
    return rows


def test_mean_std_is_sample_std_and_zero_for_one_value():
    assert T.mean_std([0.90, 0.92, 0.94]) == pytest.approx((0.92, 0.02))
    assert T.mean_std([0.9]) == (0.9, 0.0)
    assert T.mean_std_text(0.9231, 0.012) == "92.31 ± 1.20"
    assert T.mean_std_text(0.9231, 0.012, percent=False) == "0.92 ± 0.01"
    with pytest.raises(ValueError, match="at least one value"):
        T.mean_std([])


def test_summarise_groups_seeds_in_first_seen_order():
    summary = T.summarise(_rows())
    keys = [(r["method"], r["ood"], r["metric"]) for r in summary]
    assert keys[:4] == [("CoOp", "near", "AUROC"), ("CoOp", "far", "AUROC"), ("CoOp", "Average", "AUROC"),
                        ("CoOp", "Average", "FPR95")]
    avg = next(r for r in summary if r["ood"] == "Average" and r["metric"] == "AUROC" and r["method"] == "CoOp")
    assert avg["mean"] == pytest.approx(0.92) and avg["std"] == pytest.approx(0.02) and avg["n_seeds"] == 3
    single = next(r for r in summary if r["method"] == "MCM")
    assert single["std"] == 0.0 and single["n_seeds"] == 1
    assert isinstance(avg["shots"], int)  # plain Python values, fit for JSON


def test_summary_table_and_markdown_show_average_and_accuracy():
    table = T.summary_table(T.summarise(_rows()))
    assert list(table.columns) == ["method", "score", "shots", "AUROC", "FPR95", "ACC"]
    coop = table[table["method"] == "CoOp"].iloc[0]
    assert coop["AUROC"] == "92.00 ± 2.00" and coop["FPR95"] == "33.00 ± 3.00" and coop["ACC"] == "50.00 ± 0.00"
    assert table[table["method"] == "MCM"].iloc[0]["FPR95"] == ""  # a missing cell stays empty
    text = T.summary_markdown(T.summarise(_rows()))
    assert text.splitlines()[0] == T.SUMMARY_CAPTION.format(rule="first")
    assert "| CoOp     | MCM     |       1 | 92.00 ± 2.00" in text


def test_suite_summary_counts_wins_against_rivals():
    def spec(coop, mcm):
        cell = {"score": "MCM", "ood": "Average", "metric": "AUROC"}
        return T.summarise([{"method": "CoOp", "shots": 1, "seed": 1, "value": coop, **cell},
                            {"method": "MCM", "shots": 0, "seed": 0, "value": mcm, **cell}])
    rows = T.suite_summary({"a": spec(0.9, 0.8), "b": spec(0.7, 0.8), "c": spec(0.95, 0.9)}, ["MCM"])
    coop = next(r for r in rows if r["method"] == "CoOp")
    assert coop["wins_vs_MCM"] == 2 and coop["n_specs"] == 3
    assert coop["mean"] == pytest.approx(0.85)
    table = T.suite_table(rows, "MCM", ["MCM"])
    assert table.set_index("method").loc["CoOp", "wins vs MCM"] == "2/3"
    assert table.set_index("method").loc["MCM", "wins vs MCM"] == ""  # never against itself


def test_write_csv_is_atomic_and_keeps_column_order(tmp_path):
    path = T.write_csv([{"b": 1, "a": 2}, {"a": 3, "c": "x"}], tmp_path / "t.csv")
    assert path.read_text().splitlines() == ["b,a,c", "1.0,2,", ",3,x"]
    T.write_csv([{"a": 1, "b": 2}], path, columns=["b", "a"])
    assert pd.read_csv(path).columns.tolist() == ["b", "a"]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left behind

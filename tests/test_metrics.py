import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from clipos_lab.evaluation import metrics as M

# ---------- brute-force references (independent of sklearn's roc_curve) ----------

def pairwise_auroc(i, o):
    i, o = np.asarray(i, float), np.asarray(o, float)
    gt = (i[:, None] > o[None, :]).sum()
    eq = (i[:, None] == o[None, :]).sum()
    return (gt + 0.5 * eq) / (i.size * o.size)


def brute_fpr(pos, neg, target=0.95):
    """Positives accepted when score >= t; scan thresholds from high to low,
    take the first t keeping >= target of positives, return neg accepted."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    for t in sorted(set(pos) | set(neg), reverse=True):
        if np.mean(pos >= t) >= target:
            return float(np.mean(neg >= t))
    raise AssertionError("unreachable")


def brute_fpr95_id(i, o):
    return brute_fpr(i, o)


def brute_fpr95_ood(i, o):
    return brute_fpr(-np.asarray(o, float), -np.asarray(i, float))


# ---------- edge cases ----------

def test_perfect_separation():
    i, o = [0.9, 0.8, 0.7], [0.3, 0.2, 0.1, 0.0]
    m = M.ood_metrics(i, o)
    assert m == {"AUROC": 1.0, "FPR95": 0.0, "FPR95_OOD_POS": 0.0,
                 "AUPR_IN": 1.0, "AUPR_OUT": 1.0}


def test_reversed():
    i, o = [0.1, 0.2, 0.3], [0.7, 0.8, 0.9]
    assert M.auroc(i, o) == 0.0
    assert M.fpr95(i, o) == 1.0
    assert M.fpr95_ood_positive(i, o) == 1.0


def test_all_tied():
    i, o = [0.5] * 10, [0.5] * 7
    assert M.auroc(i, o) == 0.5
    assert M.fpr95(i, o) == 1.0
    assert M.fpr95_ood_positive(i, o) == 1.0


def test_hand_computed():
    i, o = [0.9, 0.8, 0.7, 0.6], [0.85, 0.5, 0.4, 0.3]
    # pairs (id > ood): 0.9 beats 4, 0.8/0.7/0.6 each beat 3 -> 13 of 16
    assert M.auroc(i, o) == pytest.approx(13 / 16)
    # 95% of 4 ID = 3.8 -> keep all 4 -> threshold 0.6 accepts OOD 0.85 only
    assert M.fpr95(i, o) == pytest.approx(0.25)
    # OOD positive: catch all 4 OOD -> flag score <= 0.85 -> ID 0.8, 0.7, 0.6 flagged
    assert M.fpr95_ood_positive(i, o) == pytest.approx(0.75)


def test_fpr_keeps_collinear_roc_point():
    # ROC points (0, .9), (.1, .95), (.2, 1) are collinear; sklearn's default
    # drop_intermediate=True would drop the 95% point and report 0.2.
    i = [10.0] * 18 + [5.0, 3.0]
    o = [0.0] * 8 + [5.0, 3.0]
    assert M.fpr95(i, o) == pytest.approx(0.1)
    assert brute_fpr95_id(i, o) == pytest.approx(0.1)


def test_fpr_at_tpr_other_levels():
    i, o = [0.9, 0.8, 0.7, 0.6], [0.85, 0.5, 0.4, 0.3]
    assert M.fpr_at_tpr(i, o, tpr=0.5) == 0.25  # threshold 0.8 keeps 2/4 ID, accepts OOD 0.85
    assert M.fpr_at_tpr(i, o, tpr=0.75) == 0.25  # threshold 0.7
    assert M.fpr_at_tpr(i, o, tpr=0.25) == 0.0   # threshold 0.9
    with pytest.raises(ValueError, match="tpr"):
        M.fpr_at_tpr(i, o, tpr=0.0)


# ---------- against references on random data with ties ----------

@pytest.mark.parametrize("seed", range(5))
def test_random_against_bruteforce(seed):
    rng = np.random.default_rng(seed)
    i = rng.integers(0, 8, size=rng.integers(5, 40)).astype(float) + 1.0
    o = rng.integers(0, 8, size=rng.integers(5, 40)).astype(float)
    assert M.auroc(i, o) == pytest.approx(pairwise_auroc(i, o))
    assert M.fpr95(i, o) == pytest.approx(brute_fpr95_id(i, o))
    assert M.fpr95_ood_positive(i, o) == pytest.approx(brute_fpr95_ood(i, o))
    y = np.r_[np.ones(i.size), np.zeros(o.size)]
    s = np.r_[i, o]
    assert M.aupr_in(i, o) == pytest.approx(average_precision_score(y, s))
    assert M.aupr_out(i, o) == pytest.approx(average_precision_score(1 - y, -s))


def test_fpr_conventions_differ_and_aupr_in_out_differ():
    i = [0.9, 0.8, 0.7, 0.6, 0.1]
    o = [0.65, 0.5, 0.4]
    a, b = M.fpr95(i, o), M.fpr95_ood_positive(i, o)
    # ID positive: keep all 5 ID -> threshold 0.1 accepts all 3 OOD
    assert a == pytest.approx(brute_fpr95_id(i, o)) == pytest.approx(1.0)
    # OOD positive: catch all 3 OOD -> flag score <= 0.65 -> ID 0.6, 0.1 flagged
    assert b == pytest.approx(brute_fpr95_ood(i, o)) == pytest.approx(0.4)
    assert M.aupr_in(i, o) != pytest.approx(M.aupr_out(i, o))


def test_accepts_torch_and_lists():
    torch = pytest.importorskip("torch")
    i, o = [0.9, 0.8, 0.7, 0.6], [0.85, 0.5, 0.4, 0.3]
    m_list = M.ood_metrics(i, o)
    m_t = M.ood_metrics(torch.tensor(i, requires_grad=True), torch.tensor(o))
    assert m_t == pytest.approx(m_list)


def test_id_accuracy():
    assert M.id_accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    with pytest.raises(ValueError, match="differ in length"):
        M.id_accuracy([1, 2], [1, 2, 3])


# ---------- validation ----------

@pytest.mark.parametrize("bad, msg", [
    ([], "id_scores is empty"),
    ([0.1, float("nan")], "id_scores contains NaN"),
    ([0.1, float("inf")], "id_scores contains NaN or inf"),
    ([[0.1, 0.2]], "id_scores must be 1-D"),
    (0.3, "id_scores must be 1-D"),
])
def test_validation_id(bad, msg):
    with pytest.raises(ValueError, match=msg):
        M.auroc(bad, [0.1, 0.2])


def test_validation_names_ood_argument():
    with pytest.raises(ValueError, match="ood_scores is empty"):
        M.fpr95([0.1], [])
    with pytest.raises(ValueError, match="ood_scores contains NaN"):
        M.ood_metrics([0.1], [np.nan])


# ---------- tables & seeds ----------

def test_results_table_average():
    per = {"iNaturalist": {"AUROC": 0.9, "FPR95": 0.3},
           "Textures": {"AUROC": 0.8, "FPR95": 0.5},
           "Places": {"AUROC": 0.7, "FPR95": 0.4}}
    rows = M.results_table(per)
    assert [r["ood"] for r in rows] == ["iNaturalist", "Textures", "Places", "Average"]
    assert rows[-1]["AUROC"] == pytest.approx(0.8)
    assert rows[-1]["FPR95"] == pytest.approx(0.4)


def test_results_table_errors():
    with pytest.raises(ValueError, match="per_ood is empty"):
        M.results_table({})
    with pytest.raises(ValueError, match="different metric keys"):
        M.results_table({"a": {"AUROC": 1.0}, "b": {"FPR95": 0.0}})


def test_aupr_never_leaves_the_unit_interval():
    # sklearn's step sum gives 1.0000000000000002 on some perfectly separated inputs; tables must stay in [0, 1]
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        id_s, ood_s = rng.random(n) + 1.0, rng.random(int(rng.integers(1, 40)))
        assert 0.0 <= M.aupr_in(id_s, ood_s) <= 1.0 and 0.0 <= M.aupr_out(id_s, ood_s) <= 1.0


# ---------- FPR95 rules (first / closest (MCM, LoCoOp) / interpolate (CLIPN)) ----------

def brute_closest(pos, neg, target=0.95):
    """MCM / LoCoOp's rule from its definition: thresholds from high to low down to the first with full recall;
    the recall closest to ``target`` wins, among equals the lowest threshold (most false positives)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    best = None
    for t in sorted(set(pos) | set(neg), reverse=True):
        tp, fp = int((pos >= t).sum()), int((neg >= t).sum())
        d = abs(tp / pos.size - target)
        if best is None or d <= best[0]:
            best = (d, fp / neg.size)
        if tp == pos.size:
            return best[1]


def brute_last_at_most(pos, neg, target=0.95):
    """FPR at the lowest threshold whose recall is still <= target."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    out = 0.0
    for t in sorted(set(pos) | set(neg), reverse=True):
        if np.mean(pos >= t) <= target:
            out = float(np.mean(neg >= t))
    return out


def test_fpr95_rules_differ_on_a_hand_built_curve():
    # 10 ID scores 10..1; OOD 1 ties with the lowest ID score, OOD 0.5 below everything.
    # ROC points (recall, FPR): ..., (0.9, 0) at t=2, (1.0, 0.5) at t=1, (1.0, 1.0) at t=0.5.
    i, o = list(range(10, 0, -1)), [1.0, 0.5]
    assert M.fpr95(i, o, rule="first") == 0.5          # first recall >= 0.95 is 1.0 at t=1
    # |0.9 - 0.95| = 0.04999..993 < |1.0 - 0.95| = 0.0500..044 in float: recall 0.9 is closest, FPR 0
    assert M.fpr95(i, o, rule="closest") == 0.0
    # straight line from (0.9, 0) to (1.0, 0.5) read at 0.95
    assert M.fpr95(i, o, rule="interpolate") == pytest.approx(0.25)
    assert M.fpr95(i, o) == 0.5  # ours is the default


def test_fpr95_closest_ties_go_to_the_most_false_positives():
    # 20 ID scores 20..1: recall 19/20 = 0.95 exactly at t=2, 1.5 and 1.4 (0, 1, 2 OOD accepted of 3)
    i, o = list(range(20, 0, -1)), [1.5, 1.4, 0.0]
    assert M.fpr95(i, o, rule="closest") == pytest.approx(2 / 3)
    assert M.fpr95(i, o, rule="first") == 0.0
    # recall exactly 0.95 at three points: linear interpolation over a repeated x reads the last one
    assert M.fpr95(i, o, rule="interpolate") == pytest.approx(2 / 3)


def test_fpr95_closest_never_looks_past_full_recall():
    # full recall at t=1 with FPR 0; lower thresholds only add false positives and must not be candidates
    i, o = [3.0, 2.0, 1.0], [0.5, 0.4]
    assert M.fpr95(i, o, rule="closest") == 0.0


@pytest.mark.parametrize("n", [5, 20, 100])
def test_fpr95_closest_matches_its_definition_on_random_draws(n):
    rng = np.random.default_rng(n)
    for _ in range(50):
        i = np.round(rng.normal(1.0, 1.0, n), 1)  # rounding makes ties
        o = np.round(rng.normal(0.0, 1.0, n), 1)
        assert M.fpr95(i, o, rule="closest") == pytest.approx(brute_closest(i, o))
        assert M.fpr95_ood_positive(i, o, rule="closest") == pytest.approx(brute_closest(-o, -i))
        first = M.fpr95(i, o, rule="first")
        assert first == pytest.approx(brute_fpr95_id(i, o))
        # interpolation never exceeds the FPR of the last point with recall <= 0.95 or of the first with >= 0.95
        assert M.fpr95(i, o, rule="interpolate") <= max(first, brute_last_at_most(i, o)) + 1e-12


def test_fpr95_rule_is_checked_and_named_in_the_convention():
    with pytest.raises(ValueError, match="unknown FPR95 rule 'nearest'"):
        M.fpr95([1.0, 2.0], [0.0], rule="nearest")
    m = M.ood_metrics([0.9, 0.8], [0.1, 0.85], fpr95_rule="closest")
    assert m["FPR95"] == M.fpr95([0.9, 0.8], [0.1, 0.85], rule="closest")
    text = M.convention("closest")
    assert "rule 'closest'" in text and "ID positive" in text and "OOD positive" in text


@pytest.mark.parametrize("seed", range(6))
def test_one_curve_gives_what_sklearn_gives_metric_by_metric(seed):
    """ood_metrics reads one ROC pass (and its flip for OOD positive); each number equals scikit-learn's own
    function on the stacked (or negated) scores, ties included, and the FPR95 rules equal a second roc_curve."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    rng = np.random.default_rng(seed)
    i = np.round(rng.normal(0.5, 1.0, 37 + seed), 1)  # rounded: many ties, within and across the two sets
    o = np.round(rng.normal(0.0, 1.0, 20 + 3 * seed), 1)
    y, s = np.r_[np.ones(i.size), np.zeros(o.size)], np.r_[i, o]
    for rule in M.FPR95_RULES:
        got = M.ood_metrics(i, o, rule)
        assert got["AUROC"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert got["AUPR_IN"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert got["AUPR_OUT"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
        flipped_fpr, flipped_tpr, _ = roc_curve(1 - y, -s, drop_intermediate=False)
        curve = M.Curve.of(i, o).flipped()
        np.testing.assert_array_equal(curve.fp / curve.n_neg, flipped_fpr)
        np.testing.assert_array_equal(curve.tp / curve.n_pos, flipped_tpr)
        assert got["FPR95"] == M.fpr95(i, o, rule) and got["FPR95_OOD_POS"] == M.fpr95_ood_positive(i, o, rule)

"""What a benchmark pays per (ID, OOD) pair for its five OOD metrics: one ROC pass (``metrics.ood_metrics`` now)
against scikit-learn's function per metric (how it was computed before issue 26: ``roc_auc_score``,
``roc_curve`` twice for the two FPR95s and ``average_precision_score`` twice, each checking its input again).

    python benchmarks/metrics_cost.py [--repeats 200]

Prints the mean time per pair of each way and their ratio, measured in one run, alternating the two ways.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from clipos_lab.evaluation import metrics as M


def per_metric(i: np.ndarray, o: np.ndarray) -> list[float]:
    y, s = np.r_[np.ones(i.size), np.zeros(o.size)], np.r_[i, o]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    fpr_o, tpr_o, _ = roc_curve(1 - y, -s, drop_intermediate=False)
    return [roc_auc_score(y, s), fpr[np.argmax(tpr >= 0.95)], fpr_o[np.argmax(tpr_o >= 0.95)],
            average_precision_score(y, s), average_precision_score(1 - y, -s)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"# python benchmarks/metrics_cost.py --repeats {args.repeats}; load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    for n_id, n_ood in [(200, 200), (1000, 3000), (10000, 50000)]:
        i, o = rng.normal(0.5, 1, n_id).astype(np.float32), rng.normal(0, 1, n_ood).astype(np.float32)
        got, ref = M.ood_metrics(i, o), per_metric(i, o)
        assert np.allclose(list(got.values()), ref, atol=1e-9), (got, ref)
        spent = {"one pass": 0.0, "per metric": 0.0}
        for _ in range(args.repeats):  # alternated, so drifting load hits both alike
            for name, fn in (("one pass", M.ood_metrics), ("per metric", per_metric)):
                start = time.perf_counter()
                fn(i, o)
                spent[name] += time.perf_counter() - start
        one, per = (spent[k] / args.repeats * 1e3 for k in ("one pass", "per metric"))
        print(f"ID {n_id:6d} x OOD {n_ood:6d}: one pass {one:7.3f} ms, per metric {per:7.3f} ms, "
              f"per metric / one pass = {per / one:.2f}x")


if __name__ == "__main__":
    main()

"""Reading the runner's summary rows (one per method, score, shots, OOD set, metric, with mean and std).

Tables, plots, sweeps and notebooks all want the same cells: the OOD-set ``Average`` of each metric, plus ID
accuracy (which the runner files under ``ood = "ID"``). Kept free of torch so light readers can import it.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def average_cells(summary: Iterable[dict], metrics: Sequence[str] | None = None) -> dict[tuple, dict[str, dict]]:
    """``(method, score, shots) -> {metric: summary row}`` for the OOD-average rows and ACC, in summary order;
    ``metrics`` keeps only those metrics (default: all)."""
    cells: dict[tuple, dict[str, dict]] = {}
    for r in summary:
        if (metrics is None or r["metric"] in metrics) and (r["ood"] == "Average" or r["metric"] == "ACC"):
            cells.setdefault((r["method"], r["score"], r["shots"]), {})[r["metric"]] = r
    return cells


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of ``values``."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

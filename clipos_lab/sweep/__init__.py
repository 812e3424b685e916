"""Parameter sweeps with papermill: a YAML grid (spec), one executed notebook per cell (execute), one table
over all cells (report), one record per cell (record). See :mod:`clipos_lab.sweep.spec` for the sweep file format."""

from .execute import run_sweep
from .record import RunRecord
from .report import SweepResult, aggregate, metric_rows
from .spec import RESERVED, SWEEP_KEYS, Sweep, cell_slug, cell_slugs, load_sweep

__all__ = ["RESERVED", "SWEEP_KEYS", "RunRecord", "Sweep", "SweepResult", "aggregate", "cell_slug", "cell_slugs",
           "load_sweep", "metric_rows", "run_sweep"]

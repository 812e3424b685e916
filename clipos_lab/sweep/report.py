"""Sweep reports: every ok run's metrics.json as rows, written as CSV, Markdown and an HTML index."""


from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..evaluation import spread as SP
from ..evaluation import tables as T
from ..evaluation.tables import average_cells
from ..files import atomic_path
from .record import RunRecord
from .spec import Sweep


class Renderer:
    """Render executed notebooks to HTML with one nbconvert exporter; never let rendering fail a sweep."""

    def __init__(self, log):
        self.exporter = None
        self.broken = False
        self.log = log

    def __call__(self, record: RunRecord) -> None:
        source, target = record.folder / "notebook.ipynb", record.folder / "notebook.html"
        if not source.exists():
            return
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            record.html = target
            return
        if self.broken:
            return
        try:
            import nbformat
            from nbconvert import HTMLExporter

            if self.exporter is None:
                self.exporter = HTMLExporter()
            body, _ = self.exporter.from_notebook_node(nbformat.read(str(source), as_version=4))
            with atomic_path(target) as tmp:
                tmp.write_text(body, encoding="utf-8")
            record.html = target
        except Exception as err:  # noqa: BLE001
            self.log(f"  (could not render {source} to HTML: {type(err).__name__}: {err})")
            if self.exporter is None:
                self.broken = True  # the exporter itself does not work here: do not retry for every cell


# ---------------------------------------------------------------- aggregation

def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _flatten_numbers(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten_numbers(value, f"{name}/"))
        elif _number(value):
            out[name] = value
    return out


_SUMMARY_KEYS = {"method", "score", "shots", "ood", "metric", "mean"}


def metric_rows(metrics: dict) -> list[dict]:
    """Rows from one metrics.json: its ``table``, the runner's ``summary`` (OOD average + ACC), or its numbers."""
    table = metrics.get("table")
    if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
        return [{k: v for k, v in r.items() if _scalar(v)} for r in table]
    summary = metrics.get("summary")
    if isinstance(summary, list) and summary and all(isinstance(r, dict) and _SUMMARY_KEYS <= set(r)
                                                     for r in summary):
        grouped = []
        for (method, score, shots), cell in average_cells(summary).items():
            row = {"method": method, "score": score, "shots": shots}
            for metric, r in cell.items():
                row[metric] = r["mean"]
                row[f"{metric}_std"] = r.get("std")
            grouped.append(row)
        if grouped:
            return grouped
    return [_flatten_numbers(metrics)]


def _rows_for(record: RunRecord, grid_names: list[str]) -> list[dict]:
    base = {"run": record.slug, **{n: record.cell[n] for n in grid_names}}
    rows = []
    for r in metric_rows(record.metrics or {}):
        row = dict(base)
        for k, v in r.items():
            row[f"metrics/{k}" if k in base else k] = v
        rows.append(row)
    return rows


def _cell_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str)
    return str(v)


def _columns(rows: list[dict], first: list[str]) -> list[str]:
    cols = list(first)
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    return cols


@dataclass
class SweepResult:
    """What a sweep produced; ``str()`` is the Markdown table, as printed by ``python -m clipos_lab sweep``."""

    sweep: Sweep
    runs: list[RunRecord]
    rows: list[dict] = field(default_factory=list)  # one per metrics row of every ok run

    @property
    def output(self) -> Path:
        return self.sweep.output

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if not r.ok]

    @property
    def columns(self) -> list[str]:
        return _columns(self.rows, ["run", *self.sweep.grid_names])

    def table_rows(self) -> list[dict]:
        """Every cell for the Markdown and HTML tables: metrics rows for ok runs, one error row per failure."""
        out = []
        rows_by_run: dict[str, list[dict]] = {}
        for row in self.rows:
            rows_by_run.setdefault(row["run"], []).append(row)
        for rec in self.runs:
            if rec.ok:
                out.extend({**row, "status": "ok"} for row in rows_by_run.get(rec.slug, []))
            else:
                out.append({"run": rec.slug, **rec.cell, "status": rec.status, "error": rec.error or ""})
        return out

    @property
    def markdown(self) -> str:
        cols = self.columns
        cols.insert(1, "status")
        if self.failed:
            cols.append("error")
        text = T.frame(self.table_rows()).reindex(columns=cols).map(_cell_text)
        text = text.map(lambda v: v.replace("|", "\\|").replace("\n", " "))
        n_ok = len(self.runs) - len(self.failed)
        caption = (f"Sweep {self.sweep.path.name} ({self.sweep.notebook.name}): {n_ok} of {len(self.runs)} cells ok"
                   + (f", {len(self.failed)} failed" if self.failed else "") + ".")
        return T.to_markdown(text, caption)

    def __str__(self) -> str:
        return self.markdown


def _write_csv(result: SweepResult, path: Path) -> None:
    cells = T.frame(result.rows).reindex(columns=result.columns)
    cells = cells.map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    T.write_csv(cells, path)


def _write_index(result: SweepResult, path: Path) -> None:
    """A static page: one line per cell (status, time, link to the rendered notebook), then the results."""
    e = lambda v: html.escape(_cell_text(v))  # noqa: E731
    names = result.sweep.grid_names
    out = ["<!doctype html>", '<html><head><meta charset="utf-8">',
           f"<title>Sweep {e(result.sweep.path.name)}</title>",
           "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
           "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}.ok{color:#060}"
           ".failed,.running,.pending{color:#a00}</style></head><body>",
           f"<h1>Sweep {e(result.sweep.path.name)}</h1>",
           f"<p>Notebook {e(result.sweep.notebook)}; fixed parameters {e(result.sweep.parameters)}. "
           '<a href="sweep.csv">sweep.csv</a> · <a href="sweep.md">sweep.md</a></p>',
           "<h2>Cells</h2><table><tr><th>run</th><th>status</th>"
           + "".join(f"<th>{e(n)}</th>" for n in names) + "<th>seconds</th><th>error</th></tr>"]
    for rec in result.runs:
        rel = f"runs/{rec.slug}/"
        target = "notebook.html" if rec.html else "notebook.ipynb"
        link = (f'<a href="{html.escape(rel + target)}">{e(rec.slug)}</a>'
                if (rec.folder / target).exists() else e(rec.slug))
        seconds = f"{rec.seconds:.1f}" if isinstance(rec.seconds, (int, float)) else ""
        state = rec.status + ("" if rec.executed else " (kept)") if rec.ok else rec.status
        out.append(f'<tr><td>{link}</td><td class="{e(rec.status)}">{e(state)}</td>'
                   + "".join(f"<td>{e(rec.cell.get(n))}</td>" for n in names)
                   + f"<td>{seconds}</td><td>{e(rec.error)}</td></tr>")
    out.append("</table>")
    if result.rows:
        cols = result.columns
        out.append("<h2>Results</h2><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
        for row in result.rows:
            out.append("<tr>" + "".join(f"<td>{e(row.get(c))}</td>" for c in cols) + "</tr>")
        out.append("</table>")
    out.append("</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(out) + "\n", encoding="utf-8")


POOLED = ("SPEC", "SEEDS", "SEED")  # grid axes whose cells are pooled in the spread: benchmarks and draws


def draw_spread(result: SweepResult) -> tuple[pd.DataFrame, str]:
    """The spread over few-shot draws of every ok run that wrote a benchmark ``results.csv`` (notebook 05):
    per draw the gain over the same run's zero-shot MCM, summarised per method, score and shots (and per value of
    every grid axis but the benchmark and the seeds, which are pooled). Empty when no run has draws and MCM."""
    frames = []
    for rec in result.runs:
        path = rec.folder / "results.csv"
        if rec.ok and path.is_file():
            frames.append(pd.read_csv(path).assign(spec=rec.slug))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not SP.has_draws(rows):  # no draws, or no zero-shot MCM to compare with
        return pd.DataFrame(), ""
    axes = [n for n in result.sweep.grid_names if n not in POOLED]
    cells = {rec.slug: {n: _cell_text(rec.cell.get(n)) for n in axes} for rec in result.runs}
    gains = SP.draw_gains(rows)
    gains = gains.assign(**{n: [cells[s][n] for s in gains["spec"]] for n in axes})
    summary = SP.spread_summary(gains, by=("method", "score", "shots", *axes))
    caption = SP.SPREAD_CAPTION.format(metric="AUROC", n_specs=gains["spec"].nunique()).replace(
        "benchmark(s)", "run(s) pooled" + (f" per {', '.join(axes)}" if axes else ""))
    return summary, T.to_markdown(SP.spread_table(summary), caption, numparse=False)


def aggregate(sweep: Sweep, runs: list[RunRecord]) -> SweepResult:
    """Gather the ok runs' metrics into rows and write sweep.csv, sweep.md and index.html."""
    result = SweepResult(sweep, runs)
    for rec in runs:
        if rec.ok:
            result.rows.extend(_rows_for(rec, sweep.grid_names))
    sweep.output.mkdir(parents=True, exist_ok=True)
    _write_csv(result, sweep.output / "sweep.csv")
    spread, spread_text = draw_spread(result)
    if not spread.empty:
        T.write_csv(spread, sweep.output / "sweep_spread.csv")
    with atomic_path(sweep.output / "sweep.md") as tmp:
        tmp.write_text(result.markdown + "\n" + (f"\n{spread_text}\n" if spread_text else ""))
    _write_index(result, sweep.output / "index.html")
    return result



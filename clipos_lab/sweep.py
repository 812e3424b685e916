"""Parameter sweeps: run one papermill notebook over a grid of parameters, resume after failures, aggregate.

A sweep is a YAML file::

    notebook: ../05_benchmark.ipynb          # relative to the sweep file's folder, or absolute (required)
    output: outputs/sweeps/shots-seeds       # relative to the current working directory; ``--out`` overrides
                                             # (default: outputs/sweeps/<sweep file name>)
    parameters:                              # fixed for every cell of the grid (optional)
      EPOCHS: 10
    grid:                                    # cartesian product, in the order written (required)
      SHOTS: ["1", "2"]                      # every axis is a non-empty list of values
      SEEDS: ["1", "2", "3"]
      MODEL+PRETRAINED:                      # linked axis: names joined by "+", each value a list that sets
        - [pocket, null]                     # them together (pocket/None, then ViT-B-16/openai), so pairs
        - [ViT-B-16, openai]                 # that make no sense are never crossed
    timeout: 1800                            # seconds any one notebook code cell may run (optional)

``timeout`` is papermill's ``execution_timeout``: it bounds each code cell of the notebook, not the whole notebook.

Every grid cell runs in ``<output>/runs/<slug>``, where the slug is built from the cell's values in grid order
(``SHOTS-1__SEEDS-2``; characters outside ``[A-Za-z0-9._-]`` become ``_``; a short hash is appended when two
cells would otherwise share a folder or the name is very long). The notebook receives the fixed parameters, the
cell's parameters and ``OUTPUT_DIR`` (that folder, absolute; a reserved name), and runs with the notebook's own
folder as working directory, as when it is opened in Jupyter, and with this checkout of ``clipos_lab`` on
``PYTHONPATH``, so it imports the same package as the sweep. A run folder holds:

    notebook.ipynb   the executed notebook (also when it failed: the error is in it)
    notebook.html    the same rendered with nbconvert (skipped if rendering fails)
    metrics.json     written by the notebook into OUTPUT_DIR; a run that does not write it has failed
    status.json      {"status": "ok" | "failed" | "running", "error", "parameters", "cell", "seconds", ...};
                     "ok" is written last, after metrics.json exists

A failed cell never stops the others. Running the same sweep again skips the cells whose status is ok, whose
metrics.json still reads, and whose recorded parameters equal the current ones (so editing a fixed parameter
re-runs everything); failed or interrupted cells run again. Editing the notebook itself is not detected: delete
the output folder (or the run folders concerned) to re-run.

Aggregation reads every ok run's metrics.json into rows, each prefixed with the run's slug and grid values:
a top-level ``"table"`` list of flat dicts gives one row per entry; the benchmark runner's ``"summary"`` (see
``clipos_lab.runner``) gives one row per method, score and shots with the OOD-average metrics and ID accuracy
(``<metric>`` = mean, ``<metric>_std``); anything else gives one row of its numbers, nested keys joined with
``/``. The sweep writes ``<output>/sweep.csv`` (ok runs), ``<output>/sweep.md`` (every cell, failed ones with
the first line of their error) and ``<output>/index.html`` (status per cell, links to the rendered notebooks).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import html
import itertools
import json
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .atomic import atomic_path
from .summary_rows import average_cells

SWEEP_KEYS = ("notebook", "output", "parameters", "grid", "timeout")
RESERVED = "OUTPUT_DIR"
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAX_SLUG = 120


# ---------------------------------------------------------------- the sweep file

@dataclass(frozen=True)
class Sweep:
    """A validated sweep file; ``axes`` pairs each grid axis's parameter names with its value tuples."""

    path: Path
    notebook: Path
    output: Path
    parameters: dict
    axes: tuple[tuple[tuple[str, ...], tuple[tuple, ...]], ...]
    timeout: float | None = None

    @property
    def grid_names(self) -> list[str]:
        return [name for names, _ in self.axes for name in names]

    def cells(self) -> list[dict]:
        """Every grid cell as {name: value}, in a deterministic order (the first axis varies slowest)."""
        out = []
        for combo in itertools.product(*(values for _, values in self.axes)):
            cell = {}
            for (names, _), value in zip(self.axes, combo):
                cell.update(zip(names, value))
            out.append(cell)
        return out


def load_sweep(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Sweep:
    """Read and check a sweep file; every problem is a ValueError naming the file and the key, before any run."""
    path = Path(path).resolve()
    text = path.read_text()  # a missing sweep file is a FileNotFoundError, as for any other input file
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = [k for k in data if k not in SWEEP_KEYS]
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(SWEEP_KEYS)})")

    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"{path}: key {key!r}: {why}")

    nb = data.get("notebook")
    if not isinstance(nb, str) or not nb.strip():
        raise bad("notebook", "a notebook path is required")
    notebook = (path.parent / Path(nb).expanduser()).resolve()
    if not notebook.is_file():
        raise bad("notebook", f"{notebook} does not exist")

    if out_dir is None:
        output = data.get("output")
        if output is None:
            output = Path("outputs") / "sweeps" / path.stem
        elif not isinstance(output, str) or not output.strip():
            raise bad("output", "expected a folder path")
        out_dir = output
    output = Path(out_dir).expanduser().resolve()

    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad("parameters", "expected a mapping of NAME: value")
    for name in parameters:
        _check_name(name, "parameters", bad)

    grid = data.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise bad("grid", "expected a non-empty mapping of NAME: [values, ...]")
    axes, seen = [], set()
    for key, values in grid.items():
        label = f"grid.{key}"
        names = tuple(str(key).split("+"))
        for name in names:
            _check_name(name, label, bad)
            if name in parameters:
                raise bad(label, f"{name} is also a fixed parameter; keep it in one place")
            if name in seen:
                raise bad(label, f"{name} appears in two grid axes")
            seen.add(name)
        if not isinstance(values, list):
            raise bad(label, f"expected a list of values, got {type(values).__name__} {values!r}")
        if not values:
            raise bad(label, "an empty list leaves no cells to run")
        if len(names) > 1:
            for v in values:
                if not isinstance(v, list) or len(v) != len(names):
                    raise bad(label, f"every value must be a list of {len(names)} ({', '.join(names)}), got {v!r}")
            tuples = tuple(tuple(v) for v in values)
        else:
            tuples = tuple((v,) for v in values)
        canon = [_canonical(t) for t in tuples]
        dupes = sorted({c for c in canon if canon.count(c) > 1})
        if dupes:
            raise bad(label, f"duplicate value {dupes[0]}")
        axes.append((names, tuples))

    timeout = data.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise bad("timeout", f"expected a positive number of seconds, got {timeout!r}")
    return Sweep(path, notebook, output, dict(parameters), tuple(axes), timeout)


def _check_name(name: Any, where: str, bad) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise bad(where, f"parameter name {name!r} is not a Python identifier")
    if name == RESERVED:
        raise bad(where, f"{RESERVED} is set by the sweep (the run folder); do not set it yourself")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# ---------------------------------------------------------------- run folders

def _value_text(value: Any) -> str:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _short_hash(cell: dict) -> str:
    return hashlib.sha1(_canonical(cell).encode()).hexdigest()[:8]


def cell_slug(cell: dict) -> str:
    """A readable, filesystem-safe folder name for one cell, stable across runs (grid order, no hashing)."""
    parts = [f"{name}-{_SLUG_UNSAFE.sub('_', _value_text(value))}" for name, value in cell.items()]
    slug = "__".join(parts)
    if len(slug) > _MAX_SLUG:
        slug = f"{slug[:_MAX_SLUG - 10]}__{_short_hash(cell)}"
    return slug


def cell_slugs(cells: list[dict]) -> list[str]:
    """Slugs for all cells; cells whose values differ only in unsafe characters get a hash suffix to stay apart."""
    slugs = [cell_slug(c) for c in cells]
    counts: dict[str, int] = {}
    for s in slugs:
        counts[s] = counts.get(s, 0) + 1
    return [f"{s}__{_short_hash(c)}" if counts[s] > 1 else s for s, c in zip(slugs, cells)]


@dataclass
class RunRecord:
    """One grid cell: where it ran, how it went, and (if ok) its metrics.json."""

    slug: str
    folder: Path
    cell: dict
    status: str = "pending"
    error: str | None = None
    seconds: float | None = None
    executed: bool = False  # run by this call (False: kept from an earlier run)
    metrics: dict | None = None
    html: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _comparable(params: dict) -> str:
    return _canonical({k: v for k, v in params.items() if k != RESERVED})


def _finished(record: RunRecord, params: dict, notebook: Path) -> bool:
    """True when an earlier run of exactly this cell succeeded and its metrics are still readable."""
    status = _read_json(record.folder / "status.json")
    if not isinstance(status, dict) or status.get("status") != "ok":
        return False
    if Path(str(status.get("notebook", ""))).name != notebook.name:
        return False
    if _comparable(status.get("parameters") or {}) != _comparable(json.loads(_canonical(params))):
        return False
    metrics = _read_json(record.folder / "metrics.json")
    if not isinstance(metrics, dict):
        return False
    record.status, record.metrics, record.seconds = "ok", metrics, status.get("seconds")
    return True


class _NothingWritten(Exception):
    """Papermill failed before writing any notebook; keep no empty notebook.ipynb."""


def _describe(err: BaseException) -> tuple[str, str]:
    """A one-line error for tables and the full text (ANSI colours removed) for status.json."""
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:  # PapermillExecutionError: the notebook's own exception
        where = f" (notebook cell In [{err.exec_count}])" if getattr(err, "exec_count", None) else ""
        first = f"{ename}: {evalue}{where}"
    else:
        first = f"{type(err).__name__}: {err}"
    first = _ANSI.sub("", first).strip().splitlines()[0] if first.strip() else type(err).__name__
    return first, _ANSI.sub("", str(err)).strip()


def _execute(sweep: Sweep, record: RunRecord, params: dict, kernel: str | None) -> None:
    """Run the notebook for one cell and record the outcome in status.json (ok only once metrics.json exists)."""
    import papermill as pm

    folder = record.folder
    folder.mkdir(parents=True, exist_ok=True)
    metrics_path = folder / "metrics.json"
    metrics_path.unlink(missing_ok=True)  # a stale file must not pass for this run's result
    base = {"parameters": params, "cell": record.cell, "notebook": str(sweep.notebook), "kernel": kernel,
            "sweep": str(sweep.path)}
    _write_json(folder / "status.json", {"status": "running", **base, "started": _now()})
    start = time.perf_counter()
    error: BaseException | None = None
    final = folder / "notebook.ipynb"
    try:
        with atomic_path(final) as tmp:
            try:
                with warnings.catch_warnings(), _package_on_kernel_path():
                    warnings.filterwarnings("ignore", message=r".*does not end in one of")  # the temporary name
                    pm.execute_notebook(str(sweep.notebook), str(tmp), parameters=params, kernel_name=kernel,
                                        progress_bar=False, cwd=str(sweep.notebook.parent),
                                        execution_timeout=sweep.timeout)
            except Exception as err:  # noqa: BLE001 - any failure of one cell is recorded, the sweep goes on
                error = err
                if tmp.stat().st_size == 0:
                    raise _NothingWritten from err
            _fix_output_path(tmp, final)
    except _NothingWritten:
        pass
    record.seconds = round(time.perf_counter() - start, 3)
    record.executed = True
    if error is None:
        metrics = _read_json(metrics_path)
        if not metrics_path.exists():
            error = RuntimeError(f"the notebook finished but wrote no metrics.json into OUTPUT_DIR ({folder})")
        elif not isinstance(metrics, dict):
            error = RuntimeError("metrics.json is not a JSON object")
        else:
            record.metrics = metrics
    status = {**base, "seconds": record.seconds, "finished": _now()}
    if error is None:
        record.status, record.error = "ok", None
        _write_json(folder / "status.json", {"status": "ok", **status})
    else:
        record.status, (record.error, detail) = "failed", _describe(error)
        _write_json(folder / "status.json", {"status": "failed", "error": record.error, "detail": detail, **status})


@contextlib.contextmanager
def _package_on_kernel_path():
    """Let the kernel import this very clipos_lab: it starts in the notebook's folder, which may not be the
    checkout, and the package may not be pip-installed (PYTHONPATH is inherited by the kernel process)."""
    root = str(Path(__file__).resolve().parent.parent)
    old = os.environ.get("PYTHONPATH")
    if root in (old or "").split(os.pathsep):
        yield
        return
    os.environ["PYTHONPATH"] = os.pathsep.join([root, old]) if old else root
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _fix_output_path(tmp: Path, final: Path) -> None:
    """Papermill stamps the temporary name into the notebook's metadata; record the real one instead."""
    import nbformat

    try:
        nb = nbformat.read(str(tmp), as_version=4)
        if "papermill" in nb.metadata:
            nb.metadata.papermill["output_path"] = str(final)
            nbformat.write(nb, str(tmp))
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Renderer:
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
        esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
        n_ok = len(self.runs) - len(self.failed)
        lines = [f"Sweep {self.sweep.path.name} ({self.sweep.notebook.name}): {n_ok} of {len(self.runs)} cells ok"
                 + (f", {len(self.failed)} failed" if self.failed else "") + ".", "",
                 "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in self.table_rows():
            lines.append("| " + " | ".join(esc(_cell_text(row.get(c))) for c in cols) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.markdown


def _write_csv(result: SweepResult, path: Path) -> None:
    cols = result.columns
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(cols)
            for row in result.rows:
                writer.writerow(["" if row.get(c) is None else
                                 json.dumps(row[c]) if isinstance(row[c], (list, dict)) else row[c] for c in cols])


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


def aggregate(sweep: Sweep, runs: list[RunRecord]) -> SweepResult:
    """Gather the ok runs' metrics into rows and write sweep.csv, sweep.md and index.html."""
    result = SweepResult(sweep, runs)
    for rec in runs:
        if rec.ok:
            result.rows.extend(_rows_for(rec, sweep.grid_names))
    sweep.output.mkdir(parents=True, exist_ok=True)
    _write_csv(result, sweep.output / "sweep.csv")
    with atomic_path(sweep.output / "sweep.md") as tmp:
        tmp.write_text(result.markdown + "\n")
    _write_index(result, sweep.output / "index.html")
    return result


# ---------------------------------------------------------------- entry point

def run_sweep(sweep: str | os.PathLike, out_dir: str | os.PathLike | None = None, kernel: str | None = "python3",
              *, render: bool = True, log: bool = True) -> SweepResult:
    """Run (or resume) a sweep file and aggregate it; ``str(result)`` is the Markdown table.

    ``kernel=None`` uses the kernel named in the notebook. Progress goes to stderr unless ``log=False``.
    """
    spec = load_sweep(sweep, out_dir)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if log else (lambda msg: None)
    renderer = _Renderer(say) if render else None
    cells = spec.cells()
    runs = []
    for i, (cell, slug) in enumerate(zip(cells, cell_slugs(cells)), 1):
        record = RunRecord(slug, spec.output / "runs" / slug, cell)
        params = {**spec.parameters, **cell, RESERVED: str(record.folder)}
        if _finished(record, params, spec.notebook):
            say(f"[{i}/{len(cells)}] {slug}: ok earlier, skipped")
        else:
            say(f"[{i}/{len(cells)}] {slug}: running ...")
            _execute(spec, record, params, kernel)
            say(f"[{i}/{len(cells)}] {slug}: {record.status} in {record.seconds:.1f} s"
                + (f" - {record.error}" if record.error else ""))
        if renderer is not None:
            renderer(record)
        runs.append(record)
    result = aggregate(spec, runs)
    say(f"wrote {spec.output / 'sweep.csv'}, sweep.md, index.html ({len(result.failed)} failed)")
    return result

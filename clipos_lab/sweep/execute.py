"""Running a sweep: one papermill execution per grid cell, resumable, each in its own run folder."""


from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..files import atomic_path, remove_stale_temporaries
from .record import RunRecord
from .report import Renderer, SweepResult, aggregate
from .spec import ANSI, RESERVED, Sweep, canonical, cell_slugs, load_sweep

LOG = logging.getLogger(__name__)


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _comparable(params: dict) -> str:
    return canonical({k: v for k, v in params.items() if k != RESERVED})


def _finished(record: RunRecord, params: dict, notebook: Path) -> bool:
    """True when an earlier run of exactly this cell succeeded and its metrics are still readable."""
    status = _read_json(record.folder / "status.json")
    if not isinstance(status, dict) or status.get("status") != "ok":
        return False
    if Path(str(status.get("notebook", ""))).name != notebook.name:
        return False
    if _comparable(status.get("parameters") or {}) != _comparable(json.loads(canonical(params))):
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
    first = ANSI.sub("", first).strip().splitlines()[0] if first.strip() else type(err).__name__
    return first, ANSI.sub("", str(err)).strip()


def _execute(sweep: Sweep, record: RunRecord, params: dict, kernel: str | None) -> None:
    """Run the notebook for one cell and record the outcome in status.json (ok only once metrics.json exists)."""
    import papermill as pm

    folder = record.folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("notebook.ipynb", "status.json", "metrics.json"):  # left by a run killed mid-write (SIGKILL)
        remove_stale_temporaries(folder, name)
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
                    # static figures, no bars, even when the sweep is started from a JupyterLab kernel
                    static = _static_overrides(sweep.notebook)
                    pm.execute_notebook(str(sweep.notebook), str(tmp), parameters={**static, **params},
                                        kernel_name=kernel,
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


def _static_overrides(notebook: Path) -> dict:
    """``INTERACTIVE`` / ``PROGRESS`` = False for the notebook's parameters cell, if it declares them."""
    import nbformat

    cells = nbformat.read(str(notebook), as_version=4).cells
    source = "\n".join(c.source for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    return {k: False for k in ("INTERACTIVE", "PROGRESS") if re.search(rf"^{k}\b", source, re.M)}


@contextlib.contextmanager
def _package_on_kernel_path():
    """Let the kernel import this very clipos_lab: it starts in the notebook's folder, which may not be the
    checkout, and the package may not be pip-installed (PYTHONPATH is inherited by the kernel process)."""
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this checkout of clipos_lab
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



# ---------------------------------------------------------------- entry point

def run_sweep(sweep: str | os.PathLike, out_dir: str | os.PathLike | None = None, kernel: str | None = "python3",
              *, render: bool = True, log: bool = True, executor=None) -> SweepResult:
    """Run (or resume) a sweep file and aggregate it; ``str(result)`` is the Markdown table.

    ``kernel=None`` uses the kernel named in the notebook. Progress goes to the ``clipos_lab.sweep`` logger unless
    ``log=False``. ``executor`` (:func:`clipos_lab.evaluation.executor.make_executor`) runs the cells: one after
    the other here (default), or side by side as Ray tasks (each task runs its notebook's kernel; the output folder
    must be one every worker reaches).
    """
    spec = load_sweep(sweep, out_dir)
    say = LOG.info if log else (lambda msg: None)
    renderer = Renderer(say) if render else None
    cells = spec.cells()
    runs, todo = [], []
    for i, (cell, slug) in enumerate(zip(cells, cell_slugs(cells)), 1):
        record = RunRecord(slug, spec.output / "runs" / slug, cell)
        params = {**spec.parameters, **cell, RESERVED: str(record.folder)}
        runs.append(record)
        if _finished(record, params, spec.notebook):
            say(f"[{i}/{len(cells)}] {slug}: ok earlier, skipped")
        else:
            todo.append((i, record, params))
    if executor is not None and not executor.in_process:
        from ..evaluation.executor import Cell

        say(f"{len(todo)} cells on {executor.name}")
        done = executor.run([Cell(_execute_record, (spec, record, params, kernel), record.slug)
                             for _, record, params in todo], desc="sweep")
        for (i, record, _), finished in zip(todo, done):
            runs[i - 1] = finished
            _say_done(say, i, len(cells), finished)
    else:
        for i, record, params in todo:
            say(f"[{i}/{len(cells)}] {record.slug}: running ...")
            _execute(spec, record, params, kernel)
            _say_done(say, i, len(cells), record)
    if renderer is not None:
        for record in runs:
            renderer(record)
    result = aggregate(spec, runs)
    say(f"wrote {spec.output / 'sweep.csv'}, sweep.md, index.html ({len(result.failed)} failed)")
    return result


def _execute_record(sweep: Sweep, record: RunRecord, params: dict, kernel: str | None) -> RunRecord:
    """One cell in a worker: run it and send its record back."""
    _execute(sweep, record, params, kernel)
    return record


def _say_done(say, i: int, n: int, record: RunRecord) -> None:
    if record.executed:
        say(f"[{i}/{n}] {record.slug}: {record.status} in {record.seconds:.1f} s"
            + (f" - {record.error}" if record.error else ""))

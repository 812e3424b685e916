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
It is a whole positive number of seconds (papermill's kernel client takes no fractions, NaN or infinity).

Hostile or mistaken files are refused before anything is expanded: a file over :data:`MAX_SWEEP_BYTES`, YAML
whose aliases repeat lists into more than :data:`MAX_VALUES` values (an "anchor bomb"), and a grid of more than
:data:`MAX_CELLS` cells (counted as the product of the axis lengths, never by building the list).

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

"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SWEEP_KEYS = ("notebook", "output", "parameters", "grid", "timeout")
RESERVED = "OUTPUT_DIR"
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAX_SLUG = 120
MAX_SWEEP_BYTES = 1_000_000  # a sweep file is a few lines; anything larger is a mistake or an attack
MAX_VALUES = 100_000  # values (counted as YAML aliases expand them) in the whole file
MAX_CELLS = 10_000  # grid cells: each one is a notebook run


# ---------------------------------------------------------------- the sweep file

@dataclass(frozen=True)
class Sweep:
    """A validated sweep file; ``axes`` pairs each grid axis's parameter names with its value tuples."""

    path: Path
    notebook: Path
    output: Path
    parameters: dict
    axes: tuple[tuple[tuple[str, ...], tuple[tuple, ...]], ...]
    timeout: int | None = None

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
    size = path.stat().st_size  # a missing sweep file is a FileNotFoundError, as for any other input file
    if size > MAX_SWEEP_BYTES:
        raise ValueError(f"{path}: {size} bytes is too large for a sweep file (at most {MAX_SWEEP_BYTES} bytes); "
                         "is it the right file?")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)  # aliases are shared, not copied, here: expansion happens only when walked
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to be a sweep file") from None
    n_values = count_values(data, MAX_VALUES)
    if n_values > MAX_VALUES:
        raise ValueError(f"{path}: expands to more than {MAX_VALUES} values (YAML aliases that repeat lists?); a "
                         "sweep file lists its values, write them out")
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
        canon = [canonical(t) for t in tuples]
        dupes = sorted(c for c, n in collections.Counter(canon).items() if n > 1)  # linear, not quadratic
        if dupes:
            raise bad(label, f"duplicate value {dupes[0]}")
        axes.append((names, tuples))

    n_cells = math.prod(len(values) for _, values in axes)
    if n_cells > MAX_CELLS:
        sizes = " x ".join(str(len(values)) for _, values in axes)
        raise bad("grid", f"{sizes} = {n_cells} cells, more than {MAX_CELLS} notebook runs; split the sweep or "
                          "move axes into `parameters`")

    timeout = data.get("timeout")
    if timeout is not None:
        whole = (isinstance(timeout, int) or (isinstance(timeout, float) and math.isfinite(timeout)
                                              and timeout.is_integer())) and not isinstance(timeout, bool)
        if not whole or timeout <= 0:
            raise bad("timeout", f"expected a whole positive number of seconds (papermill takes no fractions), "
                                 f"got {timeout!r}")
        timeout = int(timeout)
    return Sweep(path, notebook, output, dict(parameters), tuple(axes), timeout)


def count_values(data: Any, limit: int) -> int:
    """How many values ``data`` holds when every alias is expanded, counting up to just past ``limit``.

    Iterative and stopping early, so a file whose aliases expand to 10^9 values costs ``limit`` steps, not a hang.
    """
    n, todo = 0, [data]
    while todo and n <= limit:
        value = todo.pop()
        n += 1
        if isinstance(value, dict):
            todo.extend(value.keys())
            todo.extend(value.values())
        elif isinstance(value, (list, tuple)):
            todo.extend(value)
    return n


def _check_name(name: Any, where: str, bad) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise bad(where, f"parameter name {name!r} is not a Python identifier")
    if name == RESERVED:
        raise bad(where, f"{RESERVED} is set by the sweep (the run folder); do not set it yourself")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# ---------------------------------------------------------------- run folders

def _value_text(value: Any) -> str:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _short_hash(cell: dict) -> str:
    return hashlib.sha1(canonical(cell).encode()).hexdigest()[:8]


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

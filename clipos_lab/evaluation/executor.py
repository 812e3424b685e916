"""Where a grid's cells run: in this process (``local``, the default) or as tasks on a Ray cluster (``ray``).

A *cell* is the unit of work of every grid: one (spec, method, shots, seed) of a benchmark, one parameter set of
a sweep, one (category, method, shots, seed) of an anomaly run. A cell is a picklable function call; executors
return the cells' results in the order they were given, so the tables a run writes do not depend on where or in
which order the cells ran (a Ray run writes the same ``results.csv`` as a local one).

Ray (``pip install clipos_lab[ray]``) is imported only when ``executor="ray"`` is chosen. ``ray.init`` starts a
local cluster, or attaches to a running one with ``address`` (``"auto"``, or ``"host:port"`` of ``ray start
--head``); each task asks for ``task_cpus`` CPUs and ``task_gpus`` of a GPU (``0.25``: four scoring tasks share
one GPU). Ray retries a task whose worker dies (``max_retries``), so a killed worker costs a re-run of its cell,
not the run. See ``docs/scale.md`` for clusters (KubeRay, Slurm, cloud) and what they need (a shared filesystem
for the feature cache and the output folder).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

EXECUTORS = ("local", "ray")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One unit of work: ``fn(*args)``, named ``label`` in progress bars and errors."""

    fn: Callable
    args: tuple
    label: str


class LocalExecutor:
    """Runs cells one after the other in this process (no Ray needed)."""

    name = "local"

    def run(self, cells: Sequence[Cell], progress: bool = True, desc: str = "cells") -> list[Any]:
        out = []
        with tqdm(total=len(cells), disable=not progress, desc=desc, leave=False) as bar:
            for cell in cells:
                bar.set_postfix_str(cell.label, refresh=False)
                out.append(cell.fn(*cell.args))
                bar.update(1)
        return out

    @property
    def in_process(self) -> bool:
        return True


class RayExecutor:
    """Runs cells as Ray tasks (``task_cpus`` CPUs and ``task_gpus`` GPUs each), results in submission order."""

    name = "ray"

    def __init__(self, address: str | None = None, task_cpus: float = 1.0, task_gpus: float = 0.0,
                 max_retries: int = 3, num_cpus: int | None = None):
        if not task_cpus > 0 or task_gpus < 0:
            raise ValueError(f"--task-cpus must be > 0 and --task-gpus >= 0, got {task_cpus} and {task_gpus}")
        try:
            import ray
        except ImportError:
            raise ImportError("executor 'ray' needs Ray: pip install 'clipos_lab[ray]' (or use --executor local)")\
                from None
        self.ray = ray
        self.task_cpus, self.task_gpus, self.max_retries = float(task_cpus), float(task_gpus), int(max_retries)
        if not ray.is_initialized():
            options = {"address": address, "ignore_reinit_error": True, "log_to_driver": False,
                       "include_dashboard": None}
            if address is None and num_cpus is not None:
                options["num_cpus"] = int(num_cpus)
            context = ray.init(**options)
            url = getattr(context, "dashboard_url", None)
            if url:
                log.info("Ray dashboard: http://%s", url)

    @property
    def in_process(self) -> bool:
        return False

    def run(self, cells: Sequence[Cell], progress: bool = True, desc: str = "cells") -> list[Any]:
        ray = self.ray
        remote = ray.remote(_call).options(num_cpus=self.task_cpus, num_gpus=self.task_gpus,
                                           max_retries=self.max_retries, retry_exceptions=False)
        refs = [remote.remote(cell.fn, cell.args) for cell in cells]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        with tqdm(total=len(refs), disable=not progress, desc=desc, leave=False) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = index[ref]
                    try:
                        results[i] = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:  # the cell's own error, raised as itself
                        raise err.as_instanceof_cause() from None
                    bar.set_postfix_str(cells[i].label, refresh=False)
                    bar.update(1)
        return results


def _call(fn: Callable, args: tuple):
    return fn(*args)


def portable_cache(cache):
    """The ``cache`` argument as a task can carry it: a folder as a string, or True / False as given."""
    return str(cache) if isinstance(cache, (str, os.PathLike)) else cache


_BACKBONES: dict[tuple, object] = {}  # per process: each backbone a worker needs, loaded once for all its cells


def worker_backbone(load_args: dict, device: str = "auto"):
    """The backbone ``Backbone.load(**load_args)`` made, loaded once per worker process (benchmark, encoding and
    anomaly cells of one run share it)."""
    from ..backbone import Backbone

    key = (json.dumps(load_args, sort_keys=True, default=str), device)
    if key not in _BACKBONES:
        _BACKBONES[key] = Backbone.load(**load_args, device=device)
    return _BACKBONES[key]


def make_executor(name: str = "local", address: str | None = None, task_cpus: float = 1.0,
                  task_gpus: float = 0.0, **options):
    """The executor called ``name``; ``address`` / ``task_cpus`` / ``task_gpus`` are Ray's."""
    if name not in EXECUTORS:
        raise ValueError(f"executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    if name == "local":
        if address is not None:
            raise ValueError("--address is an option of --executor ray")
        return LocalExecutor()
    return RayExecutor(address=address, task_cpus=task_cpus, task_gpus=task_gpus, **options)

"""Where a grid's cells run: in this process (``local``, the default), in a pool of worker processes on this
machine (``processes``), or as tasks on a Ray cluster (``ray``).

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

``processes`` is the one-machine form of the same idea without Ray: a pocket-sized cell (prompt training, a
test-time stream) runs on one thread (:mod:`clipos_lab.threads`), so a local run uses one core of many; a pool
of ``processes`` workers (default: one per core) runs that many cells at once. Workers are started once per
executor (``spawn``: no torch state is forked) and keep their backbone and banks between calls, as Ray workers do;
each may use ``cores // processes`` threads for the large stages.
"""

from __future__ import annotations

import atexit
import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

EXECUTORS = ("local", "processes", "ray")
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


class ProcessExecutor:
    """Runs cells in ``processes`` worker processes of this machine (default: one per core), results in
    submission order. The pool starts on the first :meth:`run` and lives until :meth:`close` (or exit)."""

    name = "processes"

    def __init__(self, processes: int | None = None):
        from ..threads import all_cores

        if processes is not None and (isinstance(processes, bool) or int(processes) != processes or processes < 1):
            raise ValueError(f"--processes must be a whole number >= 1, got {processes!r}")
        self.processes = int(processes) if processes is not None else all_cores()
        self.cores_each = max(1, all_cores() // self.processes)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def in_process(self) -> bool:
        return False

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(self.cores_each,))
            atexit.register(self.close)
        return self._pool

    def run(self, cells: Sequence[Cell], progress: bool = True, desc: str = "cells") -> list[Any]:
        pool = self._started()
        futures = [pool.submit(_call, cell.fn, cell.args) for cell in cells]
        index = {f: i for i, f in enumerate(futures)}
        try:
            with tqdm(total=len(futures), disable=not progress, desc=desc, leave=False) as bar:
                for future in as_completed(futures):
                    future.result()  # a cell's own error is raised here, as itself
                    bar.set_postfix_str(cells[index[future]].label, refresh=False)
                    bar.update(1)
        except BrokenProcessPool:
            self.close()
            raise RuntimeError(f"a worker process of --executor processes died while running {len(cells)} cells: "
                               f"out of memory? Run again with fewer --processes (now {self.processes}); cells "
                               "finished by then are kept and are not run again. (From a script, put the run under "
                               "`if __name__ == '__main__':`, as workers start by importing it.)") from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the workers (waiting for running cells); a later :meth:`run` starts new ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _start_worker(cores: int) -> None:
    """A worker's share of the cores: large stages use ``cores`` threads, small ones and the work between stages
    one (see threads.py; torch would otherwise start with a thread per core, and two workers' idle OpenMP
    threads spinning at their barriers took half a core each)."""
    import torch

    from ..threads import share_cores, threads_for

    share_cores(cores)
    torch.set_num_threads(threads_for(0.0))


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
                  task_gpus: float = 0.0, processes: int | None = None, **options):
    """The executor called ``name``; ``address`` / ``task_cpus`` / ``task_gpus`` are Ray's, ``processes`` the
    ``processes`` executor's worker count."""
    if name not in EXECUTORS:
        raise ValueError(f"executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    if processes is not None and name != "processes":
        raise ValueError("--processes is an option of --executor processes")
    if name != "ray" and address is not None:
        raise ValueError("--address is an option of --executor ray")
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(processes)
    return RayExecutor(address=address, task_cpus=task_cpus, task_gpus=task_gpus, **options)

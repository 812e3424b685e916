"""Glue the notebooks share, so that their cells stay short and contain no algorithm.

* :func:`setup`: inline matplotlib (static figures also when ``MPLBACKEND=Agg``), quiet warnings, a summary line;
* :func:`load_backbone`: the notebook parameters ``MODEL`` / ``PRETRAINED`` / ``CHECKPOINT`` to a Backbone;
* :func:`parse_list`: ``"1,2"`` / ``1`` / ``[1, 2]`` (papermill passes any of these) to a list;
* :func:`benchmark_spec` and :func:`resize_world`: a benchmark spec from a parameter, optionally shrunk;
* :func:`method_averages`: per-method OOD-average AUROC / FPR95 and ID accuracy from the runner's summary;
* :class:`Stopwatch`: wall-clock timings that end up in ``metrics.json``.
"""

from __future__ import annotations

import copy
import time
import warnings
from contextlib import contextmanager
from typing import Callable

from . import paths


def in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def setup(interactive: bool = False, progress: bool = False, quiet: bool = True) -> dict:
    """Prepare a notebook kernel; returns a small description of the environment (also printed).

    Matplotlib figures are always drawn inline (papermill and nbmake may run with ``MPLBACKEND=Agg``, which
    would otherwise swallow them). ``quiet`` silences library warnings that are noise in a walkthrough.
    """
    import torch

    if in_ipython():
        from IPython import get_ipython

        try:
            get_ipython().run_line_magic("matplotlib", "inline")
        except Exception:  # a kernel without the inline backend still writes figures to files
            pass
    if quiet:
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
    info = {"interactive": bool(interactive), "progress": bool(progress), "torch_threads": torch.get_num_threads(),
            "repo_root": str(paths.repo_root())}
    mode = "interactive (widgets + plotly)" if interactive else "static (matplotlib figures, no widget state)"
    print(f"clipos_lab notebook: {mode}; torch threads: {info['torch_threads']}; repo: {info['repo_root']}")
    return info


def load_backbone(model: str = "pocket", pretrained: str = "", checkpoint: str = "", **kwargs):
    """A :class:`~clipos_lab.backbone.Backbone` from notebook parameters (empty strings mean "not given").

    ``checkpoint`` may be relative to the current folder or to the repository.
    """
    from ..backbone import Backbone

    ckpt = paths.resolve_input(checkpoint) if checkpoint else None
    backbone = Backbone.load(model=model or "pocket", pretrained=pretrained or None, checkpoint=ckpt, **kwargs)
    print(f"backbone {backbone.name}: {backbone.image_size}px images, {backbone.grid[0]}x{backbone.grid[1]} patch "
          f"grid, {backbone.embed_dim}-d joint space; weights {backbone.weights_id[:60]}")
    return backbone


def parse_list(value, cast: Callable = int) -> list:
    """``"1,2"``, ``"1 2"``, ``1`` or ``[1, 2]`` to ``[cast(1), cast(2)]``; empty input is an error.

    papermill's ``-p SHOTS 1`` arrives as an int and ``-p SHOTS 1,2`` as a string, so both must work.
    """
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = value.replace(",", " ").split()
    else:
        items = [value]
    if not items:
        raise ValueError(f"expected a comma-separated list, got {value!r}")
    try:
        return [cast(x) for x in items]
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot read {value!r} as a list of {cast.__name__}: {err}") from err


def parse_names(value) -> list[str]:
    """``"MCM, GL-MCM,CoOp"`` to ``["MCM", "GL-MCM", "CoOp"]`` (comma-separated; names may contain spaces)."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = [str(x).strip() for x in items if str(x).strip()]
    if not names:
        raise ValueError(f"expected comma-separated names, got {value!r}")
    return names


def benchmark_spec(spec: str = "default"):
    """A :class:`~clipos_lab.data.BenchmarkSpec` from ``"default"`` (the shipped world) or a YAML path."""
    from ..data import BenchmarkSpec, default_benchmark_path

    path = default_benchmark_path() if spec in ("", "default", None) else paths.resolve_input(spec)
    return BenchmarkSpec.from_yaml(path)


def resize_world(spec, id_per_class: int = 0, ood_per_set: int = 0):
    """A copy of ``spec`` whose *world* entries are smaller: ``id_per_class`` images per ID class (test and
    few-shot pool) and ``ood_per_set`` images per OOD set (per class for object sets, spread evenly).

    0 keeps the spec's own sizes. Folder and torchvision entries are left as they are.
    """
    new = copy.deepcopy(spec)
    new._built = {}
    if id_per_class:
        for entry in (new.id, new.id_train):
            if isinstance(entry, dict) and entry.get("type") == "world":
                entry["n_per_class"] = int(id_per_class)
                entry.pop("n", None)
    if ood_per_set:
        for entry in new.ood.values():
            if isinstance(entry, dict) and entry.get("type") == "world":
                if entry.get("kind", "object") == "object":
                    n_classes = len(entry.get("shapes", [])) or 1
                    entry["n_per_class"] = max(1, int(ood_per_set) // n_classes)
                else:
                    entry["n"] = int(ood_per_set)
    return new


class Stopwatch:
    """Named wall-clock timings: ``with watch("encode"): ...``; ``watch.seconds`` is a dict of floats."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)

    def total(self) -> float:
        return round(time.perf_counter() - self._start, 3)

    def as_dict(self) -> dict:
        return {**self.seconds, "total": self.total()}


def method_averages(summary, default_scores: dict[str, str] | None = None) -> dict:
    """Per method, from runner summary rows: OOD-average AUROC / FPR95 and ID accuracy (fractions in [0, 1]).

    ``result[method]["scores"][score][shots]`` holds mean and std over seeds; ``result[method]["AUROC"]`` etc.
    are those of the method's default score (``default_scores[method]``, else "MCM", else the first score),
    averaged over the shot settings.
    """
    import numpy as np

    from ..evaluation.tables import average_cells

    table: dict = {}
    for (method, score, shots), rows in average_cells(summary, ("AUROC", "FPR95", "ACC")).items():
        cell = table.setdefault(method, {}).setdefault(score, {}).setdefault(str(shots), {})
        for metric, r in rows.items():
            cell[metric] = r["mean"]
            cell[f"{metric}_std"] = r["std"]
            cell["n_seeds"] = r["n_seeds"]
    out = {}
    for method, by_score in table.items():
        wanted = (default_scores or {}).get(method)
        score = wanted if wanted in by_score else ("MCM" if "MCM" in by_score else next(iter(by_score)))
        shots = by_score[score]
        avg = {m: float(np.mean([c[m] for c in shots.values() if m in c])) for m in ("AUROC", "FPR95", "ACC")
               if any(m in c for c in shots.values())}
        out[method] = {"score": score, **avg, "scores": by_score}
    return out


__all__ = ["Stopwatch", "benchmark_spec", "in_ipython", "load_backbone", "method_averages",
           "parse_list", "parse_names", "resize_world", "setup"]

"""Glue the notebooks share, so that their cells stay short and contain no algorithm.

* :func:`setup`: inline matplotlib (static figures also when ``MPLBACKEND=Agg``), quiet warnings, a summary line,
  and the notebook's :class:`Mode`: ``INTERACTIVE`` / ``PROGRESS`` = ``"auto"`` resolve to on in a live front end
  (JupyterLab, VS Code, Colab) and off under papermill / nbmake (:func:`live_front_end`);
* :func:`progress_bar` / :meth:`Mode.bar`: tqdm bars (widgets in JupyterLab) that stay out of executed notebooks;
* :func:`load_backbone`: the notebook parameters ``MODEL`` / ``PRETRAINED`` / ``CHECKPOINT`` to a Backbone;
* :func:`parse_list`: ``"1,2"`` / ``1`` / ``[1, 2]`` (papermill passes any of these) to a list;
* :func:`benchmark_spec` and :func:`resize_world`: a benchmark spec from a parameter ("default": the default of
  the model's world, :mod:`.worlds`), optionally shrunk;
* :func:`class_examples`: one image per class of each set, for a first look at the data;
* :func:`no_tower`: CLIPN's no tower attached before anything is encoded (a missing one stops the first cells);
* :func:`word_list_options`: a smaller, seeded word list for the negative-label methods (notebook runs stay quick);
* :func:`method_averages`: per-method OOD-average AUROC / FPR95 and ID accuracy from the runner's summary;
* :class:`Stopwatch`: wall-clock timings that end up in ``metrics.json``.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

from . import paths
from .params import parse_list, parse_names


def in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


FRONT_END_ENV = ("JPY_SESSION_NAME", "VSCODE_PID", "COLAB_RELEASE_TAG")
"""Set in a kernel's environment by a live front end: jupyter_server (JupyterLab, Notebook) names the session's
notebook in ``JPY_SESSION_NAME``; VS Code and Colab leave their own marks. Kernels started by papermill or nbmake
(through nbclient) have none of them."""


def live_front_end() -> bool:
    """Whether this code runs in a Jupyter kernel that a person is looking at (widgets can render there).

    ``CLIPOS_INTERACTIVE=1`` / ``0`` in the environment overrides the guess, e.g. for a front end we do not know.
    """
    forced = os.environ.get("CLIPOS_INTERACTIVE", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    if not in_ipython():
        return False
    from IPython import get_ipython

    if type(get_ipython()).__name__ != "ZMQInteractiveShell":  # a terminal IPython has no widget front end
        return False
    return any(os.environ.get(name) for name in FRONT_END_ENV)


def resolve_mode(value, name: str = "INTERACTIVE") -> bool:
    """A notebook switch to a bool: ``"auto"`` means :func:`live_front_end`; ``True``/``False`` (or the strings
    papermill passes, ``"true"``, ``"0"``, ...) are taken as given."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return live_front_end()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name}={value!r}: expected \"auto\", True or False")


@dataclass(frozen=True)
class Mode:
    """How a notebook shows things, resolved once by :func:`setup`.

    ``interactive``: widgets and plotly figures (a live front end); else static matplotlib figures only.
    ``progress``: progress bars (tqdm.auto, a widget in JupyterLab); off under papermill so that bars never end up
    in an executed notebook.
    """

    interactive: bool = False
    progress: bool = False

    def show(self, static=None, live=None):
        """Display one figure per idea: the live (plotly / widget) one in interactive mode when given, else the
        static one. Returns nothing, so a cell ending in ``mode.show(...)`` does not display twice."""
        from IPython.display import display

        chosen = live if (self.interactive and live is not None) else static
        if chosen is not None:
            display(chosen)

    def bar(self, iterable=None, **kwargs):
        """:func:`progress_bar` with this mode's ``progress`` switch."""
        return progress_bar(iterable, enabled=self.progress, **kwargs)


def progress_bar(iterable=None, enabled: bool = True, **kwargs):
    """A tqdm bar (a widget in JupyterLab, text in a terminal), or the bare iterable when disabled.

    ``leave=False`` by default: the bar disappears when done, so finished cells keep only their results.
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not enabled, **kwargs)


def setup(interactive="auto", progress="auto", quiet: bool = True) -> Mode:
    """Prepare a notebook kernel and resolve its ``INTERACTIVE`` / ``PROGRESS`` switches (see :class:`Mode`).

    Matplotlib figures are always drawn inline (papermill and nbmake may run with ``MPLBACKEND=Agg``, which
    would otherwise swallow them). ``quiet`` silences library warnings that are noise in a walkthrough.
    """
    import torch

    from ..threads import requested

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
        warnings.filterwarnings("ignore", message=".*IProgress not found.*")
    mode = Mode(resolve_mode(interactive, "INTERACTIVE"), resolve_mode(progress, "PROGRESS"))
    how = "interactive (widgets + plotly)" if mode.interactive else "static (matplotlib figures, no widget state)"
    print(f"clipos_lab notebook: {how}; progress bars {'on' if mode.progress else 'off'}; torch threads "
          f"{torch.get_num_threads()}, stages {requested() or 'auto'} (CLIPOS_THREADS); repo {paths.repo_root()}")
    return mode


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


def no_tower(backbone, no_text: str = "", methods=None):
    """CLIPN's no tower attached to ``backbone`` now, before anything is encoded: ``no_text`` (a clipos_lab
    ``.safetensors`` or CLIPN's released ``.pt``, relative to the current folder or the repository), else the
    backbone's own (the shipped one of a pocket model). A missing tower stops the notebook here, at its first
    cells, with the package's :class:`~clipos_lab.errors.WeightsNotFoundError` saying what to do, rather than
    deep inside a fit. With ``methods`` (names, or a comma-separated string) only when CLIPN is among them;
    returns the tower, or None when none was needed."""
    from ..clipn.encoder import no_text_of
    from ..clipn.released import load_no_text

    if methods is not None and "CLIPN" not in parse_names(methods):
        return None
    return load_no_text(backbone, paths.resolve_input(no_text)) if no_text else no_text_of(backbone)


def benchmark_spec(spec: str = "default", backbone=None):
    """A :class:`~clipos_lab.data.BenchmarkSpec` from a YAML path, or from ``"default"`` (or empty): the default
    benchmark of ``backbone``'s world (``drawings-default`` for pocket v2, ``world-default`` for v1's pocket model,
    any other model and no model; :func:`.worlds.benchmark_path`)."""
    from ..data import BenchmarkSpec
    from .worlds import benchmark_path

    return BenchmarkSpec.from_yaml(benchmark_path(spec, backbone))


GENERATED = ("world", "drawings")  # entry types whose sizes are parameters (rendered on demand, nothing to copy)


def resize_world(spec, id_per_class: int = 0, ood_per_set: int = 0):
    """A copy of ``spec`` whose generated entries (world v1 ``world``, world v2 ``drawings``) are smaller:
    ``id_per_class`` images per ID class (test and few-shot pool) and ``ood_per_set`` images per OOD set (per
    class for object sets, spread evenly, at least one per class).

    0 keeps the spec's own sizes. Folder and torchvision entries are left as they are.
    """
    new = copy.deepcopy(spec)
    new._built = {}
    if id_per_class:
        for entry in (new.id, new.id_train):
            if isinstance(entry, dict) and entry.get("type") in GENERATED:
                entry["n_per_class"] = int(id_per_class)
                entry.pop("n", None)
    if ood_per_set:
        for entry in new.ood.values():
            if not (isinstance(entry, dict) and entry.get("type") in GENERATED):
                continue
            if entry.get("kind", "object") == "object":
                entry["n_per_class"] = max(1, int(ood_per_set) // _n_classes(entry, new.base_dir))
            elif entry["type"] == "drawings":  # a background set: one class, "background"
                entry["n_per_class"] = int(ood_per_set)
            else:
                entry["n"] = int(ood_per_set)
    return new


def _n_classes(entry: dict, base_dir) -> int:
    """The classes an object entry draws: its shapes (world) or classes; for a drawings entry given by
    superclasses, the classes the dataset finds under them (building it reads the pack, renders nothing)."""
    if entry["type"] == "world":
        return len(entry.get("shapes", [])) or 1
    if entry.get("classes"):
        return len(entry["classes"])
    from ..data import build_dataset

    return len(build_dataset(entry, base_dir).classnames)


def class_examples(sets: dict, max_cols: int = 8) -> tuple[list, list[str], int]:
    """The first image of every class of each named dataset, titled ``"<set>: <class>"``, each set starting on a new
    row: ``(images, titles, ncols)`` for :func:`clipos_lab.viz.image_grid` (None leaves a cell empty)."""
    ncols = min(max_cols, max(len(ds.classnames) for ds in sets.values()))
    images, titles = [], []
    for name, ds in sets.items():
        first: dict[int, int] = {}
        for i, sample in enumerate(ds.samples):
            first.setdefault(sample.label, i)
        for label in sorted(first):
            images.append(ds.load(first[label]))
            titles.append(f"{name}: {ds.classnames[label]}")
        pad = -len(images) % ncols
        images, titles = images + [None] * pad, titles + [""] * pad
    while images and images[-1] is None:
        images, titles = images[:-1], titles[:-1]
    return images, titles, ncols


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
    from ..methods.base import main_score

    table: dict = {}
    for (method, score, shots), rows in average_cells(summary, ("AUROC", "FPR95", "ACC")).items():
        cell = table.setdefault(method, {}).setdefault(score, {}).setdefault(str(shots), {})
        for metric, r in rows.items():
            cell[metric] = r["mean"]
            cell[f"{metric}_std"] = r["std"]
            cell["n_seeds"] = r["n_seeds"]
    out = {}
    for method, by_score in table.items():
        score = main_score((default_scores or {}).get(method, "MCM"), by_score)
        shots = by_score[score]
        avg = {m: float(np.mean([c[m] for c in shots.values() if m in c])) for m in ("AUROC", "FPR95", "ACC")
               if any(m in c for c in shots.values())}
        out[method] = {"score": score, **avg, "scores": by_score}
    return out


__all__ = ["Mode", "Stopwatch", "benchmark_spec", "class_examples", "in_ipython", "live_front_end", "load_backbone",
           "method_averages", "no_tower", "parse_list", "parse_names", "progress_bar", "resize_world", "resolve_mode",
           "setup"]


def word_list_options(methods, n_words: int = 0, seed: int = 0) -> dict:
    """Method options giving the negative-label methods among ``methods`` ``n_words`` words of the shipped WordNet
    list (a seeded sample; 0 = the whole list, as the references). AdaNeg's fixed count of negatives shrinks in
    proportion (10,000 of the whole list)."""
    from ..methods.registry import REGISTRY
    from ..negatives.vocab import read_vocab

    takes = [m for m in methods if m in REGISTRY and "vocabulary" in REGISTRY[m].cls.option_names()]
    if not n_words or not takes:
        return {}
    whole = read_vocab()
    vocab = whole.sample(int(n_words), seed)
    options = {m: {"vocabulary": vocab} for m in takes}
    for m in takes:
        if "n_negatives" in REGISTRY[m].cls.option_names():
            options[m]["n_negatives"] = max(1, round(10_000 * len(vocab) / len(whole)))
    return options

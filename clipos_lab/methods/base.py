"""The method contract: what every OOD method declares and does, so the runner, the CLI, tables and the public
API can take everything from the registry (``docs/contract.md`` is the page a contributor reads first).

A method is a class with

* ``name`` (how tables call it), ``kind`` (:data:`KINDS`: ``"zero-shot"`` needs class names only,
  ``"few-shot"`` trains on a drawn few-shot bank, ``"test-time"`` adapts to the test stream and is marked
  transductive), ``score_names`` (every score it can give) and ``default_score`` (the one it is reported with);
* its options as ``__init__`` parameters, stored under the same names (scikit-learn's rule), so
  :meth:`Method.get_params` can record them in ``run.json``;
* ``fit(backbone, train=None, classnames=None)`` returning ``self``, fitted state ending in ``_``;
* ``score(bank, scores=None)`` -> ``{score name: (N,) array}``, higher = more in-distribution;
* ``predict(bank)`` -> the ID class of each image (the runner's ID accuracy);
* few-shot methods: ``save(path)`` and ``load(path, backbone)`` (the runner saves every learned method).

Methods work on cached features (a :class:`~clipos_lab.features.FeatureBank`), never on pixels, so every image
is encoded once. The runner calls :meth:`Method.score_sets` on the ID test set and every OOD set together:
methods whose scores do not depend on the stream inherit it; test-time methods override it.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, is_dataclass
from typing import Mapping, Sequence

import numpy as np

KINDS = ("zero-shot", "few-shot", "test-time")


class NotFittedError(RuntimeError):
    """A method (or anomaly method) was asked to score before ``fit``."""


class Method:
    """Base class of every OOD method; see the module docstring for the contract."""

    name = "method"
    kind = "zero-shot"
    score_names: tuple[str, ...] = ("MCM",)
    default_score = "MCM"
    fitted_attribute = "text_"  # set by fit; its absence means "not fitted"

    # --------------------------------------------------------------------------------------------- options
    @classmethod
    def option_names(cls) -> list[str]:
        """The ``__init__`` parameters: the options a spec, ``--options`` or a registry preset may set."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in list(sig.parameters.values())[1:]
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict:
        """Every option with its value, as plain data (dataclass configs become dicts): what ``run.json`` stores
        and what :func:`~clipos_lab.methods.registry.build_method` takes back."""
        return {name: _plain(getattr(self, name)) for name in self.option_names()}

    # -------------------------------------------------------------------------------------------- fit / score
    def fit(self, backbone, train=None, classnames: Sequence[str] | None = None) -> "Method":
        raise NotImplementedError(f"{type(self).__name__} must implement fit(backbone, train, classnames)")

    def score(self, bank, scores: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} must implement score(bank, scores)")

    def predict(self, bank) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement predict(bank)")

    def score_sets(self, sets: Mapping[str, object], scores: Sequence[str] | None = None,
                   seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
        """Scores of several banks (the runner passes ``{"id": ID test, <ood name>: bank, ...}``).

        Each bank is scored on its own, so ``seed`` is unused here; a test-time method overrides this to feed the
        sets as one stream in a ``seed``-ed order, batch by batch, as its reference does.
        """
        return {name: self.score(bank, scores=scores) for name, bank in sets.items()}

    def score_signature(self):
        """A hashable value such that two fitted methods with equal signatures give equal scores on any bank (the
        runner then scores once, e.g. zero-shot MCM and GL-MCM); ``None``: never shared."""
        return None

    # -------------------------------------------------------------------------------------------- helpers
    def check_scores(self, scores: Sequence[str] | None) -> list[str]:
        """The names of ``scores`` this method gives (all when None); a name it cannot give is an error."""
        if scores is None:
            return list(self.score_names)
        unknown = [s for s in scores if s not in self.score_names]
        if unknown:
            raise ValueError(f"{self.name} cannot give the scores {unknown}; it gives {list(self.score_names)}")
        return [s for s in self.score_names if s in scores]

    def is_fitted(self) -> bool:
        return hasattr(self, self.fitted_attribute)

    def _check_fitted(self):
        if not self.is_fitted():
            raise NotFittedError(f"{self.name} is not fitted: call fit(backbone, train_bank) first")

    # learned methods (kind "few-shot") implement both
    def save(self, path) -> None:
        raise NotImplementedError(f"{type(self).__name__} learns nothing to save")

    @classmethod
    def load(cls, path, backbone) -> "Method":
        raise NotImplementedError(f"{cls.__name__} learns nothing to load")


def _plain(value):
    """Options as JSON-able data: dataclasses to dicts, tuples to lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def main_score(method, available) -> str:
    """The score a method is reported with: its ``default_score`` when ``available`` has it, else "MCM", else the
    first available one. ``method`` is a Method (class or instance) or a score name; ``available`` any iterable
    of score names (e.g. the keys of :meth:`Method.score`)."""
    names = list(available)
    if not names:
        raise ValueError("main_score: no score names to choose from")
    default = method if isinstance(method, str) else getattr(method, "default_score", "MCM")
    return next(s for s in (default, "MCM", names[0]) if s in names)

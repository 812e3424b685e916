"""The anomaly-method registry: a name (what specs, ``--methods`` and tables use) -> a class and its preset.

The same contract as the OOD methods' (``docs/contract.md``): a class declares its ``kind`` (``"zero-shot"``:
fitted without normal images; ``"few-shot"``: fitted on drawn normal shots), its options are its ``__init__``
parameters and ``options()`` returns them, scoring before ``fit`` raises
:class:`~clipos_lab.methods.base.NotFittedError`. A new anomaly method is its own module plus one
:func:`register` line; the runner, the command line's help and the tables read this registry.
"""

from __future__ import annotations

import inspect

from ..registry import Registry
from .base import AnomalyMethod
from .memory import PatchMemory
from .mutual import MuSc, MutualScoring
from .prompts import StatePrompts
from .windows import WinCLIP, WinCLIPPlus

KINDS = ("zero-shot", "few-shot")


def option_names(cls: type) -> list[str]:
    """Every ``__init__`` option of ``cls`` and its bases (subclasses may pass options on with ``**options``)."""
    return list(dict.fromkeys(p.name for c in cls.__mro__ if "__init__" in vars(c)
                              for p in inspect.signature(c.__init__).parameters.values()
                              if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD))


REGISTRY = Registry("anomaly method", AnomalyMethod, KINDS, option_names)


def register(name: str, cls: type, default: bool = False, **preset) -> None:
    """Make ``name`` buildable by :func:`build_anomaly_method`; ``default=True`` puts it in runs naming none."""
    REGISTRY.register(name, cls, default, **preset)


def unregister(name: str) -> None:
    REGISTRY.unregister(name)


register("patch-memory", PatchMemory, default=True)
register("mutual", MutualScoring, default=True)
register("musc", MuSc)  # MuSc's own scoring (docs/anomaly.md)
register("state-prompts", StatePrompts, default=True)
register("winclip", WinCLIP)
register("winclip+", WinCLIPPlus)


def methods(kind: str | None = None) -> list[str]:
    return REGISTRY.names(kind)


def default_methods() -> list[str]:
    return REGISTRY.defaults()


def build_anomaly_method(name: str, **options) -> AnomalyMethod:
    """A fresh, unfitted anomaly method by its registry name; ``options`` override its preset and defaults."""
    entry = REGISTRY.entry(name)
    known = option_names(entry.cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"bad options {options} for {name}: it has no options {unknown}; its options are {known}")
    try:
        return entry.cls(**{**entry.preset, **options})
    except TypeError as err:
        raise ValueError(f"bad options {options} for {name}: {err}; its options are {known}") from err

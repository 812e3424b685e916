"""The anomaly-method registry: a name (what specs, ``--methods`` and tables use) -> a class and its preset.

The same contract as the OOD methods' (``docs/contract.md``): a class declares its ``kind`` (``"zero-shot"``:
fitted without normal images; ``"few-shot"``: fitted on drawn normal shots), its options are its ``__init__``
parameters and ``options()`` returns them, scoring before ``fit`` raises
:class:`~clipos_lab.methods.base.NotFittedError`. A new anomaly method is its own module plus one
:func:`register` line; the runner, the command line's help and the tables read this registry.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from .base import AnomalyMethod
from .memory import PatchMemory
from .mutual import MuSc, MutualScoring
from .prompts import StatePrompts
from .windows import WinCLIP, WinCLIPPlus

KINDS = ("zero-shot", "few-shot")


@dataclass(frozen=True)
class Entry:
    cls: type
    preset: dict = field(default_factory=dict)
    default: bool = False

    @property
    def kind(self) -> str:
        return self.cls.kind


REGISTRY: dict[str, Entry] = {}


def option_names(cls: type) -> list[str]:
    """Every ``__init__`` option of ``cls`` and its bases (subclasses may pass options on with ``**options``)."""
    return list(dict.fromkeys(p.name for c in cls.__mro__ if "__init__" in vars(c)
                              for p in inspect.signature(c.__init__).parameters.values()
                              if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD))


def register(name: str, cls: type, default: bool = False, **preset) -> None:
    """Make ``name`` buildable by :func:`build_anomaly_method`; ``default=True`` puts it in runs naming none."""
    if name in REGISTRY:
        raise ValueError(f"anomaly method {name!r} is already registered")
    if not (isinstance(cls, type) and issubclass(cls, AnomalyMethod)):
        raise TypeError(f"register({name!r}, ...): {cls!r} is not an AnomalyMethod subclass")
    if cls.kind not in KINDS:
        raise ValueError(f"register({name!r}, ...): {cls.__name__}.kind={cls.kind!r}; choose one of {KINDS}")
    unknown = sorted(set(preset) - set(option_names(cls)))
    if unknown:
        raise ValueError(f"register({name!r}, ...): {cls.__name__} has no options {unknown}")
    REGISTRY[name] = Entry(cls, dict(preset), bool(default))


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


register("patch-memory", PatchMemory, default=True)
register("mutual", MutualScoring, default=True)
register("musc", MuSc)  # MuSc's own scoring (docs/anomaly.md)
register("state-prompts", StatePrompts, default=True)
register("winclip", WinCLIP)
register("winclip+", WinCLIPPlus)


def methods(kind: str | None = None) -> list[str]:
    return [n for n, e in REGISTRY.items() if kind is None or e.kind == kind]


def default_methods() -> list[str]:
    return [n for n, e in REGISTRY.items() if e.default]


def build_anomaly_method(name: str, **options) -> AnomalyMethod:
    """A fresh, unfitted anomaly method by its registry name; ``options`` override its preset and defaults."""
    if name not in REGISTRY:
        raise ValueError(f"unknown anomaly method {name!r}; choose from {methods()}")
    entry = REGISTRY[name]
    known = option_names(entry.cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"bad options {options} for {name}: it has no options {unknown}; its options are {known}")
    try:
        return entry.cls(**{**entry.preset, **options})
    except TypeError as err:
        raise ValueError(f"bad options {options} for {name}: {err}; its options are {known}") from err

"""A name -> class registry with presets: what the OOD methods and the anomaly methods each keep one of.

A registered name stands for a class and the options its name implies (a preset: "CLIP-OS w/o PUC" is CLIPOS with
``puc_k=1``); ``default=True`` puts it in runs that name no methods. Registering checks the class, its kind and the
preset's option names at once, so a typo fails at import, not in the middle of a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence


@dataclass(frozen=True)
class Entry:
    """One registered name: its class, the options its name stands for, and whether default runs include it."""

    cls: type
    preset: dict = field(default_factory=dict)
    default: bool = False

    @property
    def kind(self) -> str:
        return self.cls.kind


class Registry(dict):
    """``name -> Entry`` for subclasses of ``base`` whose ``kind`` is one of ``kinds``."""

    def __init__(self, what: str, base: type, kinds: Sequence[str], option_names: Callable[[type], list[str]]):
        super().__init__()
        self.what, self.base, self.kinds, self.option_names = what, base, tuple(kinds), option_names

    def register(self, name: str, cls: type, default: bool = False, **preset) -> None:
        if name in self:
            raise ValueError(f"{self.what} {name!r} is already registered")
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"register({name!r}, ...): {cls!r} is not a {self.base.__name__} subclass")
        if cls.kind not in self.kinds:
            raise ValueError(f"register({name!r}, ...): {cls.__name__}.kind={cls.kind!r}; choose one of {self.kinds}")
        unknown = sorted(set(preset) - set(self.option_names(cls)))
        if unknown:
            raise ValueError(f"register({name!r}, ...): {cls.__name__} has no options {unknown}; it takes "
                             f"{self.option_names(cls)}")
        self[name] = Entry(cls, dict(preset), bool(default))

    def unregister(self, name: str) -> None:
        self.pop(name, None)

    def names(self, kind: str | None = None) -> list[str]:
        """Every registered name (of ``kind``, if given), in registration order."""
        return [n for n, e in self.items() if kind is None or e.kind == kind]

    def defaults(self, kind: str | None = None) -> list[str]:
        """The names a run uses when it names none (of ``kind``, if given)."""
        return [n for n in self.names(kind) if self[n].default]

    def entry(self, name: str) -> Entry:
        if name not in self:
            raise ValueError(f"unknown {self.what} {name!r}; choose from {self.names()}")
        return self[name]

"""The method registry: a name (what specs, the command line and tables use) -> a class and its preset.

Presets and ablations are data: "CLIP-OS w/o PUC" is the CLIPOS class with ``puc_k=1``, not a renamed instance.
A new method plugs in with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..clipos.prompts import PromptConfig
from .base import Method
from .prompt import CLIPOS, CoOp, LoCoOp
from .zeroshot import GLMCM, MCM


@dataclass(frozen=True)
class Entry:
    """One registered method: its class, the parameters its name stands for, and whether it trains on shots."""

    cls: type
    preset: dict = field(default_factory=dict)
    few_shot: bool = False


REGISTRY: dict[str, Entry] = {}


def register(name: str, cls: type, few_shot: bool, **preset) -> None:
    """Make ``name`` buildable by :func:`build_method`; few-shot classes take ``prompt`` and ``seed``."""
    if name in REGISTRY:
        raise ValueError(f"method {name!r} is already registered")
    REGISTRY[name] = Entry(cls, dict(preset), few_shot)


register("MCM", MCM, few_shot=False)
register("GL-MCM", GLMCM, few_shot=False)
register("CoOp", CoOp, few_shot=True)
register("LoCoOp", LoCoOp, few_shot=True)
register("CLIP-OS", CLIPOS, few_shot=True)
# ablations: each switches off one CLIP-OS stage
register("CLIP-OS w/o PUC", CLIPOS, few_shot=True, puc_k=1)
register("CLIP-OS w/o discrepancy", CLIPOS, few_shot=True, rule="topk")
register("CLIP-OS w/o synthesis", CLIPOS, few_shot=True, synthesis=False)
register("CLIP-OS w/o unknown", CLIPOS, few_shot=True, unknown=False)


def methods() -> list[str]:
    """Every registered name, in registration order."""
    return list(REGISTRY)


def build_method(name: str, seed: int = 0, prompt: PromptConfig | None = None, **options) -> Method:
    """A fresh, unfitted method by its registry name; ``options`` override its preset and defaults."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {methods()}")
    entry = REGISTRY[name]
    params = {**entry.preset, **options}
    if entry.few_shot:
        params.update(prompt=prompt, seed=seed)
    try:
        return entry.cls(**params)
    except TypeError as err:
        raise ValueError(f"method {name!r} does not take these options: {sorted(options)} ({err})") from err


def is_few_shot(name: str) -> bool:
    return name in REGISTRY and REGISTRY[name].few_shot

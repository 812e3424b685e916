"""The method registry: a name (what specs, the command line and tables use) -> a class and its preset.

Presets and ablations are data: "CLIP-OS w/o PUC" is the CLIPOS class with ``puc_k=1``, not a renamed instance.
Everything else reads the registry: the runner (kinds, score names, defaults), the command line's help, the
suite tables and the public API. A new method is its own module plus one :func:`register` line
(``docs/contract.md``).
"""

from __future__ import annotations

from ..clipos.prompts import PromptConfig
from ..registry import Entry, Registry
from .adaneg import AdaNeg
from .base import KINDS, Method
from .clipn import CLIPN
from .csp import CSP
from .fa import FA
from .gallop import GalLoP
from .neglabel import NegLabel
from .prompt import CLIPOS, CoOp, LoCoOp
from .zeroshot import GLMCM, MCM

REGISTRY = Registry("method", Method, KINDS, lambda cls: cls.option_names())


def register(name: str, cls: type, default: bool = False, **preset) -> None:
    """Make ``name`` buildable by :func:`build_method`; ``default=True`` puts it in runs that name no methods.

    ``cls`` follows the contract of :class:`~clipos_lab.methods.base.Method`; ``preset`` are options of its
    ``__init__`` (checked here, so a typo fails at import, not in the middle of a run).
    """
    REGISTRY.register(name, cls, default, **preset)


def unregister(name: str) -> None:
    """Remove ``name`` (tests and notebooks that register a method of their own clean up with it)."""
    REGISTRY.unregister(name)


register("MCM", MCM, default=True)
register("GL-MCM", GLMCM, default=True)
register("CLIPN", CLIPN)  # zero-shot; needs a no-text encoder (shipped for the pocket model): ask with --methods
register("CoOp", CoOp, default=True)
register("LoCoOp", LoCoOp, default=True)
register("CLIP-OS", CLIPOS, default=True)
# ablations: each switches off one CLIP-OS stage
register("CLIP-OS w/o PUC", CLIPOS, puc_k=1)
register("CLIP-OS w/o discrepancy", CLIPOS, rule="topk")
register("CLIP-OS w/o synthesis", CLIPOS, synthesis=False)
register("CLIP-OS w/o unknown", CLIPOS, unknown=False)
# the field's newer methods (docs/baselines.md); not in default runs: the negative-label ones encode ~10^4-10^5
# candidate words per fit
register("NegLabel", NegLabel)
register("CSP", CSP)
register("AdaNeg", AdaNeg)  # test-time (transductive)
register("FA", FA)
register("GalLoP", GalLoP)


def methods(kind: str | None = None) -> list[str]:
    """Every registered name (of ``kind``, if given), in registration order."""
    return REGISTRY.names(kind)


def default_methods(kind: str | None = None) -> list[str]:
    """The methods a run uses when it names none (of ``kind``, if given)."""
    return REGISTRY.defaults(kind)


def entry(name: str) -> Entry:
    return REGISTRY.entry(name)


def kind_of(name: str) -> str:
    return entry(name).kind


def is_few_shot(name: str) -> bool:
    return name in REGISTRY and REGISTRY[name].kind == "few-shot"


def score_names_of(name: str, **options) -> tuple[str, ...]:
    """The scores ``name`` can give with ``options`` (some depend on options, e.g. ``unknown=False``)."""
    return tuple(build_method(name, **options).score_names)


def all_score_names() -> list[str]:
    """Every score any registered method gives, in first-seen order (the command line's help, suite tables)."""
    names: dict[str, None] = {}
    for name in REGISTRY:
        names.update(dict.fromkeys(score_names_of(name)))
    return list(names)


def class_named(class_name: str) -> type | None:
    """The registered class called ``class_name`` (the public API exposes every method class by name)."""
    return next((e.cls for e in REGISTRY.values() if e.cls.__name__ == class_name), None)


def build_method(name: str, seed: int = 0, prompt: PromptConfig | dict | None = None, **options) -> Method:
    """A fresh, unfitted method by its registry name; ``options`` override its preset and defaults.

    Methods that learn (few-shot) and test-time methods take ``seed``; those with a ``prompt`` option take the
    prompt-learning config (a :class:`PromptConfig` or its dict, as ``run.json`` stores it).
    """
    e = entry(name)
    params = {**e.preset, **options}
    takes = e.cls.option_names()
    unknown = sorted(set(params) - set(takes))
    if unknown:
        raise ValueError(f"method {name!r} does not take the options {unknown}; it takes {takes}")
    if "seed" in takes:
        params["seed"] = seed
    if "prompt" in takes and (prompt is not None or "prompt" not in params):
        params["prompt"] = PromptConfig(**prompt) if isinstance(prompt, dict) else prompt
    try:
        return e.cls(**params)
    except TypeError as err:
        raise ValueError(f"method {name!r} does not take these options: {sorted(options)} ({err})") from err

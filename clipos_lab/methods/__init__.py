"""Methods behind one interface (``fit`` / ``score`` / ``predict``), and a registry by name.

Names used by benchmark specs and the command line; the ablations switch off one CLIP-OS stage each.
"""

from __future__ import annotations

from ..clipos.prompts import PromptConfig
from .base import Method, NotFittedError
from .clipn import CLIPN
from .prompt import CLIPOS, CoOp, LoCoOp, PromptMethod
from .zeroshot import GLMCM, MCM

ZERO_SHOT = {"MCM": MCM, "GL-MCM": GLMCM}
NO_BRANCH = {"CLIPN": CLIPN}  # zero-shot, but needs a CLIPN no-text encoder (shipped for the pocket model)
FEW_SHOT = {"CoOp": CoOp, "LoCoOp": LoCoOp, "CLIP-OS": CLIPOS}
ABLATIONS = {
    "CLIP-OS w/o PUC": {"puc_k": 1},
    "CLIP-OS w/o discrepancy": {"rule": "topk"},
    "CLIP-OS w/o synthesis": {"synthesis": False},
    "CLIP-OS w/o unknown": {"unknown": False},
}
METHODS = [*ZERO_SHOT, *NO_BRANCH, *FEW_SHOT, *ABLATIONS]


def build_method(name: str, seed: int = 0, prompt: PromptConfig | None = None, **options) -> Method:
    """A fresh, unfitted method by its registry name; ``options`` override its defaults."""
    if name in ZERO_SHOT or name in NO_BRANCH:
        return {**ZERO_SHOT, **NO_BRANCH}[name](**options)
    if name in FEW_SHOT:
        return FEW_SHOT[name](prompt=prompt, seed=seed, **options)
    if name in ABLATIONS:
        method = CLIPOS(prompt=prompt, seed=seed, **{**ABLATIONS[name], **options})
        method.name = name
        return method
    raise ValueError(f"unknown method {name!r}; choose from {METHODS}")


def is_few_shot(name: str) -> bool:
    return name in FEW_SHOT or name in ABLATIONS


__all__ = ["Method", "NotFittedError", "MCM", "GLMCM", "CoOp", "LoCoOp", "CLIPOS", "PromptMethod",
           "CLIPN", "build_method", "is_few_shot", "METHODS", "ZERO_SHOT", "NO_BRANCH", "FEW_SHOT", "ABLATIONS"]

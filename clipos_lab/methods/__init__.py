"""Methods behind one interface (``fit`` / ``score`` / ``predict``), built by name from a registry.

* :mod:`.base`: the interface (scikit-learn-style: parameters in ``__init__``, checks in ``fit``, fitted state
  ending in ``_``);
* :mod:`.zeroshot`: MCM and GL-MCM (class names only);
* :mod:`.prompt`: CoOp, LoCoOp and CLIP-OS (prompt learning on few-shot features);
* :mod:`.registry`: names -> class + preset, ablations included.
"""

from __future__ import annotations

from .base import Method, NotFittedError
from .prompt import CLIPOS, CoOp, LoCoOp, PromptMethod
from .registry import REGISTRY, build_method, is_few_shot, methods, register
from .zeroshot import GLMCM, MCM

METHODS = methods()  # the names registered at import time (see registry.methods() for later additions)
ZERO_SHOT = [n for n in METHODS if not REGISTRY[n].few_shot]
FEW_SHOT = ["CoOp", "LoCoOp", "CLIP-OS"]
ABLATIONS = [n for n in METHODS if n.startswith("CLIP-OS w/o")]

__all__ = ["ABLATIONS", "CLIPOS", "FEW_SHOT", "GLMCM", "MCM", "METHODS", "REGISTRY", "ZERO_SHOT", "CoOp", "LoCoOp",
           "Method", "NotFittedError", "PromptMethod", "build_method", "is_few_shot", "methods", "register"]

"""Methods behind one contract (``docs/contract.md``), built by name from a registry.

* :mod:`.base`: the contract (name, kind, score names, options; ``fit`` / ``score`` / ``predict``; ``save`` /
  ``load`` for learned methods);
* :mod:`.text`: class embeddings from prompt templates; :mod:`.cosine`: MCM / GL-MCM / 1 - p(unknown) scoring;
* :mod:`.zeroshot`: MCM and GL-MCM (class names only);
* :mod:`.prompt`: CoOp, LoCoOp and CLIP-OS (prompt learning on few-shot features);
* :mod:`.clipn`: CLIPN (class names only, plus a CLIPN no-text encoder; ATD and CTW);
* :mod:`.registry`: names -> class + preset, ablations included.
"""

from __future__ import annotations

from .base import KINDS, Method, NotFittedError, main_score
from .clipn import CLIPN
from .cosine import CosineMethod, at_temperature
from .prompt import CLIPOS, CoOp, LoCoOp, PromptMethod
from .registry import (
                       REGISTRY,
                       all_score_names,
                       build_method,
                       default_methods,
                       is_few_shot,
                       kind_of,
                       methods,
                       register,
                       score_names_of,
                       unregister,
)
from .zeroshot import GLMCM, MCM

__all__ = ["CLIPN", "CLIPOS", "GLMCM", "KINDS", "MCM", "REGISTRY", "CoOp", "CosineMethod", "LoCoOp", "Method",
           "NotFittedError", "PromptMethod", "all_score_names", "at_temperature", "build_method", "default_methods",
           "is_few_shot", "kind_of", "main_score", "methods", "register", "score_names_of", "unregister"]

"""CSP's conjugated semantic pool (Chen et al., NeurIPS 2024): the candidate texts, as pure functions.

Reference: ``mmcls/models/classifiers/multi_modal.py`` and ``class_names.py`` of MengyuanChen21/NeurIPS2024-CSP
(commit 3a7bdabe). CSP keeps NegLabel's mining and score and changes the candidates:

* each **adjective** becomes a *conjugated* phrase ``"<adj> <superclass word>"``: one superclass template drawn
  per adjective (``random.seed(seed)``, then ``random.choice`` over :data:`CSP_TEMPLATES` for each adjective in
  order), then embedded as the average of :data:`ADJ_TEMPLATES` over that phrase;
* **nouns** and the **ID labels** are embedded as the average of the eight :data:`NOUN_TEMPLATES`
  (raw features averaged, then normalised);
* four lexicographer files are left out (:data:`EXCLUDED_FILES`), and a candidate whose largest similarity to
  an ID label is above 0.95 is never mined (``exclude_above``).
"""

from __future__ import annotations

import random
from typing import Sequence

NOUN_TEMPLATES = ("a close-up photo of the nice {}.", "a photo with the nice {}.", "a good photo with the nice {}.",
                  "a photo of the nice {}.", "{}", "the {}", "the good {}", "the nice {}")
CSP_TEMPLATES = ("{} environment", "{} space", "{} object", "{} scene", "{} place", "{} item", "{} area", "{} view",
                 "{} thing", "{} pattern", "{} structure", "{} landscape", "{} vista", "{} creature")
ADJ_TEMPLATES = ("{}", "a nice photo of {}", "a good photo of {}", "a close-up photo of {}")
# the reference's txt_exclude, plus the two files its (NegLabel's) word lists do not have
EXCLUDED_FILES = ("noun.person", "noun.quantity", "noun.group", "adj.pert", "noun.animal", "noun.food")
MAX_SIMILARITY = 0.95


def conjugate(adjectives: Sequence[str], templates: Sequence[str] = CSP_TEMPLATES, seed: int = 0) -> list[str]:
    """One superclass phrase per adjective, drawn as the reference draws it (Python's ``random`` at ``seed``)."""
    rng = random.Random(seed)
    return [rng.choice(list(templates)).format(adj) for adj in adjectives]

"""Zero-shot text prompts: is this patch (this image) more like a "flawless {object}" or a "damaged {object}"?

WinCLIP's compositional prompt ensemble (Jeong et al., CVPR 2023): state words for the normal and the abnormal
state, each put into many photo templates, are encoded and averaged into one normal and one abnormal text
embedding per object. A patch's anomaly score is the softmax probability of "abnormal" between the two, at the
model's own logit scale; an image's score is that of its global embedding (``image_score="global"``) or of its
patches. The state words and templates below are WinCLIP's published lists (abridged).

Patches are compared with text through the value-value (CLIP Surgery) tokens by default: plain last-layer
patch tokens of CLIP are poorly aligned with text. It needs a backbone that knows these words: on the pocket
model, whose captions never say "damaged", expect chance-level results; pocket v2's captions say "an intact X."
and "a damaged X.", so ask it in those words (``normal_states``, ``abnormal_states``, ``templates``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..methods.base import NotFittedError
from .base import IMAGE_SCORES, AnomalyMethod, image_scores

NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage")
ABNORMAL_STATES = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES = ("a cropped photo of the {}.", "a close-up photo of a {}.", "a bright photo of a {}.",
             "a dark photo of the {}.", "a blurry photo of a {}.", "a photo of a {}.", "a photo of the small {}.",
             "a photo of the large {}.", "a photo of the {} for visual inspection.",
             "a photo of a {} for anomaly detection.")


def state_prompts(obj: str, normal_states: Sequence[str] = NORMAL_STATES,
                  abnormal_states: Sequence[str] = ABNORMAL_STATES,
                  templates: Sequence[str] = TEMPLATES) -> tuple[list[str], list[str]]:
    """Every normal and every abnormal prompt of ``obj`` (state word x template)."""
    fill = lambda states: [t.format(s.format(obj)) for s in states for t in templates]  # noqa: E731
    return fill(normal_states), fill(abnormal_states)


def _check_words(values, name: str) -> tuple[str, ...]:
    if isinstance(values, str) or not values or any(not isinstance(v, str) or v.count("{}") != 1 for v in values):
        raise ValueError(f"{name}={values!r}: give a list of phrases, each with one '{{}}' for the word")
    return tuple(values)


class StatePrompts(AnomalyMethod):
    """Zero-shot normal / abnormal state-prompt ensembles; ``tokens``: ``"surgery"`` or a layer number."""

    kind = "zero-shot"

    def __init__(self, tokens: str | int = "surgery", sigma: float = 4.0, image_score: str = "global",
                 normal_states: Sequence[str] = NORMAL_STATES, abnormal_states: Sequence[str] = ABNORMAL_STATES,
                 templates: Sequence[str] = TEMPLATES):
        super().__init__(sigma=sigma, image_score="max")
        # the word lists are WinCLIP's by default; a model that learned other state words (pocket v2's captions
        # say "an intact X." / "a damaged X.") can be asked in its own words (docs/pocket2.md)
        self.normal_states = _check_words(normal_states, "normal_states")
        self.abnormal_states = _check_words(abnormal_states, "abnormal_states")
        self.templates = _check_words(templates, "templates")
        if image_score not in IMAGE_SCORES + ("global",):
            raise ValueError(f"image_score={image_score!r}: choose from {IMAGE_SCORES + ('global',)}")
        self.image_score, self.token_layer = image_score, tokens
        self.layers = (tokens,) if tokens != "surgery" else ()
        self.text: torch.Tensor | None = None
        self.scale = 100.0

    def fit(self, normal=None, backbone=None, category: str = "") -> "StatePrompts":
        if backbone is None or not category:
            raise ValueError("StatePrompts needs the backbone (its text tower) and the object's name (category)")
        obj = category.replace("_", " ")
        normal_texts, abnormal_texts = state_prompts(obj, self.normal_states, self.abnormal_states, self.templates)
        pooled = [F.normalize(backbone.encode_text(t).mean(0), dim=-1) for t in (normal_texts, abnormal_texts)]
        self.text, self.scale = torch.stack(pooled), backbone.logit_scale
        return self

    def _abnormal_probability(self, features: torch.Tensor) -> torch.Tensor:
        if self.text is None:
            raise NotFittedError("StatePrompts.score before fit: fit it with the backbone and the object's name")
        logits = self.scale * F.normalize(features.float(), dim=-1) @ self.text.T
        return logits.softmax(-1)[..., 1]

    def patch_scores(self, test) -> torch.Tensor:
        return self._abnormal_probability(test.tokens(self.token_layer))

    def image_scores(self, test, patches: torch.Tensor) -> np.ndarray:
        if self.image_score == "global":
            return self._abnormal_probability(test.global_).numpy()
        return image_scores(patches, self.image_score)

    def options(self) -> dict:
        return {"tokens": self.token_layer, "sigma": self.sigma, "image_score": self.image_score,
                "normal_states": list(self.normal_states), "abnormal_states": list(self.abnormal_states),
                "templates": list(self.templates)}

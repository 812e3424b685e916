"""CLIPN's two OOD scores from yes and no class embeddings; higher = more in-distribution for both.

With normalised image features ``f``, yes class embeddings ``fc_yes`` and no class embeddings ``fc_no``:
``logits_yes = s f fc_yes^T``, ``logits_no = s f fc_no^T`` and, per class, the probability that the image *is*
of class c rather than *not* of it: ``p_yes,c = sigmoid(s (cos_yes,c - cos_no,c))`` (the two-way softmax of
training). CLIPN uses ``s = 100``, its model's logit scale.

* **CTW** ("competing to win"): ``p_yes`` at the class the yes branch picks, ``argmax_c logits_yes``.
* **ATD** ("agreeing to differ"): ``sum_c p_yes,c softmax(logits_yes)_c``, the yes-probability averaged over the
  classification distribution. CLIPN's paper writes ATD as 1 - p(OOD) with
  ``p(OOD) = 1 - sum_c p_yes,c p_c``; it is the same ranking.
"""

from __future__ import annotations

import torch

from ..scores import cosine_logits


def p_yes(features: torch.Tensor, text_yes: torch.Tensor, text_no: torch.Tensor, scale: float) -> torch.Tensor:
    """``(..., C)``: sigmoid of ``scale`` x (cos to each class's yes embedding - cos to its no embedding)."""
    return torch.sigmoid(cosine_logits(features, text_yes, scale) - cosine_logits(features, text_no, scale))


def ctw(features: torch.Tensor, text_yes: torch.Tensor, text_no: torch.Tensor, scale: float) -> torch.Tensor:
    """Competing to win: p_yes of the predicted class."""
    pick = cosine_logits(features, text_yes, scale).argmax(-1, keepdim=True)
    return p_yes(features, text_yes, text_no, scale).gather(-1, pick).squeeze(-1)


def atd(features: torch.Tensor, text_yes: torch.Tensor, text_no: torch.Tensor, scale: float) -> torch.Tensor:
    """Agreeing to differ: p_yes averaged over the yes branch's class distribution."""
    probs = cosine_logits(features, text_yes, scale).softmax(-1)
    return (p_yes(features, text_yes, text_no, scale) * probs).sum(-1)

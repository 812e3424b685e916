"""CLIPN's two training losses, and the targets that say which image-caption pairs are true.

* **Image-text binary-opposite loss (ITBO).** For image i and caption j the yes and no towers compete:
  ``p_ij = softmax([s cos(f_i, yes_j), s cos(f_i, no_j)])``. A true pair should be claimed by the yes tower
  (``-log p_ij[yes]``), a false one by the no tower (``-log p_ij[no]``); each term is averaged over its own count
  of pairs, so a batch's many false pairs do not drown its few true ones.
* **Text semantic-opposite loss (TSO).** ``2 - ||yes_j - no_j||`` over normalised embeddings: a caption's
  no-embedding is pushed away from its yes-embedding (at most distance 2, the antipode).

Which pairs are true is the one place where this project departs from the reference code on purpose. CLIPN's
code takes the diagonal of a batch as the only true pairs (:func:`own_caption_targets`), although another caption
in the batch ("a photo of a star") may well be true of an image (a red star). Pocket-world captions carry the
attribute constraints they state, so :func:`exact_targets` marks every caption whose constraints an image
satisfies as true, with the same rule the pocket model's multi-positive loss uses (``world.matches``; for world v2
``world2.matches``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..pocket import world as W


def yes_no_margin(image: torch.Tensor, yes: torch.Tensor, no: torch.Tensor, scale: float) -> torch.Tensor:
    """``s (cos_yes - cos_no)`` ``(B_img, B_txt)``: the logit of p[yes] in the two-way softmax of ITBO."""
    image, yes, no = (F.normalize(t.float(), dim=-1) for t in (image, yes, no))
    return scale * (image @ yes.T - image @ no.T)


def itbo_loss(image: torch.Tensor, yes: torch.Tensor, no: torch.Tensor, scale: float,
              positives: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(yes term, no term) of ITBO; ``positives`` ``(B_img, B_txt)`` bool marks true pairs (default: diagonal).

    ``-log p[yes] = softplus(-margin)`` and ``-log p[no] = softplus(margin)``, computed stably. A batch without
    false (or true) pairs contributes 0 for that term.
    """
    margin = yes_no_margin(image, yes, no, scale)
    if positives is None:
        if margin.shape[0] != margin.shape[1]:
            raise ValueError(f"default (diagonal) targets need as many captions as images, got {tuple(margin.shape)}")
        positives = torch.eye(margin.shape[0], dtype=torch.bool, device=margin.device)
    positives = positives.to(device=margin.device, dtype=torch.bool)
    if positives.shape != margin.shape:
        raise ValueError(f"positives {tuple(positives.shape)} do not match (images, captions) {tuple(margin.shape)}")
    zero = margin.new_zeros(())
    loss_yes = F.softplus(-margin[positives]).mean() if positives.any() else zero
    loss_no = F.softplus(margin[~positives]).mean() if (~positives).any() else zero
    return loss_yes, loss_no


def tso_loss(yes: torch.Tensor, no: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Mean of ``2 - ||yes - no||`` (both normalised); ``eps`` inside the square root keeps the gradient finite
    where the towers still agree (at initialisation they are copies, distance 0), as in CLIPN's code."""
    yes, no = F.normalize(yes.float(), dim=-1), F.normalize(no.float(), dim=-1)
    squared = (2 - 2 * (yes * no).sum(-1)).clamp(min=0) + eps
    return (2 - squared.sqrt()).mean()


def exact_targets(scenes: Sequence, constraints: Sequence[dict],
                  matches: Callable[[dict, object], bool] = W.matches) -> torch.Tensor:
    """``(B_img, B_txt)`` bool: caption j is true of image i when the scene satisfies every constraint it states
    (``matches``: the scenes' world's rule, v1's ``world.matches`` or v2's ``world2.matches``)."""
    return torch.tensor([[matches(c, s) for c in constraints] for s in scenes], dtype=torch.bool).reshape(
        len(scenes), len(constraints))


def own_caption_targets(image_captions: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
    """The reference's targets: only the caption drawn for an image is true of it (the batch diagonal, here over
    distinct caption texts, so two images drawn with the same caption both claim it)."""
    return torch.tensor([[c == t for t in texts] for c in image_captions], dtype=torch.bool).reshape(
        len(image_captions), len(texts))

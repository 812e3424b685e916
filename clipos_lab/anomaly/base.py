"""The one interface every anomaly method has: fit on normal tokens (or nothing), then score test tokens.

``score`` returns :class:`AnomalyScores`: one score per image (higher = more anomalous) and a map per image at
the resolution the model saw it (the backbone's input size; ground-truth masks are brought to the same size by
:func:`clipos_lab.anomaly.masks.fit_mask`). Patch scores become maps the same way for every method:
bilinear upsampling of the patch grid, then a Gaussian blur (as in PatchCore and WinCLIP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

IMAGE_SCORES = ("max", "top10")


@dataclass
class AnomalyScores:
    """``image`` ``(N,)`` and ``maps`` ``(N, S, S)`` float32; higher = more anomalous."""

    image: np.ndarray
    maps: np.ndarray


def patch_maps(patch_scores: torch.Tensor, grid: tuple[int, int], size: int, sigma: float) -> np.ndarray:
    """``(N, P)`` patch scores to ``(N, size, size)`` maps: bilinear upsampling, then a blur of ``sigma`` px."""
    n = patch_scores.shape[0]
    grid_maps = patch_scores.float().reshape(n, 1, *grid)
    maps = F.interpolate(grid_maps, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    if sigma > 0:
        maps = np.stack([gaussian_filter(m, sigma=sigma) for m in maps])
    return maps.astype(np.float32)


def image_scores(patch_scores: torch.Tensor, how: str) -> np.ndarray:
    """An image score from its patch scores: the largest (``max``) or the mean of the top 10% (``top10``)."""
    if how == "max":
        return patch_scores.max(dim=1).values.numpy()
    if how == "top10":
        k = max(1, int(round(0.1 * patch_scores.shape[1])))
        return patch_scores.topk(k, dim=1).values.mean(1).numpy()
    raise ValueError(f"image_score={how!r}: choose from {IMAGE_SCORES}")


class AnomalyMethod:
    """Base class: ``fit(normal, backbone, category)`` then ``score(test) -> AnomalyScores``.

    ``kind = "zero-shot"`` methods ignore ``normal`` (the runner passes ``None``); ``layers`` names the token layers
    the method reads, so the runner encodes just those. ``sigma`` is the map blur in pixels at 224 px input
    (scaled to the backbone's input size).
    """

    kind = "few-shot"  # "zero-shot": fitted without normal images (the runner passes None)
    needs_images = False  # True: score / fit get WithImages(bank, dataset) (methods that re-encode image parts)
    layers: tuple = (-1,)

    def __init__(self, sigma: float = 4.0, image_score: str = "max"):
        if image_score not in IMAGE_SCORES:
            raise ValueError(f"image_score={image_score!r}: choose from {IMAGE_SCORES}")
        if sigma < 0:
            raise ValueError(f"sigma={sigma} must be 0 (no blur) or positive")
        self.sigma, self.image_score = float(sigma), image_score

    def fit(self, normal, backbone=None, category: str = "") -> "AnomalyMethod":
        return self

    def patch_scores(self, test) -> torch.Tensor:
        """``(N, P)`` patch anomaly scores; subclasses implement it."""
        raise NotImplementedError

    def score(self, test) -> AnomalyScores:
        patches = self.patch_scores(test)
        size = test.image_size
        maps = patch_maps(patches, test.grid, size, self.sigma * size / 224)
        return AnomalyScores(self.image_scores(test, patches), maps)

    def image_scores(self, test, patches: torch.Tensor) -> np.ndarray:
        return image_scores(patches, self.image_score)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"

    @property
    def zero_shot(self) -> bool:
        return self.kind == "zero-shot"

    def get_params(self) -> dict:
        """The options (the OOD methods' name for :meth:`options`)."""
        return self.options()

    def options(self) -> dict:
        return {"sigma": self.sigma, "image_score": self.image_score}


def grid_oracle(masks: np.ndarray, grid: tuple[int, int], sigma: float = 0.0) -> AnomalyScores:
    """The best a patch-level method can do on ``grid``: each patch scored by the defect fraction it covers,
    then turned into maps exactly as every method's are. Its pixel metrics measure how much the patch grid
    alone limits pixel accuracy (a perfect method at pixel level scores 1)."""
    masks = np.asarray(masks, dtype=np.float32)
    n, size = masks.shape[0], masks.shape[-1]
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(masks)[:, None], grid)[:, 0].reshape(n, -1)
    return AnomalyScores(pooled.max(1).values.numpy(), patch_maps(pooled, grid, size, sigma * size / 224))

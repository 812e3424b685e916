"""WinCLIP's multi-scale windows (zero-shot) and WinCLIP+ (few-shot), after Jeong et al., CVPR 2023.

A window is a ``k x k`` block of patches. Its embedding is what CLIP makes of that part of the image alone: the
class token and the window's patch tokens (with their position embeddings) go through the whole image tower,
the other patches masked out, and the class token is pooled and projected like a global embedding. Every window
position (stride one patch) at each scale in ``scales`` is encoded.

* **WinCLIP** (zero-shot): each window is scored like an image by the state prompts (softmax probability of the
  abnormal text); a patch's score at one scale is the harmonic mean of the scores of the windows that cover it;
  the scales and the whole image's score are combined by a harmonic mean. Image score: the whole image's.
* **WinCLIP+** (few-shot): a memory of the normal shots' window embeddings per scale and of their patch tokens;
  a window (patch) scores ``(1 - max cosine similarity to its memory) / 2``, windows are brought to patches by the
  harmonic mean, scales (and the patch level) are averaged; the map is the mean of this and WinCLIP's map, the
  image score the mean of WinCLIP's image score and the largest few-shot patch score.

Window embeddings need the pictures, not cached tokens: the runner hands methods with ``needs_images`` the
test set's dataset (:class:`WithImages`). docs/anomaly.md lists the differences from WinCLIP's paper.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..backbone import forward_windows, window_index
from ..methods.base import NotFittedError
from .base import AnomalyScores, patch_maps
from .prompts import StatePrompts

_CACHE: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()  # window embeddings of recent datasets (per process)
_CACHE_SIZE = 8


class WithImages:
    """A token bank together with the dataset its rows come from, in the same order."""

    def __init__(self, bank, dataset):
        if [s.id for s in dataset.samples] != list(bank.ids):
            raise ValueError("WithImages: the dataset's samples must be the token bank's rows, in order")
        self.bank, self.dataset = bank, dataset

    def __getattr__(self, name):
        return getattr(self.bank, name)

    def __len__(self) -> int:
        return len(self.bank)


@torch.no_grad()
def encode_windows(images: torch.Tensor, backbone, k: int, batch_windows: int = 64) -> torch.Tensor:
    """``(N, W, D)`` embeddings (unit length) of every ``k x k`` window of preprocessed ``images`` ``(N, 3, S, S)``."""
    visual = backbone.visual
    x = visual._embeds(images.to(backbone.device, dtype=visual.conv1.weight.dtype))  # (N, 1 + P, width)
    index = window_index(backbone.grid, k).to(x.device)
    out = [forward_windows(visual, x, index[start: start + batch_windows]).float()
           for start in range(0, len(index), batch_windows)]
    return F.normalize(torch.cat(out, dim=1), dim=-1).cpu()


def clear_window_cache() -> None:
    """Forget the window embeddings kept in memory (e.g. to time a run that pays for its own)."""
    _CACHE.clear()


def dataset_windows(dataset, backbone, k: int, batch_size: int = 32) -> torch.Tensor:
    """Window embeddings of every image of ``dataset`` (kept in a small in-process cache)."""
    key = (backbone.name, backbone.weights_id, dataset.name, tuple(s.id for s in dataset.samples), k)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    chunks = []
    for start in range(0, len(dataset), batch_size):
        batch = torch.stack([backbone.preprocess(dataset.load(i))
                             for i in range(start, min(start + batch_size, len(dataset)))])
        chunks.append(encode_windows(batch, backbone, k))
    _CACHE[key] = torch.cat(chunks)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return _CACHE[key]


def harmonic_to_patches(window_scores: torch.Tensor, grid: tuple[int, int], k: int) -> torch.Tensor:
    """``(N, W)`` window scores to ``(N, P)`` patch scores: the harmonic mean over the windows covering a patch."""
    index = window_index(grid, k)
    n, p = len(window_scores), grid[0] * grid[1]
    inverse = torch.zeros(n, p, dtype=torch.float64)
    count = torch.zeros(p, dtype=torch.float64)
    inv = 1.0 / window_scores.double().clamp_min(1e-12)
    for w, patches in enumerate(index):
        inverse[:, patches] += inv[:, w: w + 1]
        count[patches] += 1
    return (count / inverse).float()


def _images_of(bank, what: str):
    if not isinstance(bank, WithImages):
        raise ValueError(f"WinCLIP needs the {what} images themselves (window embeddings): pass "
                         "WithImages(token_bank, dataset), as the anomaly runner does")
    return bank.dataset


class WinCLIP(StatePrompts):
    """Zero-shot WinCLIP: state prompts on multi-scale windows (``scales``, in patches) and the whole image."""

    needs_images = True

    def __init__(self, scales: Sequence[int] = (2, 3), sigma: float = 4.0, temperature: float | None = 0.07):
        super().__init__(tokens=-1, sigma=sigma, image_score="global")
        if not scales or any(int(k) < 1 for k in scales):
            raise ValueError(f"scales={scales!r}: give window sizes in patches, e.g. [2, 3]")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature={temperature}: give a positive number, or null for the model's own scale")
        self.scales = tuple(int(k) for k in scales)
        self.temperature = None if temperature is None else float(temperature)
        self.backbone = None

    def fit(self, normal=None, backbone=None, category: str = "") -> "WinCLIP":
        """Text embeddings of the state prompts; softmax at 1 / ``temperature`` (WinCLIP's 0.07, CLIP's initial
        value) or, with ``temperature=None``, at the model's learned logit scale."""
        super().fit(normal, backbone, category)
        self.backbone = backbone
        if self.temperature is not None:
            self.scale = 1.0 / self.temperature
        return self

    def zero_shot_scores(self, test) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image (N,), patches (N, P))``: the harmonic mean over the whole image and every window scale."""
        dataset = _images_of(test, "test")
        image = self._abnormal_probability(test.global_)
        per_scale = [image[:, None].expand(-1, test.grid[0] * test.grid[1])]
        for k in self.scales:
            windows = self._abnormal_probability(dataset_windows(dataset, self.backbone, k))
            per_scale.append(harmonic_to_patches(windows, test.grid, k))
        stacked = torch.stack(per_scale).double().clamp_min(1e-12)
        return image, (len(per_scale) / (1.0 / stacked).sum(0)).float()

    def patch_scores(self, test) -> torch.Tensor:
        return self.zero_shot_scores(test)[1]

    def score(self, test) -> AnomalyScores:
        image, patches = self.zero_shot_scores(test)
        size = test.image_size
        return AnomalyScores(image.numpy(), patch_maps(patches, test.grid, size, self.sigma * size / 224))

    def options(self) -> dict:
        return {"scales": list(self.scales), "sigma": self.sigma, "temperature": self.temperature}


class WinCLIPPlus(WinCLIP):
    """Few-shot WinCLIP+: WinCLIP plus memories of the normal shots' windows (per scale) and patch tokens."""

    kind = "few-shot"

    def __init__(self, scales: Sequence[int] = (2, 3), sigma: float = 4.0, temperature: float | None = 0.07,
                 layer: int = -1):
        super().__init__(scales=scales, sigma=sigma, temperature=temperature)
        self.layers, self.memory = (layer,), {}

    def fit(self, normal=None, backbone=None, category: str = "") -> "WinCLIPPlus":
        if normal is None or len(normal) == 0:
            raise ValueError("WinCLIP+ needs normal images to fit (shots >= 1)")
        dataset = _images_of(normal, "normal")
        super().fit(None, backbone, category)
        self.memory = {"patches": F.normalize(normal.tokens(self.layers[0]).flatten(0, 1), dim=-1)}
        for k in self.scales:
            self.memory[k] = dataset_windows(dataset, backbone, k).flatten(0, 1)
        return self

    def few_shot_scores(self, test) -> torch.Tensor:
        """``(N, P)``: the mean over the patch level and every window scale of ``(1 - max similarity) / 2``."""
        if not self.memory:
            raise NotFittedError("WinCLIPPlus.score before fit: fit it on normal images first")
        dataset = _images_of(test, "test")
        tokens = F.normalize(test.tokens(self.layers[0]), dim=-1)
        levels = [(1 - (tokens @ self.memory["patches"].T).amax(-1)) / 2]
        for k in self.scales:
            windows = dataset_windows(dataset, self.backbone, k)
            distance = (1 - (windows @ self.memory[k].T).amax(-1)) / 2
            levels.append(harmonic_to_patches(distance, test.grid, k))
        return torch.stack(levels).mean(0)

    def score(self, test) -> AnomalyScores:
        image, zero = self.zero_shot_scores(test)
        few = self.few_shot_scores(test)
        patches = (zero + few) / 2
        size = test.image_size
        image_scores = ((image + few.amax(1)) / 2).numpy()
        return AnomalyScores(np.asarray(image_scores, dtype=np.float32),
                             patch_maps(patches, test.grid, size, self.sigma * size / 224))

    def options(self) -> dict:
        return {**super().options(), "layer": self.layers[0]}

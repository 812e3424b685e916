"""Drawn products with defects: pocket v2's anomaly-detection pictures (issue 19's defect world).

A *product* is one held-out drawing of the pack, shown the way an inspection camera shows a part: centred, at a
fixed size, barely moved (rotation within +-6 degrees, a few pixels of shift, a little brightness change), on a
plain background of its own. Defects are world v2's states (:func:`clipos_lab.pocket.world2.damage`: stained,
scratched, torn, punctured) with their exact pixel masks; what shows through a tear or a hole is the background.

Like v1's products (:mod:`.products`), every picture is a pure function of ``(seed, index)`` and the drawing, on its
own random stream (``PRODUCT2_STREAM``), so no scene of world v2 changes. A defect must be visible: a drawn defect
whose pixels change by less than ``MIN_DEFECT_CHANGE`` grey levels on average is drawn again (up to
``MAX_TRIES`` placements, deterministically), and a drawing on which none shows is refused as a product.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .pack import DrawingsPack
from .world2 import STATES, damage

PRODUCT2_STREAM = 23_001
BACKGROUNDS = np.array([[200, 190, 170], [150, 160, 170], [120, 140, 120], [180, 160, 190], [100, 110, 130],
                        [210, 210, 200], [90, 90, 90], [140, 170, 190]], dtype=np.float32)
MIN_DEFECT_CHANGE = 40.0  # mean absolute change over the defect's pixels, grey levels
MAX_TRIES = 8


def product_background(pack: DrawingsPack, record: dict) -> np.ndarray:
    """The plain background farthest (in RGB) from the drawing's mean colour: every product stands out."""
    rgba = pack.image(record).astype(np.float32)
    alpha = rgba[..., 3:] / 255.0
    mean = (rgba[..., :3] * alpha).sum((0, 1)) / max(float(alpha.sum()), 1.0)
    return BACKGROUNDS[int(np.argmax(np.linalg.norm(BACKGROUNDS - mean, axis=1)))]


def render_drawn_product(pack: DrawingsPack, record: dict, seed: int, index: int, state: str | None = None,
                         image_size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Product picture ``index`` of stream ``seed``: ``(image (S, S, 3) uint8, defect mask (S, S) bool)``."""
    if state is not None and state not in STATES:
        raise ValueError(f"unknown defect {state!r}; choose from {STATES}")
    rng = np.random.default_rng([int(seed), int(index), PRODUCT2_STREAM])
    size = int(image_size)
    background = product_background(pack, record) + rng.uniform(-6, 6)
    canvas = np.broadcast_to(background, (size, size, 3)).astype(np.float32).copy()
    sprite = Image.fromarray(pack.image(record))
    scale = 0.72 * size * rng.uniform(0.97, 1.03) / max(sprite.size)
    sprite = sprite.resize((max(2, round(sprite.width * scale)), max(2, round(sprite.height * scale))),
                           Image.BILINEAR).rotate(rng.uniform(-6, 6), resample=Image.BILINEAR, expand=True)
    rgba = np.asarray(sprite, dtype=np.float32)[:size, :size]
    rgb = (rgba[..., :3] - 128) * rng.uniform(0.95, 1.05) + 128 + rng.uniform(-8, 8)
    alpha = rgba[..., 3] / 255.0
    h, w = alpha.shape
    y = int(np.clip((size - h) // 2 + rng.integers(-3, 4), 0, size - h))
    x = int(np.clip((size - w) // 2 + rng.integers(-3, 4), 0, size - w))
    cover = np.zeros((size, size), np.float32)
    cover[y:y + h, x:x + w] = alpha
    region = canvas[y:y + h, x:x + w]
    canvas[y:y + h, x:x + w] = region * (1 - alpha[..., None]) + np.clip(rgb, 0, 255) * alpha[..., None]
    defect = np.zeros((size, size), bool)
    if state is not None:
        under = np.broadcast_to(background, (size, size, 3)).astype(np.float32)
        for _ in range(MAX_TRIES):  # the first visible placement; each try draws from the same stream
            damaged, _, region = damage(canvas, cover, state, rng, under)
            if region.any() and np.abs(damaged - canvas)[region].mean() >= MIN_DEFECT_CHANGE:
                canvas, defect = damaged, region
                break
        else:
            raise ValueError(f"no visible {state} defect on drawing {record['file']} (tried {MAX_TRIES} "
                             "placements): choose another product")
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), defect


__all__ = ["BACKGROUNDS", "MIN_DEFECT_CHANGE", "PRODUCT2_STREAM", "product_background", "render_drawn_product"]

"""Products with defects: the pocket world's anomaly-detection pictures (an MVTec-like object category per shape).

Kept apart from :class:`~clipos_lab.pocket.world.World` on purpose: products have their own random streams (tagged
``PRODUCT_STREAM``), so they change no picture of the object / background / clutter kinds. A defect's paint is
chosen to stand out from its product (``MIN_PAINT_CONTRAST``), so every defect is visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .world import COLOURS, SUPERSAMPLE, draw_shape

DEFECTS: tuple[str, ...] = ("stain", "bite", "scratch", "hole")
PRODUCT_STREAM = 7_001  # rng tag of product poses; defect placements use PRODUCT_STREAM + 1 + defect index
# per shape: (product colour, background colour, stain colour); every pair differs strongly in RGB
PRODUCT_STYLES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    "circle": (COLOURS["orange"], (200, 190, 170), (60, 40, 20)),
    "square": (COLOURS["blue"], (210, 210, 200), (230, 200, 40)),
    "triangle": (COLOURS["green"], (180, 160, 190), (80, 30, 20)),
    "star": (COLOURS["yellow"], (100, 110, 130), (70, 40, 20)),
    "heart": (COLOURS["red"], (200, 190, 170), (30, 30, 30)),
    "cross": (COLOURS["purple"], (190, 175, 140), (240, 230, 90)),
    "ring": (COLOURS["white"], (120, 140, 120), (60, 40, 20)),
    "arrow": (COLOURS["black"], (210, 210, 200), (220, 120, 40)),
    "crescent": (COLOURS["yellow"], (90, 90, 90), (60, 40, 20)),
    "hexagon": (COLOURS["green"], (210, 210, 200), (80, 30, 20)),
    "bolt": (COLOURS["orange"], (100, 110, 130), (30, 30, 30)),
    "semicircle": (COLOURS["blue"], (190, 175, 140), (230, 200, 40)),
}


@dataclass(frozen=True)
class Product:
    """One product image as drawn: pose, and the defect with its exact pixel mask (``None`` when normal)."""

    shape: str
    rotation: float
    radius: float
    box: tuple[int, int, int, int]
    defect: str | None
    defect_area: int


def render_product(seed: int, index: int, shape: str, defect: str | None = None, image_size: int = 64,
                   max_rotation: float = 10.0, size_range: tuple[float, float] = (0.62, 0.70)):
    """A product picture like an MVTec object category: ``(image uint8 (S, S, 3), mask bool (S, S), Product)``.

    The product is ``shape`` in its fixed colour on its fixed plain background (:data:`PRODUCT_STYLES`), rotated
    by at most ``max_rotation`` degrees, with a diameter of ``size_range`` of the image side, small shifts and a
    global brightness change of a few grey levels. The pose depends on ``(seed, index)`` only, so the normal
    picture and every defective version of one index show the same product: the defect is the only difference.

    Defects are drawn hard-edged (no anti-aliasing) on product pixels only, so the mask is exactly the set of
    pixels the defect changed: ``stain`` (a blob of another colour), ``bite`` (a disc bitten off the outline),
    ``scratch`` (a light line across the product, dark on a light one), ``hole`` (a disc of background inside
    the product). Each covers about a patch of the pocket model (8 x 8 pixels at 64 px) or more.
    """
    if shape not in PRODUCT_STYLES:
        raise ValueError(f"unknown product shape {shape!r}; choose from {list(PRODUCT_STYLES)}")
    if defect is not None and defect not in DEFECTS:
        raise ValueError(f"unknown defect {defect!r}; choose from {list(DEFECTS)} or None")
    if image_size < 32:
        raise ValueError(f"image_size={image_size} is too small for visible defects; use 32 or more")
    rng = np.random.default_rng([int(seed), int(index), PRODUCT_STREAM])
    size = image_size
    colour, bg, stain = (np.asarray(c, dtype=np.float32) for c in PRODUCT_STYLES[shape])
    big = size * SUPERSAMPLE
    radius = rng.uniform(*size_range) * big / 2
    shift = 0.04 * big
    centre = (big / 2 + rng.uniform(-shift, shift), big / 2 + rng.uniform(-shift, shift))
    angle = rng.uniform(-1, 1) * math.radians(max_rotation)
    light = rng.uniform(-6, 6)
    mask_img = Image.new("L", (big, big), 0)
    draw_shape(ImageDraw.Draw(mask_img), shape, centre, radius, angle)
    alpha = np.asarray(mask_img.resize((size, size), Image.BOX), dtype=np.float32)[..., None] / 255.0
    canvas = bg * (1 - alpha) + colour * alpha
    solid = alpha[..., 0] >= 0.5  # product pixels a defect may change
    ys, xs = np.nonzero(solid)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    defect_mask = np.zeros((size, size), dtype=bool)
    if defect is not None:
        drng = np.random.default_rng([int(seed), int(index), PRODUCT_STREAM + 1 + DEFECTS.index(defect)])
        defect_mask = _defect_region(defect, solid, size, drng) & solid
        paint = defect_paint(defect, colour, bg, stain)
        canvas = np.where(defect_mask[..., None], paint, canvas)
    image = np.clip(canvas + light + 0.5, 0, 255).astype(np.uint8)
    product = Product(shape, float(angle), float(radius / SUPERSAMPLE), box, defect, int(defect_mask.sum()))
    return image, defect_mask, product


MIN_PAINT_CONTRAST = 100.0  # grey levels, in the RGB channel where a defect's paint and its product differ most


def defect_paint(defect: str, colour: np.ndarray, bg: np.ndarray, stain: np.ndarray) -> np.ndarray:
    """The colour a defect is drawn in, at least :data:`MIN_PAINT_CONTRAST` away from the product's colour.

    A scratch is a light line (0.35 colour + 0.65 white), or a dark one (0.35 colour) where the light line would
    be too close to the product (a white product); stains use the style's stain colour, bites and holes the
    background. Why: a defect drawn almost in the product's own colour is invisible to every method, so its
    defect group would only measure chance. Measured over every product style and defect type (100 poses each):
    every masked pixel changes by at least 56 levels in some channel (edge pixels keep half the product), the
    median masked pixel of an image by at least 129; a test holds every style to 50 and 100.
    """
    if defect == "scratch":
        light = 0.35 * colour + 0.65 * 255.0
        paint = light if np.abs(light - colour).max() >= MIN_PAINT_CONTRAST else 0.35 * colour
    else:
        paint = {"stain": stain, "bite": bg, "hole": bg}[defect]
    if np.abs(paint - colour).max() < MIN_PAINT_CONTRAST:
        raise ValueError(f"{defect} paint {paint.round().tolist()} is within {MIN_PAINT_CONTRAST:g} grey levels of "
                         f"the product colour {colour.tolist()}: pick a style whose defects stay visible")
    return paint


def _defect_region(defect: str, solid: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The region a defect covers (before it is cut to the product), at image resolution, hard-edged."""
    from scipy.ndimage import distance_transform_edt

    inside = distance_transform_edt(solid)  # distance of each product pixel to the background
    outside = distance_transform_edt(~solid)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    def pick(candidates: np.ndarray, fallback: np.ndarray) -> tuple[float, float]:
        cy, cx = np.nonzero(candidates if candidates.any() else fallback)
        k = int(rng.integers(len(cy)))
        return float(cx[k]) + 0.5, float(cy[k]) + 0.5

    s = float(size)
    if defect == "stain":  # an ellipse of another colour, mostly inside the product
        a, b = rng.uniform(0.08, 0.12) * s, rng.uniform(0.06, 0.09) * s
        cx, cy = pick(inside >= 0.7 * b, inside == inside.max())
        t = rng.uniform(0, math.pi)
        u = (xx - cx) * math.cos(t) + (yy - cy) * math.sin(t)
        v = -(xx - cx) * math.sin(t) + (yy - cy) * math.cos(t)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if defect == "hole":  # a disc of background strictly inside the product
        r = rng.uniform(0.06, 0.085) * s
        cx, cy = pick(inside >= r + 1.5, inside == inside.max())
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
    if defect == "bite":  # a disc centred just inside the outline: a piece missing from the edge
        r = rng.uniform(0.10, 0.13) * s
        cx, cy = pick((inside >= 0.25 * r) & (inside <= 0.45 * r), solid & (outside == 0))
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
    if defect == "scratch":  # a straight line about 3 px wide (at 64 px) through a point inside the product
        half_len, half_width = rng.uniform(0.17, 0.25) * s, max(1.0, s / 42)
        cx, cy = pick(inside >= 0.15 * s, inside == inside.max())
        t = rng.uniform(0, math.pi)
        u = (xx - cx) * math.cos(t) + (yy - cy) * math.sin(t)
        v = -(xx - cx) * math.sin(t) + (yy - cy) * math.cos(t)
        return (np.abs(u) <= half_len) & (np.abs(v) <= half_width)
    raise ValueError(f"unknown defect {defect!r}")  # pragma: no cover - checked by render_product

"""The pocket world: a procedural image-caption generator that stands in for web data.

No pretrained CLIP weights reach the machines this project runs on, so the project trains its own small CLIP on
pictures it can draw itself. Every image is a pure function of ``(seed, index)``: any sample can be regenerated
on its own (random access for datasets, exact replay of training batches after a resume) and nothing has to be
stored on disk.

A scene is one of three kinds:

* ``object``: one shape of a known category, colour, size and rotation on a background (the ID / near-OOD data);
* ``background``: a background texture with no object at all (texture-OOD);
* ``clutter``: several small shapes scattered over a background (a mixed-scene OOD set).

Apart from these, :func:`render_product` draws *products* for anomaly detection: one shape in a fixed colour on
a fixed background, optionally with a defect (stain, bite, scratch, hole) and its exact pixel mask. It has its
own random streams, so it changes no image of the three scene kinds.

Every scene records what was drawn (:class:`Scene`), including each object's pixel box, so captions and
spatial claims (does a relevance map peak inside the object?) can be checked against the truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

# The version of the pictures this module draws: part of every cached feature's key (a changed picture must not
# reuse features of the old one). Bump it whenever a drawn pixel changes; tests/test_world.py holds a digest of
# sample pictures per version and fails until both are updated. (A comment or a refactor keeps the caches.)
WORLD_VERSION = "3"

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "heart", "cross",
    "ring", "arrow", "crescent", "hexagon", "bolt", "semicircle",
)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 70, 220), "yellow": (240, 220, 30),
    "orange": (245, 140, 20), "purple": (140, 40, 180), "white": (250, 250, 250), "black": (15, 15, 15),
}
BACKGROUNDS: dict[str, str] = {  # kind -> the word captions use for it
    "solid": "plain", "gradient": "gradient", "stripes": "striped",
    "checks": "checkered", "dots": "dotted", "noise": "noisy",
}
SIZES: dict[str, tuple[float, float]] = {  # name -> object diameter as a fraction of the image side
    "small": (0.32, 0.42), "medium": (0.43, 0.56), "large": (0.57, 0.72),
}
SCENES = ("object", "background", "clutter")
SUPERSAMPLE = 2  # shapes are drawn at 2x and box-filtered down, which anti-aliases their edges


@dataclass(frozen=True)
class DrawnObject:
    """One shape as drawn: its attributes and its pixel box ``(x0, y0, x1, y1)``, end-exclusive."""

    shape: str
    colour: str
    size: str
    rotation: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Scene:
    """Everything that was drawn in one image: the ground truth for captions, labels and boxes."""

    kind: str
    background: str
    objects: tuple[DrawnObject, ...] = field(default_factory=tuple)

    @property
    def shape(self) -> str | None:
        """The shape of a single-object scene (``None`` for backgrounds and clutter)."""
        return self.objects[0].shape if self.kind == "object" else None

    def attributes(self) -> dict[str, str]:
        """Attributes a caption may mention; the multi-positive loss matches captions against them."""
        attrs = {"scene": self.kind, "background": self.background}
        if self.kind == "object":
            obj = self.objects[0]
            attrs.update(shape=obj.shape, colour=obj.colour, size=obj.size)
        return attrs


# ----------------------------------------------------------------------------------------------------------------
# Shape outlines in unit coordinates (centre 0, radius about 1); drawn after rotation, scaling and translation.

def _regular_polygon(n: int, phase: float = -math.pi / 2) -> np.ndarray:
    angles = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radius = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _heart(n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)
    pts -= (pts.max(0) + pts.min(0)) / 2
    return pts / np.abs(pts).max()


_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * 0.8,
    "triangle": _regular_polygon(3) * np.array([1.0, 1.0]) + np.array([0.0, 0.2]),
    "star": _star(),
    "heart": _heart(),
    "cross": np.array([[-0.33, -1], [0.33, -1], [0.33, -0.33], [1, -0.33], [1, 0.33], [0.33, 0.33], [0.33, 1],
                       [-0.33, 1], [-0.33, 0.33], [-1, 0.33], [-1, -0.33], [-0.33, -0.33]], dtype=float),
    "arrow": np.array([[-1, -0.25], [0.1, -0.25], [0.1, -0.7], [1, 0], [0.1, 0.7], [0.1, 0.25], [-1, 0.25]],
                      dtype=float),
    "hexagon": _regular_polygon(6, phase=0.0),
    "bolt": np.array([[0.15, -1], [-0.55, 0.12], [-0.05, 0.12], [-0.2, 1], [0.55, -0.2], [0.05, -0.2],
                      [0.3, -1]], dtype=float),
}


def _transform(points: np.ndarray, centre: tuple[float, float], radius: float, angle: float) -> list[tuple]:
    c, s = math.cos(angle), math.sin(angle)
    rot = points @ np.array([[c, s], [-s, c]])
    xy = rot * radius + np.asarray(centre)
    return [tuple(p) for p in xy]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, centre: tuple[float, float], radius: float,
                angle: float) -> None:
    """Draw one filled shape (value 255) into a greyscale mask."""
    cx, cy = centre
    if shape in _POLYGONS:
        draw.polygon(_transform(_POLYGONS[shape], centre, radius, angle), fill=255)
    elif shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    elif shape == "ring":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        inner = radius * 0.55
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif shape == "crescent":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        ox, oy = 0.5 * radius * math.cos(angle), 0.5 * radius * math.sin(angle)
        r2 = radius * 0.85
        draw.ellipse([cx + ox - r2, cy + oy - r2, cx + ox + r2, cy + oy + r2], fill=0)
    elif shape == "semicircle":
        start = math.degrees(angle)
        # the half disc's centroid lies 4r/(3 pi) from the full circle's centre: shift so the shape is centred
        cx, cy = cx + 0.42 * radius * math.sin(angle), cy - 0.42 * radius * math.cos(angle)
        draw.pieslice([cx - radius, cy - radius, cx + radius, cy + radius], start, start + 180, fill=255)
    else:  # pragma: no cover - guarded by validate_shapes
        raise ValueError(f"unknown shape {shape!r}")


# ----------------------------------------------------------------------------------------------------------------
# Backgrounds: muted colour pairs, so that every object colour stays visible on them.

_BG_PALETTE = np.array([
    [200, 190, 170], [150, 160, 170], [120, 140, 120], [180, 160, 190], [100, 110, 130], [170, 140, 110],
    [210, 210, 200], [90, 90, 90], [140, 170, 190], [190, 175, 140],
], dtype=np.float32)


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """An ``(size, size, 3)`` float32 texture of the given kind."""
    c1, c2 = _BG_PALETTE[rng.choice(len(_BG_PALETTE), size=2, replace=False)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "solid":
        return np.broadcast_to(c1, (size, size, 3)).copy()
    if kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        t = (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle) + 0.5
        t = np.clip(t, 0, 1)[..., None]
        return c1 * (1 - t) + c2 * t
    if kind == "stripes":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(0.1, 0.2)
        t = ((xx * math.cos(angle) + yy * math.sin(angle)) / period) % 1.0
        return np.where((t < 0.5)[..., None], c1, c2)
    if kind == "checks":
        period = rng.uniform(0.1, 0.2)
        t = (np.floor(xx / period) + np.floor(yy / period)) % 2
        return np.where((t == 0)[..., None], c1, c2)
    if kind == "dots":
        period = rng.uniform(0.12, 0.2)
        fx, fy = (xx / period) % 1.0 - 0.5, (yy / period) % 1.0 - 0.5
        return np.where(((fx ** 2 + fy ** 2) < 0.06)[..., None], c2, c1)
    if kind == "noise":
        cells = int(rng.integers(4, 9))
        coarse = rng.random((cells, cells), dtype=np.float32)
        t = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                       dtype=np.float32)[..., None] / 255.0
        return c1 * (1 - t) + c2 * t
    raise ValueError(f"unknown background {kind!r}; choose from {sorted(BACKGROUNDS)}")


texture = _background  # the public name: world v2 draws the same textures


def _validate(names: Sequence[str], known, what: str) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; the world knows {list(known)}")


class World:
    """Draws scenes deterministically from ``(seed, index)``.

    ``difficulty`` in [0, 1] widens the world for curriculum training: at 0 only large-to-medium, nearly upright
    shapes on plain backgrounds; at 1 (the default, and what every benchmark uses) all sizes, rotations and
    background textures. Objects are rotated by up to ``max_rotation`` degrees either way (default 45: objects
    in photos are mostly upright, and a tiny ViT trained on a CPU budget learns shapes much faster when every
    shape does not also come in every orientation; 180 gives all orientations).
    """

    def __init__(self, image_size: int = 64, shapes: Sequence[str] = SHAPES,
                 backgrounds: Sequence[str] = tuple(BACKGROUNDS), colours: Sequence[str] = tuple(COLOURS),
                 max_rotation: float = 45.0):
        _validate(shapes, SHAPES, "shapes")
        _validate(backgrounds, BACKGROUNDS, "backgrounds")
        _validate(colours, COLOURS, "colours")
        if image_size < 16:
            raise ValueError(f"image_size={image_size} is too small to draw shapes; use 16 or more")
        if not 0 <= max_rotation <= 180:
            raise ValueError(f"max_rotation={max_rotation} must be between 0 and 180 degrees")
        self.image_size = image_size
        self.max_angle = math.radians(max_rotation)  # radians; the argument is in degrees
        self.shapes, self.backgrounds, self.colours = tuple(shapes), tuple(backgrounds), tuple(colours)

    def render(self, seed: int, index: int, kind: str = "object", shape: str | None = None,
               difficulty: float = 1.0, return_mask: bool = False):
        """Draw scene ``index`` of the stream ``seed``: an ``(S, S, 3)`` uint8 array and what it shows.

        With ``return_mask`` a third item is the ``(S, S)`` float32 coverage of all objects (0 = background),
        which dense training losses and localisation checks use.
        """
        if kind not in SCENES:
            raise ValueError(f"unknown scene kind {kind!r}; choose from {SCENES}")
        rng = np.random.default_rng([int(seed), int(index), SCENES.index(kind)])
        size = self.image_size
        hard = difficulty >= 0.5
        bg_choices = self.backgrounds if hard else tuple(b for b in self.backgrounds if b in ("solid", "gradient"))
        bg_choices = bg_choices or self.backgrounds
        bg_kind = bg_choices[rng.integers(len(bg_choices))]
        canvas = _background(bg_kind, size, rng)
        coverage = np.zeros((size, size), dtype=np.float32)
        if kind == "background":
            scene = Scene("background", bg_kind)
            return (canvas.astype(np.uint8), scene, coverage) if return_mask else (canvas.astype(np.uint8), scene)

        big = size * SUPERSAMPLE
        objects = []
        if kind == "object":
            shape = shape if shape is not None else self.shapes[rng.integers(len(self.shapes))]
            sizes = tuple(SIZES) if difficulty >= 0.25 else ("medium", "large")
            placements = [(shape, sizes[rng.integers(len(sizes))])]
        else:  # clutter: 3 to 5 small shapes
            n = int(rng.integers(3, 6))
            placements = [(self.shapes[rng.integers(len(self.shapes))], "tiny") for _ in range(n)]
        spread = self.max_angle if hard else min(0.3, self.max_angle)
        for obj_shape, size_name in placements:
            lo, hi = SIZES.get(size_name, (0.2, 0.28))
            radius = rng.uniform(lo, hi) * big / 2
            margin = radius * 1.05
            centre = (rng.uniform(margin, big - margin), rng.uniform(margin, big - margin))
            angle = rng.uniform(-spread, spread)
            colour = self.colours[rng.integers(len(self.colours))]
            mask_img = Image.new("L", (big, big), 0)
            draw_shape(ImageDraw.Draw(mask_img), obj_shape, centre, radius, angle)
            alpha = np.asarray(mask_img.resize((size, size), Image.BOX), dtype=np.float32)[..., None] / 255.0
            canvas = canvas * (1 - alpha) + np.asarray(COLOURS[colour], dtype=np.float32) * alpha
            coverage = np.maximum(coverage, alpha[..., 0])
            ys, xs = np.nonzero(alpha[..., 0] > 0.5)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0, 0, 0)
            objects.append(DrawnObject(obj_shape, colour, size_name, float(angle), box))
        image, scene = np.clip(canvas + 0.5, 0, 255).astype(np.uint8), Scene(kind, bg_kind, tuple(objects))
        return (image, scene, coverage) if return_mask else (image, scene)

    def image(self, seed: int, index: int, **kwargs) -> Image.Image:
        """Like :meth:`render`, as a PIL image."""
        return Image.fromarray(self.render(seed, index, **kwargs)[0])


# ----------------------------------------------------------------------------------------------------------------
# Captions

OBJECT_TEMPLATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a photo of a {shape}.", ("shape",)),
    ("a photo of a {colour} {shape}.", ("shape", "colour")),
    ("a photo of a {size} {shape}.", ("shape", "size")),
    ("a {size} {colour} {shape} on a {bg} background.", ("shape", "colour", "size", "background")),
    ("a photo of a {shape} on a {bg} background.", ("shape", "background")),
    ("a drawing of a {colour} {shape} on a {bg} background.", ("shape", "colour", "background")),
    ("a {colour} shape.", ("colour", "scene")),
)
BACKGROUND_TEMPLATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a photo of a {bg} background.", ("scene", "background")),
    ("a {bg} texture with nothing on it.", ("scene", "background")),
    ("an empty {bg} background.", ("scene", "background")),
)
CLUTTER_TEMPLATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a cluttered scene of many small shapes.", ("scene",)),
    ("many small shapes on a {bg} background.", ("scene", "background")),
)


def caption(scene: Scene, rng: np.random.Generator) -> tuple[str, dict[str, str]]:
    """A random caption of ``scene`` and the attribute constraints it states.

    The constraints are what makes the multi-positive loss exact: an image is a positive of a caption when its
    attributes satisfy every constraint the caption states ("a photo of a star" matches every star).
    """
    templates = {"object": OBJECT_TEMPLATES, "background": BACKGROUND_TEMPLATES,
                 "clutter": CLUTTER_TEMPLATES}[scene.kind]
    template, keys = templates[rng.integers(len(templates))]
    attrs = scene.attributes()
    text = template.format(shape=attrs.get("shape", ""), colour=attrs.get("colour", ""),
                           size=attrs.get("size", ""), bg=BACKGROUNDS[scene.background])
    return text, {k: attrs[k] for k in keys}


def matches(constraints: dict[str, str], scene: Scene) -> bool:
    """Whether ``scene`` satisfies every attribute a caption states."""
    attrs = scene.attributes()
    return all(attrs.get(k) == v for k, v in constraints.items())

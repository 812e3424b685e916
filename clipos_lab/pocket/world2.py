"""World v2: scenes of real drawings (the drawings pack) on textures, with captions and object masks.

The v1 world's twelve shapes are too few to rank OOD methods; v2 draws the Open Clip Art drawings of
:mod:`.pack` instead, and keeps v1's shapes as one more family. Like v1, every image is a pure function of
``(seed, index)`` (and the pack), so batches replay exactly after a resume and nothing is stored.

Scene kinds: ``object`` (one drawing, possibly tinted, occluded or damaged), ``multi`` (two or three drawings
that may overlap), ``shape`` (a v1 scene drawn at this size) and ``background`` (a texture alone). A drawing is
scaled, mirrored, rotated, colour-jittered and placed; backgrounds are v1's procedural textures or pattern and
gradient drawings. The ground truth of each image is its :class:`Scene2` and, on request, each object's visible
coverage (after occlusion) and the defect's pixel mask. Captions live in :mod:`.captions2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps

from . import world as W
from .pack import DrawingsPack

KINDS = ("object", "multi", "shape", "background")
SIZES = {"small": (0.32, 0.45), "medium": (0.46, 0.62), "large": (0.63, 0.85)}  # longer side / image side
ROWS, COLS = ("top", "middle", "bottom"), ("left", "centre", "right")
TINTS = ("red", "green", "blue", "yellow", "orange", "purple", "black")  # v1 colour names a drawing is tinted in
STATES = ("stained", "scratched", "torn", "punctured")  # defects of single-object scenes
STYLES = ("grey", "inverted", "outline", "bold", "blurred")  # how a drawing may be redrawn in training (``style``)
PACK_BACKGROUND_WORDS = {"special/patterns": "patterned", "special/gradients": "gradient"}
STREAM = 19_002  # rng tag of v2 scenes (v1 uses 0-2 and 7_001+)
WORLD2_VERSION = "1"  # bump when a scene's pictures change: cached features of v2 images are keyed by it


@dataclass(frozen=True)
class Placed:
    """One object as drawn: what it is (from the pack or v1), how it was drawn, and where (box end-exclusive)."""

    family: str  # "drawing" or "shape"
    name: str  # class noun, v1 shape name, or "" for an unlabelled drawing
    superclass: str  # two-level folder ("food/fruit"); "shapes" for v1 shapes
    title: str
    keywords: tuple[str, ...]
    file: str
    colour: str  # tint (or v1 colour) word, "" when the drawing keeps its own colours
    size: str
    position: str
    box: tuple[int, int, int, int]
    state: str = ""  # a STATES word for a damaged object


@dataclass(frozen=True)
class Scene2:
    kind: str
    background: str  # the word captions use
    objects: tuple[Placed, ...] = field(default_factory=tuple)

    def attributes(self) -> dict[str, frozenset[str]]:
        """Every value a caption may state, per key, over all objects (a caption's constraints must all be in)."""
        out = {"kind": {self.kind}, "background": {self.background}}
        for key in ("name", "superclass", "title", "file", "colour", "size", "position"):
            out[key] = {getattr(o, key) for o in self.objects} - {""}
        out["keyword"] = {k for o in self.objects for k in o.keywords}
        out["state"] = {s for o in self.objects for s in ((o.state, "damaged") if o.state else ("intact",))}
        return {k: frozenset(v) for k, v in out.items()}


def matches(constraints: dict[str, tuple[str, ...]], scene: Scene2) -> bool:
    """Whether ``scene`` has every value every key of a caption's constraints names."""
    attrs = scene.attributes()
    return all(set(values) <= attrs.get(key, frozenset()) for key, values in constraints.items())


def position_word(mask: np.ndarray) -> str:
    """Where a coverage mask's centre of mass lies on a 3 x 3 grid: "top left", "top", ..., "centre", ...; ""
    only for an empty mask (thin line drawings may cover no pixel by half, so coverage weighs the centre)."""
    total = float(mask.sum())
    if total <= 0:
        return ""
    s = mask.shape[0]
    cy = float((mask.sum(1) * np.arange(s)).sum()) / total + 0.5
    cx = float((mask.sum(0) * np.arange(s)).sum()) / total + 0.5
    row, col = ROWS[min(2, int(3 * cy / s))], COLS[min(2, int(3 * cx / s))]
    if row == "middle":
        return "centre" if col == "centre" else col
    return row if col == "centre" else f"{row} {col}"


class World2:
    """Draws v2 scenes deterministically from ``(seed, index)`` out of the drawings of chosen pack splits.

    ``splits`` picks the drawings (pre-training: ``("pretrain", "extra")``; checks: ``("val",)``; reported
    numbers: ``("eval",)``; unseen concepts: ``("unseen",)``), ``background_splits`` the pattern and gradient
    backgrounds (``("pretrain",)`` or ``("eval",)``). ``fractions`` weighs the scene kinds when a render
    call does not name one; ``tint``, ``occlusion`` and ``defect`` are the probabilities of those changes;
    ``labelled`` the probability that a drawing is drawn from the labelled ones (when the pool also has others);
    ``style`` the probability that a drawing is redrawn in one of :data:`STYLES` (a training augmentation: 0,
    the default, draws exactly the scenes of a world without it).
    """

    def __init__(self, pack: DrawingsPack | None = None, image_size: int = 112,
                 splits: tuple[str, ...] = ("pretrain", "extra"), fractions: dict[str, float] | None = None,
                 max_rotation: float = 20.0, tint: float = 0.2, occlusion: float = 0.15, defect: float = 0.1,
                 background_splits: tuple[str, ...] = ("pretrain",), labelled: float = 0.7, style: float = 0.0):
        self.pack = pack if pack is not None else DrawingsPack()
        self.pool = self.pack.select(splits)
        if not self.pool:
            raise ValueError(f"the drawings pack at {self.pack.folder} has no drawings in splits {splits}")
        self.fractions = fractions or {"object": 0.65, "multi": 0.15, "shape": 0.1, "background": 0.1}
        unknown = set(self.fractions) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown scene kinds {sorted(unknown)} in fractions; choose from {KINDS}")
        self.image_size, self.max_rotation = image_size, max_rotation
        self.tint, self.occlusion, self.defect, self.style = tint, occlusion, defect, style
        self.v1 = W.World(image_size)
        # unlabelled drawings (pre-training extras) outnumber labelled ones 3:1 in the pack; drawing from the two
        # groups at ``labelled`` : 1 - ``labelled`` keeps class captions frequent
        self.groups = [g for g in ([r for r in self.pool if r["class"]], [r for r in self.pool if not r["class"]]) if g]
        self.labelled = labelled if len(self.groups) == 2 else 1.0
        self.backgrounds = [r for r in self.pack.backgrounds if r["split"] in background_splits]

    def render(self, seed: int, index: int, kind: str | None = None, drawing: dict | None = None,
               state: str | None = None, return_masks: bool = False):
        """Scene ``index`` of stream ``seed``: ``(image (S, S, 3) uint8, Scene2)``, and with ``return_masks`` a
        third item ``{"objects": (n, S, S) float32 visible coverage, "defect": (S, S) bool}``.

        ``drawing`` (a pack record) fixes the drawing of an ``object`` scene; ``state`` forces a defect
        (``""``: none), else one is drawn with probability ``defect``; the scene's object carries the state only
        when the defect covers some pixels (never on a drawing with no solid pixel).
        """
        rng = np.random.default_rng([int(seed), int(index), STREAM])
        if kind is None:
            kinds = list(self.fractions)
            p = np.array([self.fractions[k] for k in kinds], dtype=float)
            kind = kinds[rng.choice(len(kinds), p=p / p.sum())]
        if kind not in KINDS:
            raise ValueError(f"unknown scene kind {kind!r}; choose from {KINDS}")
        size = self.image_size
        defect = np.zeros((size, size), dtype=bool)
        if kind == "shape":
            image, scene, masks = self._shape_scene(seed, index)
            return (image, scene, {"objects": masks, "defect": defect}) if return_masks else (image, scene)
        canvas, bg_word = self._background(rng)
        placed, masks = [], []
        n = {"object": 1, "multi": int(rng.integers(2, 4)), "background": 0}[kind]
        for j in range(n):
            record = drawing if (drawing is not None and j == 0) else self._pick(rng)
            canvas, alpha, obj = self._place(canvas, record, rng, small=kind == "multi")
            masks = [m * (1 - alpha) for m in masks] + [alpha]
            placed.append(obj)
        if kind == "object":
            if rng.random() < self.occlusion:
                canvas, masks[0] = self._occlude(canvas, masks[0], rng)
            want = state if state is not None else (STATES[int(rng.integers(len(STATES)))]
                                                     if rng.random() < self.defect else "")
            if want:
                canvas, masks[0], defect = damage(canvas, masks[0], want, rng, self._background(rng)[0])
                if defect.any():  # a hairline drawing has no solid pixel to damage: it stays intact
                    placed[0] = replace(placed[0], state=want)
        placed = [replace(o, position=position_word(m), box=_box(m)) for o, m in zip(placed, masks)]
        image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
        scene = Scene2(kind, bg_word, tuple(placed))
        stack = np.stack(masks).astype(np.float32) if masks else np.zeros((0, size, size), np.float32)
        return (image, scene, {"objects": stack, "defect": defect}) if return_masks else (image, scene)

    # ------------------------------------------------------------------------------------------------------------
    def _pick(self, rng: np.random.Generator) -> dict:
        group = self.groups[0] if rng.random() < self.labelled else self.groups[-1]
        return group[int(rng.integers(len(group)))]

    def _background(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        size = self.image_size
        if self.backgrounds and rng.random() < 0.35:
            record = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
            tile = Image.fromarray(self.pack.image(record)).resize((size, size), Image.BILINEAR)
            rgba = np.asarray(tile, dtype=np.float32).copy()
            rgba = np.rot90(rgba, int(rng.integers(4)))
            base = _palette(rng)
            alpha = rgba[..., 3:] / 255.0
            canvas = base * (1 - alpha) + rgba[..., :3] * alpha
            word = PACK_BACKGROUND_WORDS.get("/".join(record["category"].split("/")[:2]), "patterned")
            return 0.6 * canvas + 0.4 * base, word  # muted, so drawings stay visible on it
        kinds = tuple(W.BACKGROUNDS)
        kind = kinds[int(rng.integers(len(kinds)))]
        return W.texture(kind, size, rng), W.BACKGROUNDS[kind]

    def _place(self, canvas: np.ndarray, record: dict, rng: np.random.Generator, small: bool):
        size = self.image_size
        sizes = ("small",) if small else tuple(SIZES)
        size_word = sizes[int(rng.integers(len(sizes)))]
        lo, hi = SIZES[size_word]
        longest = rng.uniform(lo, hi) * size
        sprite = Image.fromarray(self.pack.image(record))
        scale = longest / max(sprite.size)
        sprite = sprite.resize((max(2, round(sprite.width * scale)), max(2, round(sprite.height * scale))),
                               Image.BILINEAR)
        if rng.random() < 0.5:
            sprite = sprite.transpose(Image.FLIP_LEFT_RIGHT)
        angle = rng.uniform(-self.max_rotation, self.max_rotation)
        sprite = sprite.rotate(angle, resample=Image.BILINEAR, expand=True)
        if self.style and rng.random() < self.style:  # no draw at style 0: the scenes stay those without it
            sprite = restyle(sprite, STYLES[int(rng.integers(len(STYLES)))])
        rgba = np.asarray(sprite, dtype=np.float32)
        rgb, alpha = rgba[..., :3], rgba[..., 3] / 255.0
        colour = ""
        if rng.random() < self.tint:
            colour = TINTS[int(rng.integers(len(TINTS)))]
            grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            rgb = np.asarray(W.COLOURS[colour], np.float32) * (0.45 + 0.55 * grey[..., None] / 255.0)
        else:  # colour jitter that keeps a drawing's colours recognisable: brightness, contrast, saturation
            grey = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
            rgb = grey + rng.uniform(0.7, 1.3) * (rgb - grey)
            rgb = (rgb - 128) * rng.uniform(0.8, 1.2) + 128 + rng.uniform(-20, 20)
        h, w = alpha.shape
        h, w = min(h, size), min(w, size)  # a rotated large sprite may exceed the image: crop its centre
        y0s, x0s = (alpha.shape[0] - h) // 2, (alpha.shape[1] - w) // 2
        rgb, alpha = rgb[y0s:y0s + h, x0s:x0s + w], alpha[y0s:y0s + h, x0s:x0s + w]
        y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        full = np.zeros((size, size), np.float32)
        full[y:y + h, x:x + w] = alpha
        region = canvas[y:y + h, x:x + w]
        canvas = canvas.copy()
        canvas[y:y + h, x:x + w] = region * (1 - alpha[..., None]) + np.clip(rgb, 0, 255) * alpha[..., None]
        sup = record.get("superclass") or "/".join(record["category"].split("/")[:2])
        obj = Placed("drawing", record["class"], sup, record["title"], tuple(record["keywords"]), record["file"],
                     colour, size_word, "", (0, 0, 0, 0))
        return canvas, full, obj

    def _occlude(self, canvas: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        """Cover a band of the object (15-35% of its box, from one side) with a patch of another texture."""
        x0, y0, x1, y1 = _box(mask)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return canvas, mask
        patch, _ = self._background(rng)
        cover = np.zeros(mask.shape, bool)
        frac = rng.uniform(0.15, 0.35)
        side = int(rng.integers(4))
        if side == 0:
            cover[y0:y0 + max(1, int(frac * (y1 - y0))), :] = True
        elif side == 1:
            cover[y1 - max(1, int(frac * (y1 - y0))):y1, :] = True
        elif side == 2:
            cover[:, x0:x0 + max(1, int(frac * (x1 - x0)))] = True
        else:
            cover[:, x1 - max(1, int(frac * (x1 - x0))):x1] = True
        canvas = np.where(cover[..., None], patch, canvas)
        return canvas, np.where(cover, 0.0, mask).astype(np.float32)

    def _shape_scene(self, seed: int, index: int):
        image, scene, cover = self.v1.render(seed, index, kind="object", return_mask=True)
        obj = scene.objects[0]
        placed = Placed("shape", obj.shape, "shapes", "", (), "", obj.colour, obj.size, position_word(cover),
                        _box(cover))
        return image, Scene2("shape", W.BACKGROUNDS[scene.background], (placed,)), cover[None].astype(np.float32)


def restyle(sprite: Image.Image, style: str) -> Image.Image:
    """An RGBA sprite redrawn in ``style``: the same object in another hand (grey scale, inverted colours, only
    its outline, bolder strokes, blurred), so that the image tower learns the class rather than one file's look.
    The alpha changes with the outline and bold styles, and the object's mask with it."""
    rgb, alpha = sprite.convert("RGB"), sprite.getchannel("A")
    if style == "grey":
        rgb = ImageOps.grayscale(rgb).convert("RGB")
    elif style == "inverted":
        rgb = ImageOps.invert(rgb)
    elif style == "outline":  # the drawing's rim, in its own colours
        alpha = ImageChops.subtract(alpha, alpha.filter(ImageFilter.MinFilter(5)))
    elif style == "bold":  # grown by two pixels: the drawing kept inside, the new rim in its darkest nearby colour
        inside = alpha.point(lambda a: 255 if a > 127 else 0)
        rgb = Image.composite(rgb, rgb.filter(ImageFilter.MinFilter(5)), inside)
        alpha = alpha.filter(ImageFilter.MaxFilter(5))
    elif style == "blurred":
        rgb, alpha = rgb.filter(ImageFilter.GaussianBlur(1.2)), alpha.filter(ImageFilter.GaussianBlur(1.2))
    else:
        raise ValueError(f"unknown drawing style {style!r}; choose from {STYLES}")
    out = rgb.convert("RGBA")
    out.putalpha(alpha)
    return out


def damage(canvas: np.ndarray, mask: np.ndarray, state: str, rng: np.random.Generator, under: np.ndarray):
    """Draw defect ``state`` on the object (``mask`` its coverage) hard-edged: ``(canvas, new mask, defect
    mask)``. ``under`` is what shows through a tear or a hole (another background)."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; choose from {STATES}")
    size = mask.shape[0]
    solid = mask >= 0.5
    if not solid.any():
        return canvas, mask, np.zeros_like(solid)
    from scipy.ndimage import distance_transform_edt

    inside = distance_transform_edt(solid)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    r = {"stained": 0.09, "scratched": 0.0, "torn": 0.12, "punctured": 0.07}[state] * size * rng.uniform(0.8, 1.2)
    # where the defect's centre may lie, by its distance to the object's outline: a tear bites the edge, a hole
    # sits wholly inside, a stain mostly inside, a scratch through the body
    lo, hi = {"stained": (0.6 * r, np.inf), "scratched": (0.08 * size, np.inf), "torn": (0.2 * r, 0.5 * r),
              "punctured": (r + 1.5, np.inf)}[state]
    good = (inside >= max(1.0, lo)) & (inside <= hi)
    ys, xs = np.nonzero(good if good.any() else inside == inside.max())
    k = int(rng.integers(len(ys)))
    cx, cy = xs[k] + 0.5, ys[k] + 0.5
    if state == "scratched":
        t, half = rng.uniform(0, math.pi), rng.uniform(0.15, 0.25) * size
        u = (xx - cx) * math.cos(t) + (yy - cy) * math.sin(t)
        v = -(xx - cx) * math.sin(t) + (yy - cy) * math.cos(t)
        region = (np.abs(u) <= half) & (np.abs(v) <= max(1.0, size / 50))
    else:
        region = (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
    region &= solid
    lum = (canvas @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    if state == "stained":  # brown on light objects, yellowish on dark ones: a stain always shows
        jitter = rng.uniform(-15, 15, 3).astype(np.float32)
        paint = np.where(lum < 90, np.array([200, 170, 60], np.float32), np.array([70, 45, 20], np.float32)) + jitter
        canvas = np.where(region[..., None], 0.25 * canvas + 0.75 * paint, canvas)
    elif state == "scratched":  # a light line on dark objects, a dark one on light objects
        canvas = np.where(region[..., None], 0.3 * canvas + 0.7 * np.where(lum > 150, 40.0, 245.0), canvas)
    else:  # torn or punctured: the piece is missing, what lies under shows
        canvas = np.where(region[..., None], under, canvas)
        mask = np.where(region, 0.0, mask).astype(np.float32)
    return canvas, mask, region


def _palette(rng: np.random.Generator) -> np.ndarray:
    palette = np.array([[200, 190, 170], [150, 160, 170], [120, 140, 120], [180, 160, 190], [100, 110, 130],
                        [170, 140, 110], [210, 210, 200], [90, 90, 90], [140, 170, 190]], dtype=np.float32)
    return palette[int(rng.integers(len(palette)))]


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask > 0.5)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0, 0, 0)



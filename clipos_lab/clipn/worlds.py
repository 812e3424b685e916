"""The caption worlds a CLIPN no tower trains on: pocket world v1 (shapes) or v2 (drawings), behind one interface.

A no tower learns from the world its backbone was trained on: the v1 pocket model from v1's shapes and textures,
pocket v2 from world v2's drawings. :mod:`.train` never asks which; it asks a pool world for

* the images and scenes of chunk ``k`` of a pool (drawn like the backbone's own training batches, from scene
  indices its training never used),
* a caption of a scene (text and the constraints it states), and whether a caption's constraints hold of a scene
  (the exact ITBO targets),
* scenes to and from JSON (the feature cache stores them beside the features),
* ``key()``: what decides the pool's pictures and captions besides the backbone and the pool's size and seed
  (part of the cache key, and stored in the checkpoint so that a resume cannot silently change the run).

World v2's captions come from :func:`clipos_lab.pocket.captions2.caption` with the pack's ``forbidden_words``, so
no caption the no tower trains on names an unseen concept: the unseen-concept OOD sets stay unseen by both towers.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from ..pocket import train as P
from ..pocket import world as W
from ..pocket import world2 as W2
from ..pocket.captions2 import caption as caption2
from ..pocket.pack import DRAWINGS_DIR
from ..pocket.train2 import DrawingsTask, Train2Config
from ..resources import POCKET2_CONFIG
from .encoder import is_pocket, is_pocket2

WORLDS = ("auto", "v1", "v2")
# a v2 pool that starts at pool "step" k draws scene indices k * 1000, k * 1000 + 1, ... of pocket v2's training
# stream; with the pool's first steps (1e6 for training, 2e6 for validation) that is 1e9 and up, far past the
# indices pocket v2's training draws (step * batch size + j: under 1e6 for 12,000 steps of 64)
V2_INDICES_PER_STEP = 1000


@lru_cache(maxsize=1)
def pocket2_geometry() -> tuple[int, tuple[int, int]]:
    """``(image size, grid)`` of pocket v2's architecture (``assets/pocket2/pocket2-vit.json``)."""
    vision = json.loads(POCKET2_CONFIG.read_text())["vision_cfg"]
    side = vision["image_size"] // vision["patch_size"]
    return vision["image_size"], (side, side)


def resolve_world(backbone, world: str = "auto") -> str:
    """``"v1"`` or ``"v2"``: ``world`` itself when named, else (``"auto"``) the world the backbone was trained on.

    ``auto`` reads the shipped models' weights ids (``pocket-vit:...`` is v1, ``pocket2-vit:...`` v2); any other
    backbone (a checkpoint file, random weights) is v2 when it has pocket v2's image size and 14 x 14 grid, else
    v1. Another model (e.g. a ViT-B/16) can train on either: name it.
    """
    if world not in WORLDS:
        raise ValueError(f"world={world!r}: choose 'auto' (the backbone's own), 'v1' (shapes) or 'v2' (drawings)")
    if world != "auto":
        return world
    if is_pocket2(backbone):
        return "v2"
    if is_pocket(backbone):
        return "v1"
    return "v2" if (backbone.image_size, tuple(backbone.grid)) == pocket2_geometry() else "v1"


class ShapesPool:
    """World v1: pool chunks are the v1 pocket model's training batches (``pocket.train.make_batch``)."""

    name = "v1"
    matches = staticmethod(W.matches)

    def __init__(self, image_size: int, grid: int, background_fraction: float, clutter_fraction: float):
        self.world = W.World(image_size)
        self.grid = grid
        self.background_fraction, self.clutter_fraction = background_fraction, clutter_fraction

    def key(self) -> dict:
        return {"bg": self.background_fraction, "clutter": self.clutter_fraction, "v": 1}

    def draw(self, seed: int, first_step: int, k: int, chunk: int):
        """Chunk ``k``: ``chunk`` images ``(chunk, S, S, 3)`` uint8 and their scenes (batch ``first_step + k``)."""
        cfg = P.TrainConfig(batch_size=chunk, curriculum_steps=1, background_fraction=self.background_fraction,
                            clutter_fraction=self.clutter_fraction)
        images, scenes, _, _, _ = P.make_batch(self.world, seed, first_step + k, cfg, self.grid)
        return images, scenes

    def caption(self, scene: W.Scene, rng: np.random.Generator):
        return W.caption(scene, rng)

    @staticmethod
    def to_json(scene: W.Scene) -> list:
        return [scene.kind, scene.background, [[o.shape, o.colour, o.size] for o in scene.objects]]

    @staticmethod
    def from_json(item: list) -> W.Scene:
        kind, background, objects = item
        return W.Scene(kind, background, tuple(W.DrawnObject(s, c, z, 0.0, (0, 0, 0, 0)) for s, c, z in objects))


class DrawingsPool:
    """World v2: pool images are drawn by the same :class:`~clipos_lab.pocket.world2.World2` as pocket v2's
    training batches (:class:`~clipos_lab.pocket.train2.DrawingsTask` with :class:`Train2Config`'s scene mix,
    pre-training and extra drawings, labelled share), from pocket v2's training stream at unused indices."""

    name = "v2"
    matches = staticmethod(W2.matches)

    def __init__(self, image_size: int, grid: int, pack: str = ""):
        task = DrawingsTask(Train2Config(pack=str(pack or DRAWINGS_DIR)), image_size, grid)
        self.world, self.forbidden, self.pack = task.world, task.forbidden, task.pack

    def key(self) -> dict:
        w = self.world
        return {"world": "v2", "pack": self.pack.manifest_sha256, "scenes": W2.WORLD2_VERSION,
                "mix": {"fractions": w.fractions, "labelled": w.labelled, "rotation": w.max_rotation, "tint": w.tint,
                        "occlusion": w.occlusion, "defect": w.defect}, "v": 1}

    def draw(self, seed: int, first_step: int, k: int, chunk: int):
        """Chunk ``k``: scenes ``first_step * 1000 + k * chunk + j`` of pocket v2's training stream for ``seed``."""
        stream = seed * 1_000_003 + P.TRAIN_STREAM  # as DrawingsTask.batch draws them
        first = first_step * V2_INDICES_PER_STEP + k * chunk
        rendered = [self.world.render(stream, first + j) for j in range(chunk)]
        return np.stack([image for image, _ in rendered]), [scene for _, scene in rendered]

    def caption(self, scene: W2.Scene2, rng: np.random.Generator):
        return caption2(scene, rng, self.forbidden)

    @staticmethod
    def to_json(scene: W2.Scene2) -> list:
        return [scene.kind, scene.background,
                [[o.family, o.name, o.superclass, o.title, list(o.keywords), o.file, o.colour, o.size, o.position,
                  list(o.box), o.state] for o in scene.objects]]

    @staticmethod
    def from_json(item: list) -> W2.Scene2:
        kind, background, objects = item
        return W2.Scene2(kind, background, tuple(
            W2.Placed(family, name, sup, title, tuple(keywords), file, colour, size, position, tuple(box), state)
            for family, name, sup, title, keywords, file, colour, size, position, box, state in objects))


def pool_world(backbone, world: str, background_fraction: float, clutter_fraction: float,
               pack: str = "") -> ShapesPool | DrawingsPool:
    """The pool world for ``backbone``: ``world`` is resolved by :func:`resolve_world`; the fractions are v1's
    pool mix, ``pack`` v2's drawings pack ("" = the shipped one)."""
    if resolve_world(backbone, world) == "v2":
        return DrawingsPool(backbone.image_size, backbone.grid[0], pack)
    return ShapesPool(backbone.image_size, backbone.grid[0], background_fraction, clutter_fraction)

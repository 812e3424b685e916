"""World v2 scenes of held-out drawings as a benchmark dataset (pocket v2's yardstick, issue 19).

Every image shows one drawing of the pack that pre-training never saw (``split``: ``val`` for choices, ``eval`` for
reported numbers, ``unseen`` for concepts no pre-training caption names), with v2's pose, scale and colour jitter,
on a background: one of the pack's held-out pattern drawings (about a third of the images) or one of v1's
procedural textures (which pre-training saw behind other drawings). Images are pure functions of
``(seed, index)``: image ``j`` of a class is stream index ``rank * 1e6 + j`` (``rank``: the class's place among
all the pack's classes), so it does not change when other classes or ``n_per_class`` do; the drawings of a class
are used in turn (image ``j`` shows drawing ``j mod n``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image

from ..pocket import world2 as W2
from ..pocket.pack import DRAWINGS_DIR, DrawingsPack, load_pack
from .errors import DataError
from .samples import ImageDataset, Sample

SPLITS = ("val", "eval", "unseen")  # never "pretrain" / "extra": no benchmark image was trained on
KINDS = ("object", "background")
_STRIDE = 1_000_000


def _pack(folder: str) -> DrawingsPack:
    try:
        return load_pack(folder)
    except (FileNotFoundError, ValueError) as err:
        raise DataError(str(err)) from None


def pack_classes(split: str, superclasses: Sequence[str] = (), pack: str | Path = DRAWINGS_DIR) -> list[str]:
    """The classes with drawings in ``split`` (all, or those under the given superclass folders), sorted."""
    p = _pack(str(pack))
    found = {r["class"] for r in p.select(split) if r["class"]}
    if superclasses:
        under = lambda folder: any(folder == s or folder.startswith(s + "/") for s in superclasses)  # noqa: E731
        found = {c for c in found if under(p.classes[c]["superclass"])}
    return sorted(found)


class DrawingsDataset(ImageDataset):
    """``kind="object"``: ``n_per_class`` scenes of each class in ``classes`` (labelled by position), drawn from
    its drawings in ``split``; ``kind="background"``: ``n_per_class`` scenes of a background
    alone (a texture OOD set, one class named ``background``)."""

    def __init__(self, kind: str = "object", classes: Sequence[str] = (), split: str = "eval",
                 n_per_class: int = 20, seed: int = 0, image_size: int = 112, pack: str | Path = DRAWINGS_DIR,
                 name: str | None = None):
        if kind not in KINDS:
            raise DataError(f"unknown drawings kind {kind!r}; choose from {list(KINDS)}")
        if split not in SPLITS:
            raise DataError(f"drawings split {split!r}: benchmarks read only {list(SPLITS)} (never the drawings "
                            "pocket v2 was pre-trained on)")
        if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or not 1 <= n_per_class < _STRIDE:
            raise DataError(f"n_per_class={n_per_class!r}: use 1 to {_STRIDE - 1} images")
        p = _pack(str(pack))
        classes = [classes] if isinstance(classes, str) else list(classes)
        if kind == "object":
            if not classes or len(set(classes)) != len(classes):
                raise DataError(f"drawings classes {classes!r}: give a list of distinct class nouns of the pack")
            pools = {c: sorted((r for r in p.select(split) if r["class"] == c), key=lambda r: r["file"])
                     for c in classes}
            empty = [c for c in classes if not pools[c]]
            if empty:
                known = pack_classes(split, pack=pack)
                raise DataError(f"drawings classes {empty} have no drawings in split {split!r}; classes there: "
                                f"{', '.join(known)}")
        self._pools = pools if kind == "object" else {}
        self._world = W2.World2(p, image_size, splits=SPLITS, defect=0.0, occlusion=0.0,
                                background_splits=("eval",))
        self._ranks = {c: i for i, c in enumerate(sorted(p.classes))}
        self.kind, self.split, self.seed, self.image_size = kind, split, int(seed), int(image_size)
        self.digest = p.manifest_sha256
        samples = []
        for label, c in enumerate(classes if kind == "object" else ["background"]):
            samples.extend(Sample(f"{c}/{j:05d}", label) for j in range(n_per_class))
        super().__init__(name or f"drawings-{kind}-{split}-seed{seed}",
                         classes if kind == "object" else ["background"], samples)

    def _stream(self, sample: Sample) -> tuple[str, int, dict | None]:
        c, j = sample.id.split("/")
        j = int(j)
        if self.kind == "background":
            return "background", j, None
        pool = self._pools[c]
        return "object", self._ranks[c] * _STRIDE + j, pool[j % len(pool)]

    def render(self, i: int):
        """Image ``i`` as ``(image, Scene2, {"objects": masks, "defect": mask})`` (ground truth for checks)."""
        kind, index, drawing = self._stream(self.samples[i])
        return self._world.render(self.seed, index, kind=kind, drawing=drawing, state="", return_masks=True)

    def scene(self, i: int) -> W2.Scene2:
        """What image ``i`` shows, with the drawing's box (as :meth:`WorldDataset.scene`, for figures)."""
        return self.render(i)[1]

    def object_region(self, i: int):
        """The drawing's exact ``(S, S)`` visible coverage in [0, 1] (None for a background scene): a drawing's box
        holds much background (a lightning bolt, a flourish), so localisation checks count the pixels it covers."""
        if self.kind != "object":
            return None
        return self.render(i)[2]["objects"].sum(0)

    def _load_sample(self, sample: Sample) -> Image.Image:
        kind, index, drawing = self._stream(sample)
        return Image.fromarray(self._world.render(self.seed, index, kind=kind, drawing=drawing, state="")[0])

    def _fingerprint_sample(self, sample: Sample) -> str:
        kind, index, drawing = self._stream(sample)
        return (f"{sample.id}|world2-{W2.WORLD2_VERSION}|pack={self.digest}|kind={kind}|split={self.split}"
                f"|drawing={drawing['sprite_sha256'] if drawing else ''}|seed={self.seed}|size={self.image_size}"
                f"|index={index}")


__all__ = ["DrawingsDataset", "KINDS", "SPLITS", "pack_classes"]

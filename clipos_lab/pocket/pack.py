"""The drawings pack: Open Clip Art drawings rendered once into small RGBA sprites, with one manifest.

Building needs Debian's ``openclipart-svg`` and the ``drawings`` extra (cairosvg on the system's libcairo);
reading needs neither: the built pack ships in ``assets/drawings/`` so the README's commands run without them.

A build is a pure function of the SVG files, :class:`~.drawings.PackRule` and the renderer's versions: sprites
are PNGs written by Pillow without timestamps, the manifest is JSON with sorted keys, so building twice gives
the same bytes (tests check it). Each sprite is the drawing rendered large, cropped to its visible pixels and
scaled so its longer side is ``sprite_size``; backgrounds (pattern and gradient drawings) are rendered to a
``background_size`` square.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import atomic_path
from ..resources import ASSETS
from . import drawings as D

DRAWINGS_DIR = ASSETS / "drawings"
PACK_FORMAT = 1
SPRITE_SIZE = 96  # longer side of an object sprite, pixels
BACKGROUND_SIZE = 112  # side of a background sprite, pixels (the v2 model's image size)
RENDER_SIZE = 512  # longer side of the first, large rendering that is then cropped
LICENCE = "public domain (Open Clip Art Library; Debian copyright file of openclipart-svg)"


def package_version(name: str = "openclipart-svg") -> str:
    """The installed Debian package's version, or ``"unknown"`` when dpkg is absent or knows no such package."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True,
                             check=False)
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def renderer_versions() -> dict[str, str]:
    """The versions that decide a sprite's bytes: cairosvg, libcairo, Pillow, zlib."""
    import zlib

    import cairocffi
    import cairosvg
    import PIL

    return {"cairosvg": cairosvg.__version__, "cairo": cairocffi.cairo_version_string(), "pillow": PIL.__version__,
            "zlib": zlib.ZLIB_RUNTIME_VERSION}


def _render(data: bytes, longest: int) -> Image.Image:
    import cairosvg

    probe = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=data, output_width=64)))
    w, h = probe.size  # aspect ratio of the page, from a small rendering
    width, height = (longest, max(1, round(longest * h / w))) if w >= h else (max(1, round(longest * w / h)), longest)
    png = cairosvg.svg2png(bytestring=data, output_width=width, output_height=height)
    return Image.open(io.BytesIO(png)).convert("RGBA")


def render_sprite(data: bytes, size: int = SPRITE_SIZE) -> Image.Image:
    """An RGBA sprite of an SVG drawing: cropped to its visible pixels, longer side ``size``; ValueError when
    nothing is visible."""
    big = _render(data, RENDER_SIZE)
    box = big.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    if box is None:
        raise ValueError("renders to nothing visible")
    big = big.crop(box)
    w, h = big.size
    scale = size / max(w, h)
    return big.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)


def render_background(data: bytes, size: int = BACKGROUND_SIZE) -> Image.Image:
    """A pattern or gradient drawing as a ``size`` square (the page stretched to fill it), RGBA."""
    import cairosvg

    return Image.open(io.BytesIO(cairosvg.svg2png(bytestring=data, output_width=size, output_height=size))
                      ).convert("RGBA")


def png_bytes(image: Image.Image) -> bytes:
    """PNG bytes with no timestamp or text chunk: the same image always gives the same bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def blank(blob: bytes) -> bool:
    """Whether a PNG shows nothing: fully transparent, or one flat colour."""
    image = Image.open(io.BytesIO(blob)).convert("RGBA")
    return image.getchannel("A").getextrema()[1] <= 8 or len(image.getcolors(2) or [0, 0]) < 2


def sprite_name(file: str, sha256: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", Path(file).stem).strip("_")[:40] + f"-{sha256[:8]}.png"


def plan(source: str | Path = D.DEBIAN_ROOT, rule: D.PackRule = D.PackRule()) -> dict:
    """Everything the pack will hold, before rendering: classes, tree, splits, and one record per drawing.

    Drawings without a class join pre-training as captioned extras (title and keywords), unless one of their
    words names an unseen concept or they lie in a held-out superclass's folder (a map of Europe would leak
    ``geography``); they are never evaluation images. Backgrounds are split by file too
    (``eval_fraction`` of them held out of pre-training, for texture OOD sets).
    """
    sources, skipped = D.scan(source)
    objects = [s for s in sources if not D.is_background(s)]
    classes = D.assign_classes(objects, rule)
    superclass_of = D.superclasses(objects, classes)
    splits = D.choose_splits(classes, superclass_of, rule)
    held = set(splits["unseen_classes"]) | {c for c, s in superclass_of.items() if s in splits["unseen_superclasses"]}
    forbidden = D.forbidden_words(sorted(held), splits["unseen_superclasses"], superclass_of)
    words = D.name_words(objects)
    records = []
    kept = set(splits["kept"])
    for s in objects:
        if s.file in kept:
            cls = classes[s.file]
            role = splits["split"][s.file]
        elif s.file in classes:  # beyond max_per_class: left out of the pack
            continue
        else:
            said = set(D.words(s.title)) | {w for kw in s.keywords for w in D.words(kw)} | set().union(*words[s.file])
            if said & set(forbidden) or "/".join(s.category.split("/")[:2]) in splits["unseen_superclasses"]:
                continue
            cls, role = "", "extra"
        records.append({**s.as_dict(), "class": cls, "superclass": superclass_of.get(cls, ""), "split": role,
                        "licence": LICENCE})
    chosen = D.choose_backgrounds(sources, rule)
    held_bg = set(D.seeded_order(chosen, rule.seed, "background-eval")[: round(rule.eval_fraction * len(chosen))])
    backgrounds = [{**s.as_dict(), "licence": LICENCE, "split": "eval" if s.file in held_bg else "pretrain"}
                   for s in sources if s.file in set(chosen)]
    return {"format": PACK_FORMAT, "rule": asdict(rule), "skipped": skipped,
            "classes": {c: {"superclass": superclass_of[c], "unseen": c in held,
                            "drawings": sum(r["class"] == c for r in records)} for c in sorted(superclass_of)},
            "tree": D.tree(superclass_of), "unseen_superclasses": splits["unseen_superclasses"],
            "unseen_classes": splits["unseen_classes"], "forbidden_words": forbidden,
            "drawings": records, "backgrounds": backgrounds}


def build_pack(out: str | Path = DRAWINGS_DIR, source: str | Path = D.DEBIAN_ROOT, rule: D.PackRule = D.PackRule(),
               subset: int | None = None, overwrite: bool = False, progress: bool = True,
               version: str | None = None, reuse: str | Path | None = None) -> dict:
    """Render the pack into ``out`` (``manifest.json``, ``sprites/``, ``backgrounds/``); returns the manifest.

    ``subset`` keeps only the first N drawings and N backgrounds of the plan (same classes and splits as the full
    build), for quick checks. ``reuse`` names an earlier pack whose sprites are copied instead of rendered again
    where the source file (path and sha256) and the renderer versions are the same: a rule change then takes
    seconds, and gives the bytes a full build gives (rendering is deterministic; tests check both ways).
    An existing pack in ``out`` is refused unless ``overwrite``; the new pack is built
    beside it and swapped in only when complete, so a failed build leaves the old one.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a drawings pack; pass --overwrite to rebuild it")
    try:
        versions = renderer_versions()
    except (ImportError, OSError) as err:
        raise RuntimeError(f"building the pack needs cairosvg on libcairo ({err}): "
                           "pip install 'clipos_lab[drawings]' and apt-get install libcairo2") from None
    manifest = plan(source, rule)
    if subset is not None:
        manifest["drawings"], manifest["backgrounds"] = manifest["drawings"][:subset], manifest["backgrounds"][:subset]
    manifest["source"] = {"package": "openclipart-svg", "version": version or package_version(),
                          "upstream": "Open Clip Art Library 0.18", "root": str(source)}
    manifest["renderer"] = {**versions, "sprite_size": SPRITE_SIZE, "background_size": BACKGROUND_SIZE,
                            "render_size": RENDER_SIZE}
    staging = out.with_name(f".{out.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "sprites").mkdir(parents=True)
    (staging / "backgrounds").mkdir()
    earlier = _reusable(reuse, manifest["renderer"]) if reuse else {}
    kept, failed = [], []
    jobs = [("sprites", r) for r in manifest["drawings"]] + [("backgrounds", r) for r in manifest["backgrounds"]]
    for folder, record in tqdm(jobs, disable=not progress, desc="render drawings"):
        name = sprite_name(record["file"], record["sha256"])
        if (folder, record["file"], record["sha256"]) in earlier:
            blob, size = earlier[folder, record["file"], record["sha256"]]
        else:
            data = (Path(source) / record["file"]).read_bytes()
            try:
                image = render_sprite(data) if folder == "sprites" else render_background(data)
            except Exception as err:  # noqa: BLE001 - any renderer failure skips the drawing, with its reason
                failed.append({"file": record["file"], "reason": f"render failed: {type(err).__name__}: {err}"[:200]})
                continue
            blob, size = png_bytes(image), list(image.size)
        if blank(blob):  # e.g. a gradient file that only defines gradients and draws nothing with them
            failed.append({"file": record["file"], "reason": "renders to nothing visible"})
            continue
        (staging / folder / name).write_bytes(blob)
        kept.append({**record, "sprite": f"{folder}/{name}", "sprite_sha256": hashlib.sha256(blob).hexdigest(),
                     "sprite_size": size})
    manifest["skipped"] = manifest["skipped"] + failed
    manifest["drawings"] = [r for r in kept if r["sprite"].startswith("sprites/")]
    manifest["backgrounds"] = [r for r in kept if r["sprite"].startswith("backgrounds/")]
    for c, info in manifest["classes"].items():
        info["drawings"] = sum(r["class"] == c for r in manifest["drawings"])
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    _swap_in(staging, out)
    return manifest


def _reusable(folder: str | Path, renderer: dict) -> dict:
    """``(folder kind, file, sha256) -> (PNG bytes, size)`` of an earlier pack drawn with the same renderer."""
    earlier = DrawingsPack(folder)
    if earlier.manifest.get("renderer") != renderer:
        return {}
    out = {}
    for record in earlier.drawings + earlier.backgrounds:
        blob = (earlier.folder / record["sprite"]).read_bytes()
        if hashlib.sha256(blob).hexdigest() == record["sprite_sha256"]:
            out[record["sprite"].split("/")[0], record["file"], record["sha256"]] = (blob, record["sprite_size"])
    return out


def _swap_in(staging: Path, out: Path) -> None:
    """Replace the pack folders of ``out`` by ``staging``'s (other files in ``out``, e.g. README.md, stay)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("sprites", "backgrounds"):
        old = out / name
        if old.exists():
            shutil.rmtree(old)
        (staging / name).rename(old)
    with atomic_path(out / "manifest.json") as tmp:
        shutil.copyfile(staging / "manifest.json", tmp)
    shutil.rmtree(staging)


class DrawingsPack:
    """A built pack, read: its manifest, and sprites as RGBA uint8 arrays (checked against their sha256)."""

    def __init__(self, folder: str | Path = DRAWINGS_DIR):
        self.folder = Path(folder)
        path = self.folder / "manifest.json"
        if not path.exists():
            raise FileNotFoundError(f"no drawings pack at {self.folder} (manifest.json missing): build it with "
                                    "`python -m clipos_lab pocket pack --out <folder>`")
        raw = path.read_bytes()
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()  # pins every sprite (the manifest holds their sha256)
        self.manifest = json.loads(raw)
        if self.manifest.get("format") != PACK_FORMAT:
            raise ValueError(f"{path} is pack format {self.manifest.get('format')}; this code reads {PACK_FORMAT}")
        self.drawings: list[dict] = self.manifest["drawings"]
        self.backgrounds: list[dict] = self.manifest["backgrounds"]
        self.classes: dict[str, dict] = self.manifest["classes"]

    def select(self, split: str | tuple[str, ...]) -> list[dict]:
        """The drawings of one split or several: ``pretrain``, ``extra``, ``val``, ``eval``, ``unseen``."""
        splits = (split,) if isinstance(split, str) else tuple(split)
        return [r for r in self.drawings if r["split"] in splits]

    def image(self, record: dict) -> np.ndarray:
        """The sprite of a drawing or background record, ``(H, W, 4)`` uint8."""
        return _read_sprite(str(self.folder / record["sprite"]), record["sprite_sha256"])


@lru_cache(maxsize=4)
def load_pack(folder: str | Path = DRAWINGS_DIR) -> DrawingsPack:
    """The pack in ``folder``, read once per process (training, benchmark datasets and the defect world share it)."""
    return DrawingsPack(folder)


@lru_cache(maxsize=4096)
def _read_sprite(path: str, sha256: str) -> np.ndarray:
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path} does not match its sha256 in manifest.json: the pack is damaged; rebuild it")
    array = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
    array.setflags(write=False)
    return array

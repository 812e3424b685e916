"""Captions of world v2 scenes, each with the constraints that make the multi-positive loss exact.

A caption states some attributes of a scene (class, superclass, title, keywords, colour, size, position,
background, state); its constraints are exactly those, so every image whose attributes include them is a
positive of the caption (:func:`.world2.matches`). Words of held-out concepts (the pack's ``forbidden_words``)
never appear: a template that would say one is not used, which keeps the unseen-concept OOD sets unseen.
"""

from __future__ import annotations

import re

import numpy as np

from .world2 import Scene2

Caption = tuple[str, dict[str, tuple[str, ...]]]
NOISE_KEYWORDS = re.compile(r"^(hash|clip.?art|svg|image|icon|openclipart|inkscape)|[^a-z \-]")


# other words for the two states, as web captions vary them (``state_words``): a model trained only on "intact" /
# "damaged" cannot answer a prompt that says "flawless" or "broken"
INTACT_WORDS = ("intact", "undamaged", "flawless", "perfect", "unblemished")
DAMAGED_WORDS = ("damaged", "broken", "defective", "flawed")
# and the phrase forms users' prompts also say ("{} without a flaw", ``state_phrases``); "{}" is the class noun
INTACT_PHRASES = ("{} without a flaw", "{} without a defect", "{} without damage", "{} in perfect condition")
DAMAGED_PHRASES = ("{} with a flaw", "{} with a defect", "{} with damage", "{} in bad condition")
STATE_FRAMES = ("{}.", "a photo of {}.", "a drawing of {}.")  # phrase captions are framed like the class captions


def state_forms(state: str, words: bool = False, phrases: bool = False) -> tuple[str, ...]:
    """How a caption may say ``state`` ("intact" / "damaged") of a class noun: "intact {}", "{} without a flaw"...
    Without ``words`` or ``phrases`` only the released captions' single form."""
    forms = (INTACT_WORDS if state == "intact" else DAMAGED_WORDS) if words else (state,)
    return tuple(f"{w} {{}}" for w in forms) + ((INTACT_PHRASES if state == "intact" else DAMAGED_PHRASES)
                                                if phrases else ())


def say_state(form: str, name: str) -> str:
    """``"flawless {}"``, ``"apple"`` -> ``"a flawless apple"``; ``"{} with a flaw"`` -> ``"an apple with a flaw"``."""
    text = form.format(name)
    return f"{article(text)} {text}"


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def superclass_word(superclass: str) -> str:
    """``food/fruit`` -> ``fruit``; ``signs_and_symbols`` -> ``signs and symbols``."""
    return superclass.split("/")[-1].replace("_", " ")


def clean_keywords(keywords: tuple[str, ...], drop: set[str]) -> list[str]:
    """Keywords fit for a caption: alphabetic, not noise, not a held-out concept."""
    out = []
    for k in keywords:
        k = k.strip().lower()
        if len(k) >= 3 and not NOISE_KEYWORDS.search(k) and not set(re.findall(r"[a-z]+", k)) & drop:
            out.append(k)
    return out


def candidates(scene: Scene2, forbidden: frozenset[str] = frozenset()) -> list[Caption]:
    """Every caption the templates can say about ``scene`` without a forbidden word."""
    bg = scene.background
    out: list[Caption] = []
    if scene.kind == "background":
        return [(f"a {bg} background.", {"kind": ("background",), "background": (bg,)}),
                (f"an empty {bg} background.", {"kind": ("background",), "background": (bg,)}),
                (f"a {bg} texture with nothing on it.", {"kind": ("background",), "background": (bg,)})]
    if scene.kind == "multi":
        names = sorted({o.name for o in scene.objects if o.name})
        if names:
            text = " and ".join(f"{article(n)} {n}" for n in names)
            out.append((f"a picture of {text}.", {"name": tuple(names)}))
        out.append((f"several drawings on a {bg} background.", {"kind": ("multi",), "background": (bg,)}))
        return _allowed(out, forbidden)
    obj = scene.objects[0]
    n, what = obj.name, ("shape" if obj.family == "shape" else "drawing")
    if n:
        out += [(f"a {what} of {article(n)} {n}.", {"name": (n,)}),
                (f"a photo of {article(n)} {n}.", {"name": (n,)}),
                (f"{article(obj.size)} {obj.size} {n}.", {"name": (n,), "size": (obj.size,)}),
                (f"{article(n)} {n} on a {bg} background.", {"name": (n,), "background": (bg,)})]
        if obj.position:  # empty for an object hidden entirely
            out.append((f"{article(n)} {n} in the {obj.position}.", {"name": (n,), "position": (obj.position,)}))
        if obj.colour:
            out.append((f"{article(obj.colour)} {obj.colour} {n}.", {"name": (n,), "colour": (obj.colour,)}))
        if obj.state:
            out += [(f"{article(obj.state)} {obj.state} {n}.", {"name": (n,), "state": (obj.state,)}),
                    (f"a damaged {n}.", {"name": (n,), "state": ("damaged",)})]
        else:
            out.append((f"an intact {n}.", {"name": (n,), "state": ("intact",)}))
    if obj.family == "drawing":
        sup = superclass_word(obj.superclass)
        out.append((f"a drawing from the {sup} collection.", {"superclass": (obj.superclass,)}))
        if n:
            out.append((f"{article(n)} {n}, from the {sup} collection.",
                        {"name": (n,), "superclass": (obj.superclass,)}))
        if obj.title:
            out.append((f"a drawing titled {obj.title.lower()}.", {"title": (obj.title,)}))
        words = clean_keywords(obj.keywords, set(forbidden))
        if words:
            out.append((f"a drawing of {', '.join(words[:3])}.", {"keyword": tuple(words[:3])}))
        if obj.colour:
            out.append((f"{article(obj.colour)} {obj.colour} drawing.",
                        {"colour": (obj.colour,), "kind": (scene.kind,)}))
        if obj.state:
            out.append((f"{article(obj.state)} {obj.state} drawing.", {"state": (obj.state,)}))
    else:
        out.append((f"{article(obj.colour)} {obj.colour} shape.", {"kind": ("shape",), "colour": (obj.colour,)}))
    return _allowed(out, forbidden)


def caption(scene: Scene2, rng: np.random.Generator, forbidden: frozenset[str] = frozenset(),
            state_words: bool = False, state_phrases: bool = False) -> Caption:
    """One caption of ``scene`` drawn from :func:`candidates` (class captions twice as likely as each other).
    With ``state_words`` (``state_phrases``), an "intact X." / "a damaged X." caption says one of the state's
    other words (phrases, in a frame) instead, drawn from ``rng`` only then: the default stream is unchanged."""
    options = candidates(scene, forbidden)
    if not options:  # nothing sayable without a held-out word: say only the background
        return (f"a drawing on a {scene.background} background.", {"background": (scene.background,)})
    weights = np.array([2.0 if set(c) == {"name"} else 1.0 for _, c in options])
    text, constraints = options[int(rng.choice(len(options), p=weights / weights.sum()))]
    state = constraints.get("state", ("",))[0]
    if (state_words or state_phrases) and state in ("intact", "damaged") and set(constraints) == {"name", "state"}:
        said = say_state(str(rng.choice(state_forms(state, state_words, state_phrases))), constraints["name"][0])
        text = str(rng.choice(STATE_FRAMES)).format(said) if state_phrases else f"{said}."
    return text, constraints


def _allowed(options: list[Caption], forbidden: frozenset[str]) -> list[Caption]:
    return [(t, c) for t, c in options if not set(re.findall(r"[a-z]+", t)) & forbidden]

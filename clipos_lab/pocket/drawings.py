"""The drawings source: Open Clip Art Library SVGs, read into class nouns, a superclass tree and honest splits.

Pocket v2 trains on real, human-made drawings instead of procedural shapes. Debian's ``openclipart-svg``
package (Open Clip Art Library 0.18, public domain) installs about 7,500 SVG files under
``/usr/share/openclipart/svg/<category>/<subcategory>/...``; each file carries a title and keywords in its RDF
metadata. This module turns that tree into labelled drawings; :mod:`.pack` renders them into the shipped pack.

Everything here is a pure function of the files and :class:`PackRule`: the rule (word filters, thresholds,
split fractions, seed) was fixed before any model was trained on the pack, and is written into the manifest.

* **One drawing per file name.** The package stores many files twice, once in a folder and once in a subfolder
  (with slightly different metadata), plus symbolic links; a drawing is kept once, from its deepest folder.
* **Class nouns by a rule on counts.** A word counts after lower-casing, plural folding (``cats`` -> ``cat``
  when ``cat`` occurs too) and dropping stop words, colours, generic art words, the top-level category names
  and the drawing's creator's name. Words in the titles or file names of at least ``min_drawings`` drawings and
  among the keywords of at least ``min_keyword_drawings`` are candidate nouns; a drawing's class is the *last*
  candidate of its title (English puts the head noun last: "apple tree" is a tree), else of its file name, else
  its most frequent candidate keyword; classes left with fewer than ``min_drawings`` drawings are dropped and
  their drawings re-assigned, until stable. Folders of near-identical glyphs (:data:`SKIP_FOLDERS`) are skipped.
* **Superclasses from folders.** A class's superclass is the most common two-level folder of its drawings
  (``animals/mammals``, ``food/fruit``); the tree is category -> superclass -> class.
* **Splits by file, seeded.** Whole superclasses and single classes are held out as unseen concepts (never in
  pre-training, their words never in its captions); the drawings of the other classes are split by file into
  pre-training, validation and evaluation (test), so no benchmark drawing was ever trained on.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEBIAN_ROOT = Path("/usr/share/openclipart/svg")
NS = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}
# folders whose files are not drawings of things: page-layout examples, known duplicates, and large sets of
# near-identical glyphs (icon themes, generated star polygons, flags, playing cards, LED segments, map and road
# symbols, flowchart and callout shapes, jigsaw pieces, buttons, logos) that would swamp the classes
SKIP_FOLDERS = ("unsorted/duplicates", "special/examples", "computer/icons", "computer/buttons", "buttons", "logos",
                "shapes/stars", "shapes/flowchart", "shapes/callouts", "shapes/jigsaw", "signs_and_symbols/flags",
                "signs_and_symbols/led", "signs_and_symbols/map_symbols", "recreation/games/cards",
                "transportation/aiga-symbols", "transportation/roadsigns")
# folders whose drawings are textures: the world draws them as backgrounds, never as objects
BACKGROUND_FOLDERS = ("special/gradients", "special/patterns")

# drawings with text elements are left out: their pixels depend on the fonts a machine has, so they would not
# rebuild byte-identical elsewhere (measured: one such sprite changed between two builds on this machine)
TEXT_ELEMENT = re.compile(rb"<(?:svg:)?text[\s>/]")
STOP_WORDS = frozenset(
    "a an the and or of on in at to for with without from by up down over under into out off its it his her "
    "their our your my this that these those is are was be one two three four five six seven eight nine ten "
    "some many more most very not no yes all any each other another".split())
GENERIC_WORDS = frozenset(
    "clip clipart art svg image picture drawing draw drawn icon icons symbol cartoon clip-art simple line lines "
    "outline outlined design style set collection old new big small little large tiny cute funny happy sad "
    "front back side left right top bottom view version ver remix remixed alt alternative colour color "
    "coloured colored shaded shading shadow glossy gloss shiny plain bw sketch silhouette stylized stylised "
    "vector graphic graphics illustration example test untitled misc miscellaneous stuff thing things "
    "openclipart library public domain inkscape nice cool pretty modern generic basic theme day".split())
COLOUR_WORDS = frozenset(
    "red green blue yellow orange purple white black grey gray brown pink gold golden silver violet cyan "
    "magenta beige dark light".split())


@dataclass(frozen=True)
class PackRule:
    """Every choice that turns the SVG tree into a pack; fixed before training and stored in the manifest."""

    min_drawings: int = 7  # a class noun needs this many drawings (titles and final assignment)
    min_keyword_drawings: int = 3  # ... and must be a keyword of this many drawings
    max_per_class: int = 40  # drawings kept per class (seeded choice): no class dominates, the pack stays small
    eval_fraction: float = 0.35  # of each seen class's drawings held out of pre-training, by file
    min_eval: int = 3  # held-out drawings per seen class, at least
    val_fraction: float = 0.34  # of the held-out drawings: validation (choices, training checks); the rest: test
    unseen_superclasses: int = 2  # whole superclasses (with >= 3 classes) held out of pre-training
    unseen_class_fraction: float = 0.1  # of the remaining classes, held out of pre-training
    max_backgrounds: int = 120  # pattern / gradient drawings kept as backgrounds
    seed: int = 0


@dataclass
class Source:
    """One SVG drawing of the package: where it is, what it is called, its bytes' digest."""

    file: str  # path under the package root, e.g. "food/fruit/apple.svg"
    category: str  # its folder, e.g. "food/fruit"
    title: str
    keywords: list[str]
    creator: str
    sha256: str
    also_in: list[str] = field(default_factory=list)  # other copies of the same file name

    def as_dict(self) -> dict:
        return asdict(self)


def read_metadata(data: bytes) -> tuple[str, list[str], str]:
    """The title, keywords and creator in an SVG's RDF metadata (empty when absent); raises ValueError when the
    file is not well-formed XML."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise ValueError(f"not well-formed XML ({err})") from None
    title, keywords, creator = "", [], ""
    for work in root.iter():
        if not work.tag.endswith("}Work"):
            continue
        node = work.find("dc:title", NS)
        if node is not None and (node.text or "").strip():
            title = " ".join(node.text.split())
        node = work.find("dc:creator//dc:title", NS)
        if node is not None and (node.text or "").strip():
            creator = " ".join(node.text.split())
        for subject in work.findall("dc:subject", NS):
            items = [li.text or "" for li in subject.iter(f"{{{NS['rdf']}}}li")] or [subject.text or ""]
            for item in items:
                keywords += [k.strip().lower() for k in re.split(r"[,;]", item) if k.strip()]
        break
    if not title:  # some files name themselves in the SVG <title> element only
        for node in root.iter():
            if node.tag.endswith("}title") and (node.text or "").strip():
                title = " ".join(node.text.split())
                break
    return title, list(dict.fromkeys(keywords)), creator


def scan(root: str | Path = DEBIAN_ROOT) -> tuple[list[Source], list[dict]]:
    """Every drawing under ``root`` once (deepest copy of each file name), sorted by path; and the files skipped
    with the reason (unreadable XML, text elements). Symbolic links are skipped: they point at files that are
    scanned themselves."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no Open Clip Art tree at {root}: install Debian's package "
                                "(apt-get install openclipart-svg) or pass --source")
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.rglob("*.svg")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file() or rel.startswith(tuple(f + "/" for f in SKIP_FOLDERS)):
            continue
        by_name[path.name].append(path)
    sources, skipped = [], []
    for name in sorted(by_name):
        copies = sorted(by_name[name], key=lambda p: (-len(p.relative_to(root).parts), p.as_posix()))
        path = copies[0]
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if TEXT_ELEMENT.search(data):
            skipped.append({"file": rel, "reason": "contains text: how it renders depends on the installed fonts"})
            continue
        try:
            title, keywords, creator = read_metadata(data)
        except ValueError as err:
            skipped.append({"file": rel, "reason": str(err)})
            continue
        sources.append(Source(rel, path.parent.relative_to(root).as_posix(), title, keywords, creator,
                              hashlib.sha256(data).hexdigest(),
                              [c.relative_to(root).as_posix() for c in copies[1:]]))
    return sorted(sources, key=lambda s: s.file), skipped


def is_background(source: Source) -> bool:
    return source.category.startswith(BACKGROUND_FOLDERS)


def words(text: str) -> list[str]:
    """Lower-case alphabetic words of at least 3 letters, in order."""
    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3]


def fold_plural(word: str, vocabulary: set[str]) -> str:
    """``cats`` -> ``cat``, ``cherries`` -> ``cherry``, ``boxes`` -> ``box``, when the singular occurs too."""
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(suffix) and not word.endswith("ss") and word[: len(word) - len(suffix)] + repl in vocabulary:
            return word[: len(word) - len(suffix)] + repl
    return word


def excluded_words(sources: list[Source]) -> set[str]:
    """Words that never become class nouns: stop words, generic art words, colours, top-level category names."""
    tops = {s.category.split("/")[0] for s in sources}
    tops = {w for t in tops for w in re.split(r"[_\-]", t.lower())}
    return set(STOP_WORDS | GENERIC_WORDS | COLOUR_WORDS) | tops | {t.rstrip("s") for t in tops}


def name_words(sources: list[Source]) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """Each drawing's title words, file-name words and keyword words, after plural folding and exclusions (the
    words of its creator's name are excluded too: titles and file names often carry them)."""
    vocabulary = {w for s in sources for w in words(s.title) + [x for k in s.keywords for x in words(k)]}
    drop = excluded_words(sources)
    out = {}
    for s in sources:
        own = drop | set(words(s.creator))

        def clean(ws):
            return [w for w in (fold_plural(w, vocabulary) for w in ws) if w not in own]
        out[s.file] = (clean(words(s.title)), clean(words(Path(s.file).stem.replace("_", " "))),
                       clean([x for k in s.keywords for x in words(k)]))
    return out


def assign_classes(sources: list[Source], rule: PackRule) -> dict[str, str]:
    """File -> class noun for the drawings that get one.

    A candidate noun occurs in the title or file name of at least ``min_drawings`` drawings and among the
    keywords of at least ``min_keyword_drawings`` (which drops collection names and author names, never tagged
    as keywords). A drawing's class is the last candidate of its title, else of its file name, else its most
    frequent candidate keyword (ties alphabetical). Classes left with fewer than ``min_drawings`` drawings are
    dropped and their drawings re-assigned, until no class is that small.
    """
    nw = name_words(sources)
    named = Counter(w for t, f, _ in nw.values() for w in set(t) | set(f))
    tagged = Counter(w for _, _, k in nw.values() for w in set(k))
    nouns = {w for w, n in named.items() if n >= rule.min_drawings and tagged[w] >= rule.min_keyword_drawings}
    while True:
        assigned = {}
        for f, (t, stem, k) in nw.items():
            for ws in (t, stem):
                hits = [w for w in ws if w in nouns]
                if hits:
                    assigned[f] = hits[-1]
                    break
            else:
                hits = sorted({w for w in k if w in nouns}, key=lambda w: (-named[w], w))
                if hits:
                    assigned[f] = hits[0]
        counts = Counter(assigned.values())
        small = {c for c in nouns if counts[c] < rule.min_drawings}
        if not small:
            return dict(sorted(assigned.items()))
        nouns -= small


def superclasses(sources: list[Source], classes: dict[str, str]) -> dict[str, str]:
    """Class -> superclass: the most common two-level folder of its drawings (ties: alphabetical)."""
    folders: dict[str, Counter] = defaultdict(Counter)
    by_file = {s.file: s for s in sources}
    for f, c in classes.items():
        folders[c]["/".join(by_file[f].category.split("/")[:2])] += 1
    return {c: min(n.items(), key=lambda kv: (-kv[1], kv[0]))[0] for c, n in sorted(folders.items())}


def tree(superclass_of: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """The hierarchy category -> superclass -> classes, sorted."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for c, sup in sorted(superclass_of.items()):
        out[sup.split("/")[0]][sup].append(c)
    return {k: {s: sorted(v) for s, v in sorted(d.items())} for k, d in sorted(out.items())}


def seeded_order(items, seed: int, tag: str) -> list:
    """``items`` in an order fixed by ``(seed, tag)`` and each item's name (not by the order they came in)."""
    def key(item):
        return hashlib.sha256(f"{seed}:{tag}:{item}".encode()).hexdigest()
    return sorted(items, key=key)


def choose_splits(classes: dict[str, str], superclass_of: dict[str, str], rule: PackRule) -> dict:
    """The held-out concepts and the by-file pre-training / evaluation split, by the seeded rule.

    Returns ``{"unseen_superclasses", "unseen_classes", "seen_classes", "split": {file: "pretrain" | "val" |
    "eval" | "unseen"}, "kept": [files]}``; ``kept`` is the at most ``max_per_class`` drawings per class that
    enter the pack. ``val`` and ``eval`` are both held out of pre-training: ``val`` for choices and training
    checks, ``eval`` (test) for reported numbers only.
    """
    members: dict[str, list[str]] = defaultdict(list)
    for f, c in classes.items():
        members[c].append(f)
    kept = {c: sorted(seeded_order(fs, rule.seed, "keep")[: rule.max_per_class]) for c, fs in members.items()}
    per_super: dict[str, list[str]] = defaultdict(list)
    for c, sup in superclass_of.items():
        per_super[sup].append(c)
    eligible = [s for s, cs in per_super.items() if len(cs) >= 3]
    held_supers = sorted(seeded_order(eligible, rule.seed, "superclass")[: rule.unseen_superclasses])
    rest = [c for c in superclass_of if superclass_of[c] not in held_supers]
    n_held = int(round(rule.unseen_class_fraction * len(rest)))
    held_classes = sorted(seeded_order(rest, rule.seed, "class")[:n_held])
    unseen = {c for c in superclass_of if superclass_of[c] in held_supers} | set(held_classes)
    split = {}
    for c, fs in kept.items():
        if c in unseen:
            split.update({f: "unseen" for f in fs})
            continue
        n_eval = max(rule.min_eval, int(round(rule.eval_fraction * len(fs))))
        n_val = max(1, int(round(rule.val_fraction * n_eval)))
        order = seeded_order(fs, rule.seed, "eval")
        split.update({f: ("val" if i < n_val else "eval" if i < n_eval else "pretrain") for i, f in enumerate(order)})
    return {"unseen_superclasses": held_supers, "unseen_classes": held_classes,
            "seen_classes": sorted(set(superclass_of) - unseen), "split": dict(sorted(split.items())),
            "kept": sorted(f for fs in kept.values() for f in fs)}


def choose_backgrounds(sources: list[Source], rule: PackRule) -> list[str]:
    """The pattern / gradient drawings the pack keeps as backgrounds (seeded choice, sorted)."""
    files = [s.file for s in sources if is_background(s)]
    return sorted(seeded_order(files, rule.seed, "background")[: rule.max_backgrounds])


def forbidden_words(held_classes: list[str], held_superclasses: list[str], superclass_of: dict[str, str]) -> list[str]:
    """Words pre-training captions must never contain: every held-out class and the folder words of held-out
    superclasses (``food/fruit`` -> ``fruit``), with their plurals."""
    out = set(held_classes)
    for sup in held_superclasses:
        out |= {w for w in re.split(r"[_\-/]", sup.split("/")[-1].lower()) if len(w) >= 3}
    out |= {w[:-1] for w in out if w.endswith("s") and not w.endswith("ss")}
    out |= {w + "s" for w in out if not w.endswith("s")}
    return sorted(out)

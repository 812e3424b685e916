"""Word lists for the negative-label methods: WordNet 3.0 nouns and adjectives, or any user list.

NegLabel, CSP and AdaNeg mine negative labels from WordNet nouns and adjectives. Their reference code reads one
text file per WordNet lexicographer file (``noun.artifact``, ``adj.all``, ...), one word per synset. We build the
same kind of list from the WordNet *database* files (``data.noun``, ``data.adj``) that Debian's ``wordnet-base``
installs, with one rule: the **first lemma of every synset**, adjective markers ``(a)`` / ``(p)`` / ``(ip)``
removed, underscores turned into spaces, lower-cased, each word once per lexicographer file (first occurrence).
:func:`build_wordnet_vocab` writes it as a compact gzip TSV (``lexname<TAB>word``) shipped in ``assets/vocab``.

A :class:`Vocabulary` is ordered and knows each word's part of speech (``noun`` / ``adj``) and lexicographer
file, so a method can drop files (NegLabel's list has no ``noun.animal`` / ``noun.food``; CSP drops four more).
Users with another corpus pass any word list (:func:`read_vocab` reads ``word`` or ``lexname<TAB>word`` lines).
"""

from __future__ import annotations

import functools
import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..files import atomic_path
from ..resources import ASSETS, sha256_of

VOCAB_DIR = ASSETS / "vocab"
WORDNET_VOCAB = VOCAB_DIR / "wordnet-3.0.tsv.gz"

# WordNet's lexicographer file numbers (lexnames(5WN)); verbs and adverbs are not used
LEXNAMES = {0: "adj.all", 1: "adj.pert", 2: "adv.all", 3: "noun.Tops", 4: "noun.act", 5: "noun.animal",
            6: "noun.artifact", 7: "noun.attribute", 8: "noun.body", 9: "noun.cognition", 10: "noun.communication",
            11: "noun.event", 12: "noun.feeling", 13: "noun.food", 14: "noun.group", 15: "noun.location",
            16: "noun.motive", 17: "noun.object", 18: "noun.person", 19: "noun.phenomenon", 20: "noun.plant",
            21: "noun.possession", 22: "noun.process", 23: "noun.quantity", 24: "noun.relation", 25: "noun.shape",
            26: "noun.state", 27: "noun.substance", 28: "noun.time", 44: "adj.ppl"}
_MARKER = re.compile(r"\((a|p|ip)\)$")


@dataclass(frozen=True)
class Vocabulary:
    """Candidate words in order, each with its part of speech (``noun`` / ``adj``) and source file."""

    words: tuple[str, ...]
    pos: tuple[str, ...]
    lexnames: tuple[str, ...]

    def __post_init__(self):
        if not (len(self.words) == len(self.pos) == len(self.lexnames)):
            raise ValueError("Vocabulary: words, pos and lexnames must have the same length")
        bad = sorted(set(self.pos) - {"noun", "adj"})
        if bad:
            raise ValueError(f"Vocabulary: part of speech {bad} is not 'noun' or 'adj'")

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def from_words(cls, nouns: Sequence[str] = (), adjectives: Sequence[str] = ()) -> "Vocabulary":
        """A user word list: nouns then adjectives (lexicographer files ``user.noun`` / ``user.adj``)."""
        nouns, adjectives = [str(w) for w in nouns], [str(w) for w in adjectives]
        return cls(tuple(nouns + adjectives), ("noun",) * len(nouns) + ("adj",) * len(adjectives),
                   ("user.noun",) * len(nouns) + ("user.adj",) * len(adjectives))

    def files(self) -> list[str]:
        return list(dict.fromkeys(self.lexnames))

    def select(self, exclude_files: Iterable[str] = ()) -> "Vocabulary":
        """The words whose lexicographer file is not in ``exclude_files``."""
        drop = set(exclude_files)
        keep = [i for i, f in enumerate(self.lexnames) if f not in drop]
        return Vocabulary(tuple(self.words[i] for i in keep), tuple(self.pos[i] for i in keep),
                          tuple(self.lexnames[i] for i in keep))

    def sample(self, n: int, seed: int = 0) -> "Vocabulary":
        """``n`` words drawn without replacement (``numpy`` at ``seed``), kept in their original order: a quick
        list for notebooks and smoke runs (the references mine the whole list)."""
        import numpy as np

        if n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), size=int(n), replace=False))
        return Vocabulary(tuple(self.words[i] for i in keep), tuple(self.pos[i] for i in keep),
                          tuple(self.lexnames[i] for i in keep))

    def split(self, dedup: str = "first") -> tuple[list[str], list[str]]:
        """(nouns, adjectives), each word once. ``dedup="first"``: a word keeps its first occurrence in file
        order (NegLabel and CSP read files in turn and skip words seen before); ``"noun"``: a word that is also
        a noun stays a noun only (AdaNeg's rule)."""
        if dedup not in ("first", "noun"):
            raise ValueError(f"dedup={dedup!r}: choose 'first' or 'noun'")
        nouns, adjs, seen = [], [], set()
        order = sorted(range(len(self)), key=lambda i: self.pos[i] != "noun") if dedup == "noun" else range(len(self))
        for i in order:
            w = self.words[i]
            if w in seen:
                continue
            seen.add(w)
            (nouns if self.pos[i] == "noun" else adjs).append(w)
        return nouns, adjs


def lemma_text(lemma: str) -> str:
    """A WordNet lemma as text: adjective marker removed, underscores to spaces, lower case."""
    return _MARKER.sub("", lemma).replace("_", " ").lower()


def parse_wordnet_data(path: str | Path) -> Iterator[tuple[str, str]]:
    """``(lexname, first lemma)`` for every synset of a WordNet ``data.noun`` / ``data.adj`` file, in file order.

    A synset line is ``offset lex_filenum ss_type w_cnt word lex_id ...`` (wndb(5WN)); ``w_cnt`` is hexadecimal.
    Lines starting with two spaces are the licence header.
    """
    path = Path(path)
    with open(path, encoding="latin-1") as fh:
        for number, line in enumerate(fh, 1):
            if line.startswith("  ") or not line.strip():
                continue
            fields = line.split(" ")
            try:
                lexfile, n_words, word = int(fields[1]), int(fields[3], 16), fields[4]
            except (IndexError, ValueError) as err:
                raise ValueError(f"{path}:{number}: not a WordNet data line ({err}); give the folder of "
                                  "data.noun / data.adj (Debian: /usr/share/wordnet)") from None
            if n_words < 1 or lexfile not in LEXNAMES:
                raise ValueError(f"{path}:{number}: unexpected lexicographer file {lexfile} or word count {n_words}")
            yield LEXNAMES[lexfile], lemma_text(word)


def wordnet_vocabulary(wordnet_dir: str | Path) -> Vocabulary:
    """Nouns and adjectives of a WordNet database folder: first lemma per synset, once per lexicographer file,
    files in sorted name order (``adj.*`` before ``noun.*``), words in database order within a file."""
    folder = Path(wordnet_dir)
    missing = [n for n in ("data.noun", "data.adj") if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: no {' / '.join(missing)}; install WordNet 3.0 (Debian: apt-get install "
                          "wordnet-base, files in /usr/share/wordnet) or pass its dict folder")
    per_file: dict[str, dict[str, None]] = {}
    for name in ("data.adj", "data.noun"):
        for lexname, word in parse_wordnet_data(folder / name):
            per_file.setdefault(lexname, {})[word] = None
    rows = [(lex, w) for lex in sorted(per_file) for w in per_file[lex]]
    return Vocabulary(tuple(w for _, w in rows), tuple(lex.split(".")[0] for lex, _ in rows),
                      tuple(lex for lex, _ in rows))


def write_vocab(vocab: Vocabulary, path: str | Path) -> str:
    """Write ``lexname<TAB>word`` lines, gzip with a fixed timestamp (same bytes on every run); returns sha256."""
    text = "".join(f"{lex}\t{w}\n" for lex, w in zip(vocab.lexnames, vocab.words))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            gz.write(text.encode("utf-8"))
    return sha256_of(path)


def read_vocab(path: str | Path = WORDNET_VOCAB, pos: str = "noun") -> Vocabulary:
    """Read a word list: ``lexname<TAB>word`` lines (the shipped format; ``adj.*`` files are adjectives) or
    plain ``word`` lines, all of part of speech ``pos``. ``.gz`` files are decompressed. Blank lines and lines
    starting with ``#`` are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word list {path} does not exist; build the WordNet one with `clipos-lab vocab` "
                                "or give a text file with one word per line")
    if pos not in ("noun", "adj"):
        raise ValueError(f"pos={pos!r}: choose 'noun' or 'adj'")
    stat = path.stat()
    return _parsed_vocab(str(path.resolve()), pos, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _parsed_vocab(path: str, pos: str, mtime_ns: int, size: int) -> Vocabulary:
    """:func:`read_vocab`'s parse, kept per (file, version): every negative-label fit of a suite reads the same
    70,000-line list (0.3 s a read); a changed file (time or size) is read again. Vocabulary is immutable."""
    path = Path(path)
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode("utf-8") if path.suffix == ".gz" else raw.decode("utf-8")
    words, kinds, files = [], [], []
    for line in io.StringIO(text):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        lex, _, word = line.partition("\t") if "\t" in line else (f"user.{pos}", "", line)
        word = word.strip()
        if not word:
            raise ValueError(f"{path}: empty word in line {line!r}")
        words.append(word)
        kinds.append("adj" if lex.startswith("adj") else "noun" if lex.startswith("noun") else pos)
        files.append(lex)
    if not words:
        raise ValueError(f"word list {path} has no words")
    return Vocabulary(tuple(words), tuple(kinds), tuple(files))


def build_wordnet_vocab(wordnet_dir: str | Path, out_dir: str | Path | None = None, overwrite: bool = False,
                        source: str = "") -> Path:
    """Build ``wordnet-3.0.tsv.gz`` and its README (source, rule, counts, sha256) in ``out_dir``."""
    out_dir = Path(VOCAB_DIR if out_dir is None else out_dir)
    target = out_dir / WORDNET_VOCAB.name
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists; pass --overwrite to replace it")
    vocab = wordnet_vocabulary(wordnet_dir)
    digest = write_vocab(vocab, target)
    counts = {f: vocab.lexnames.count(f) for f in vocab.files()}
    lines = [f"| `{f}` | {n} |" for f, n in counts.items()]
    readme = README.format(source=source or str(Path(wordnet_dir).resolve()), sha=digest, n=len(vocab),
                           nouns=vocab.pos.count("noun"), adjs=vocab.pos.count("adj"), table="\n".join(lines))
    with atomic_path(out_dir / "README.md") as tmp:
        tmp.write_text(readme, encoding="utf-8")
    with atomic_path(out_dir / "LICENSE-WordNet.txt") as tmp:
        tmp.write_text(wordnet_licence(Path(wordnet_dir) / "data.noun"), encoding="utf-8")
    return target


def wordnet_licence(data_file: str | Path) -> str:
    """The licence notice a WordNet data file carries in its header (it must travel with every copy)."""
    with open(data_file, encoding="latin-1") as fh:
        header = [line[2:].split(" ", 1)[-1].rstrip() for line in fh if line.startswith("  ")]
    return "\n".join(header).strip() + "\n"


README = """# WordNet 3.0 word list for negative-label mining

`wordnet-3.0.tsv.gz`: gzip text, one `lexname<TAB>word` line per word. Built by
`python -m clipos_lab vocab --wordnet <dir>` (`clipos_lab.negatives.vocab.build_wordnet_vocab`).

- **Source:** {source}
- **Rule:** for every synset of `data.noun` and `data.adj`, its first lemma; adjective markers `(a)`, `(p)`,
  `(ip)` removed; underscores to spaces; lower case; each word once per lexicographer file (first occurrence).
  Files in sorted name order, words in database (offset) order. Verbs and adverbs are not included.
- **Words:** {n} ({nouns} noun lines, {adjs} adjective lines; a word may appear in several files).
- **sha256** of `wordnet-3.0.tsv.gz`: `{sha}`
- **Licence:** WordNet 3.0 licence (Princeton University), which permits redistribution with its notice:
  `LICENSE-WordNet.txt`, copied from the header of `data.noun`.

NegLabel's reference lists (`txtfiles/` of XueJiang16/NegLabel) were made with the same one-word-per-synset rule
from the lexicographer source files; they lack `noun.animal` and `noun.food`, which the NegLabel method here
also leaves out by default (`exclude_files`).

| lexicographer file | words |
|---|---|
{table}
"""

"""Published reference numbers, to show beside a run of the real protocol (specs named ``paper-*``).

These are **published numbers, not results of this code**: ImageNet-1k as ID, CLIP ViT-B/16 (OpenAI weights),
FPR95 / AUROC in percent averaged over the four OOD sets iNaturalist, SUN, Places and Textures, as reported in
the LoCoOp paper (Miyai et al., 2023). Prompt-learning rows are 16-shot; MCM, GL-MCM and NegLabel are
zero-shot. FPR95 there uses the MCM / LoCoOp convention (ID positive), the same as :mod:`clipos_lab.metrics`.
The CLIP-OS paper reports other protocols (CIFAR / ImageNet-100, 1- and 2-shot); its numbers are not listed
here. A pocket-model run is not comparable with any of these numbers.
"""

from __future__ import annotations

from typing import Iterable

SOURCE = ("published numbers (LoCoOp paper): ImageNet-1k ID, CLIP ViT-B/16 OpenAI, 16-shot for prompt learning "
          "(MCM, GL-MCM, NegLabel zero-shot), FPR95 / AUROC in % averaged over iNaturalist, SUN, Places, Textures")

# (method, score) -> published values in percent
PUBLISHED: dict[tuple[str, str], dict] = {
    ("MCM", "MCM"): {"FPR95": 42.7, "AUROC": 90.8, "setting": "zero-shot"},
    ("GL-MCM", "GL-MCM"): {"FPR95": 35.5, "AUROC": 90.8, "setting": "zero-shot"},
    ("CoOp", "MCM"): {"FPR95": 36.8, "AUROC": 91.9, "setting": "16-shot"},
    ("CoOp", "GL-MCM"): {"FPR95": 30.7, "AUROC": 91.8, "setting": "16-shot"},
    ("LoCoOp", "MCM"): {"FPR95": 34.0, "AUROC": 92.7, "setting": "16-shot"},
    ("LoCoOp", "GL-MCM"): {"FPR95": 28.7, "AUROC": 93.5, "setting": "16-shot"},
    ("NegLabel", "NegLabel"): {"FPR95": 25.4, "AUROC": 94.2, "setting": "zero-shot"},
}


def is_paper_spec(name: str) -> bool:
    """Benchmarks that follow a paper's protocol are named ``paper-...``; only they get reference numbers."""
    return str(name).startswith("paper-")


def lookup(method: str, score: str) -> dict | None:
    """The published entry for (method, score), or None."""
    return PUBLISHED.get((method, score))


def reference_rows() -> list[dict]:
    """The published numbers as table rows (values in percent)."""
    return [{"method": m, "score": s, **v} for (m, s), v in PUBLISHED.items()]


def beside_table(summary: Iterable[dict]):
    """Our OOD-average AUROC / FPR95 (runner summary rows; mean ± std over seeds, %) next to the published
    numbers (%), one row per (method, score, shots); methods without a published number show a dash."""
    from ..evaluation import tables as T

    table = T.summary_table(summary, ("AUROC", "FPR95")).drop(columns="ACC", errors="ignore")
    table = table.rename(columns={"AUROC": "AUROC (ours)", "FPR95": "FPR95 (ours)"})
    refs = [lookup(m, s) for m, s in zip(table["method"], table["score"])]
    table["AUROC (published)"] = [f"{r['AUROC']:.1f}" if r else "–" for r in refs]
    table["FPR95 (published)"] = [f"{r['FPR95']:.1f}" if r else "–" for r in refs]
    table["published setting"] = [r["setting"] if r else "–" for r in refs]
    return table


def beside_markdown(summary: Iterable[dict]) -> str:
    """:func:`beside_table` as Markdown, with the source of the published numbers."""
    from ..evaluation import tables as T

    return T.to_markdown(beside_table(summary), f"_Ours: this run (mean ± std over seeds, %). Published: {SOURCE}._")


__all__ = ["PUBLISHED", "SOURCE", "beside_markdown", "beside_table", "is_paper_spec", "lookup", "reference_rows"]

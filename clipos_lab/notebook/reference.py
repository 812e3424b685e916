"""Published reference numbers, to show beside a run of the real protocol (specs named ``paper-*``).

These are **published numbers, not results of this code**: ImageNet-1k as ID, CLIP ViT-B/16 (OpenAI weights),
FPR95 / AUROC in percent averaged over the four OOD sets iNaturalist, SUN, Places and Textures, as reported in
the LoCoOp paper (Miyai et al., 2023) or, for rows with a ``source``, by the paper or repository named in
:data:`SOURCES`. Prompt-learning rows are 16-shot; MCM, GL-MCM, NegLabel, CSP and CLIPN are zero-shot; AdaNeg is
test-time (transductive: its scores depend on the test stream). FPR95 there is MCM / LoCoOp's: ID positive,
as in :mod:`clipos_lab.evaluation.metrics`, read with their closest-recall rule (``fpr95_rule="closest"`` here;
our default rule is ``"first"``).
The CLIP-OS paper reports other protocols (CIFAR / ImageNet-100, 1- and 2-shot); its numbers are not listed
here. A pocket-model run is not comparable with any of these numbers.
"""

from __future__ import annotations

from typing import Iterable

SOURCE = ("published numbers (LoCoOp paper; NegLabel, CSP, AdaNeg, FA, GalLoP from their papers / READMEs, see "
          "reference.SOURCES): ImageNet-1k ID, CLIP ViT-B/16 OpenAI, 16-shot for prompt learning, FPR95 / AUROC in % "
          "averaged over iNaturalist, SUN, Places, Textures")

# (method, score) -> published values in percent
PUBLISHED: dict[tuple[str, str], dict] = {
    ("MCM", "MCM"): {"FPR95": 42.7, "AUROC": 90.8, "setting": "zero-shot"},
    ("GL-MCM", "GL-MCM"): {"FPR95": 35.5, "AUROC": 90.8, "setting": "zero-shot"},
    ("CoOp", "MCM"): {"FPR95": 36.8, "AUROC": 91.9, "setting": "16-shot"},
    ("CoOp", "GL-MCM"): {"FPR95": 30.7, "AUROC": 91.8, "setting": "16-shot"},
    ("LoCoOp", "MCM"): {"FPR95": 34.0, "AUROC": 92.7, "setting": "16-shot"},
    ("LoCoOp", "GL-MCM"): {"FPR95": 28.7, "AUROC": 93.5, "setting": "16-shot"},
    # the field's newer methods; each row names where its numbers come from (checked: see SOURCES)
    ("NegLabel", "NegLabel"): {"FPR95": 25.40, "AUROC": 94.21, "setting": "zero-shot", "source": "neglabel"},
    ("CSP", "CSP"): {"FPR95": 17.51, "AUROC": 95.76, "setting": "zero-shot", "source": "csp"},
    ("AdaNeg", "AdaNeg"): {"FPR95": 18.92, "AUROC": 96.66, "setting": "test-time (transductive)",
                           "source": "adaneg"},
    ("FA", "MCM"): {"FPR95": 25.05, "AUROC": 93.96, "setting": "16-shot, K = 3", "source": "fa"},
    ("GalLoP", "GL-MCM"): {"FPR95": 27.3, "AUROC": 93.2, "setting": "16-shot", "source": "gallop"},
    ("CLIPN", "ATD"): {"FPR95": 29.46, "AUROC": 93.45, "setting": "zero-shot (CLIPN weights)", "source": "issue"},
}

# where the rows marked with a "source" come from, and how each number was checked
SOURCES = {
    "neglabel": "NegLabel paper (Jiang et al., ICLR 2024), ImageNet-1k table; the same 25.40 / 94.21 are the "
                "baseline that CSP's abstract (-7.89 FPR95) and AdaNeg's abstract (-6.48 FPR95, +2.45 AUROC) "
                "subtract from",
    "csp": "CSP paper (Chen et al., NeurIPS 2024); FPR95 checked against its abstract (25.40 - 7.89 = 17.51), "
           "AUROC not checked (paper table not available offline)",
    "adaneg": "AdaNeg paper (Zhang & Zhang, NeurIPS 2024); both checked against its abstract (NegLabel's 25.40 - "
              "6.48 = 18.92, 94.21 + 2.45 = 96.66). The reference repository's script logs 17.95 / 96.70 "
              "(samada off) and 18.73 / 96.47 (samada on) for its own reruns (YBZh/OpenOOD-VLM, "
              "scripts/ood/adaneg/imagenet.sh)",
    "fa": "FA reference README (0xFAFA/FA, commit 9cf7f88c), 16-shot ImageNet-1k models, K = 3 (the config's); "
          "the README does not say which score (main.py prints MCM and GL-MCM). Issue 20's 27.81 / 93.26 "
          "(1-shot) could not be checked and is not listed",
    "gallop": "GalLoP reference README (MarcLafon/gallop, commit f75999e1), ImageNet table, GalLoP row",
    "issue": "as collected in issue 20; not checked against the CLIPN paper here",
}


def is_paper_spec(name: str) -> bool:
    """Benchmarks that follow a paper's protocol are named ``paper-...``; only they get reference numbers."""
    return str(name).startswith("paper-")


def lookup(method: str, score: str) -> dict | None:
    """The published entry for (method, score), or None."""
    return PUBLISHED.get((method, score))


def reference_rows() -> list[dict]:
    """The published numbers as table rows (values in percent)."""
    return [{"method": m, "score": s, **{k: x for k, x in v.items() if k != "source"},
             "source": SOURCES.get(v.get("source"), "LoCoOp paper (Miyai et al., 2023)")}
            for (m, s), v in PUBLISHED.items()]


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


__all__ = ["PUBLISHED", "SOURCE", "SOURCES", "beside_markdown", "beside_table", "is_paper_spec", "lookup",
           "reference_rows"]

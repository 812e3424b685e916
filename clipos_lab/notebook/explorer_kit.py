"""What every explorer shares: printed lines wrapped between words, controls wired to one redraw.

Explorers (:mod:`.relevance_view`, :mod:`.threshold_view`, :mod:`.embedding_view`, :mod:`.results_view`) degrade
to static figures when a notebook runs headless. With ``interactive=True`` (JupyterLab) an explorer returns a
widget box whose figure redraws when a control changes; its numbers are printed inside the widget only, so no
stale copy stays above it. With ``interactive=False`` (papermill, nbmake, reports) it prints the numbers for the
given settings, saves the figure when ``path`` is given and returns the matplotlib Figure.
"""

from __future__ import annotations

import textwrap

WRAP = 110  # characters per printed line: long summaries wrap between words, never inside one


def wrap(text: str) -> str:
    """``text`` wrapped at :data:`WRAP` characters on word boundaries (continuation lines indented)."""
    return "\n".join(textwrap.fill(line, WRAP, subsequent_indent="    ", break_long_words=False,
                                    break_on_hyphens=False) for line in text.splitlines())


def live(controls, redraw):
    """Wire ``controls`` to ``redraw()`` and draw once; ``redraw`` prints and displays inside its own Output."""
    for control in controls:
        control.observe(lambda *_: redraw(), names="value")
    redraw()

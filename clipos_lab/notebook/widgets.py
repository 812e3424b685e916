"""ipywidgets explorers that degrade to static figures when a notebook runs headless (one module per explorer).

:mod:`.relevance_view` (stage 1 maps), :mod:`.threshold_view` (thresholds and errors), :mod:`.embedding_view`
(the outlier map), :mod:`.results_view` (a benchmark run), sharing :mod:`.explorer_kit`. Every name stays
importable from here, as before.
"""

from ..viz import static as V  # noqa: F401  (kept: tests and notebooks patch widgets.V)
from .embedding_view import embedding_explorer, parents_view
from .explorer_kit import WRAP, live, wrap
from .relevance_view import (
    object_box,
    object_boxes,
    object_regions,
    relevance_explorer,
    relevance_view,
    typical_example,
)
from .results_view import results_explorer, results_figure
from .threshold_view import ImageLookup, score_explorer, threshold_explorer, threshold_view

__all__ = ["WRAP", "ImageLookup", "embedding_explorer", "live", "object_box", "object_boxes", "object_regions",
           "parents_view", "relevance_explorer",
           "relevance_view", "results_explorer", "results_figure", "score_explorer", "threshold_explorer",
           "threshold_view", "typical_example", "wrap"]

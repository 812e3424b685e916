"""Static matplotlib figures for notebooks, papermill runs and reports (one module per kind of figure).

:mod:`.figures` (basics, colours, overlays), :mod:`.image_figures`, :mod:`.score_figures` (histograms),
:mod:`.metric_figures` (ROC, losses, summary dots), :mod:`.embedding_figures`; every name is importable from here,
as before.
"""

from .embedding_figures import embedding_scatter, group_kind, group_styles, small_multiples
from .figures import (
    DPI,
    ID_COLOUR,
    OOD_COLOUR,
    OOD_STYLES,
    SCORE_AXIS,
    as_numpy,
    new_figure,
    overlay,
    save,
    to_rgb_array,
    upsample,
)
from .image_figures import image_grid, map_grid, relevance_panel
from .metric_figures import fitted_limits, loss_curves, roc_curves, set_metric_limits, summary_dots
from .score_figures import hist_pair, score_histogram_grid, score_histograms, threshold_figure, value_histogram

_figure, _numpy, _hist_pair, _fitted_limits = new_figure, as_numpy, hist_pair, fitted_limits  # older spellings

__all__ = ["DPI", "ID_COLOUR", "OOD_COLOUR", "OOD_STYLES", "SCORE_AXIS", "as_numpy", "embedding_scatter",
           "fitted_limits", "group_kind", "group_styles", "hist_pair", "image_grid", "loss_curves", "map_grid",
           "new_figure", "overlay", "relevance_panel", "roc_curves", "save", "score_histogram_grid",
           "score_histograms", "set_metric_limits", "small_multiples", "summary_dots", "threshold_figure",
           "to_rgb_array", "upsample", "value_histogram"]

"""Figures and the numbers behind them, for notebooks and reports.

* :mod:`.static`: matplotlib figures (papermill, nbmake, reports) - every function returns its Figure and
  saves it when given ``path``;
* :mod:`.interactive`: plotly figures with hover text for JupyterLab, saved as offline HTML;
* :mod:`.embedding`: 2-D projections (UMAP / PCA), outlier provenance, distance of outliers to real OOD;
* :mod:`.analysis`: thresholds, worst mistakes, mask agreement and localisation.

Scores are higher = more in-distribution everywhere; titles and axes say so.
"""

from .analysis import (
                       format_threshold_stats,
                       mask_iou,
                       mask_localisation,
                       patch_box_cover,
                       threshold_at_tpr,
                       threshold_stats,
                       worst_mistakes,
)
from .embedding import (
                       PROJECTIONS,
                       distance_to_ood,
                       format_distance,
                       mmd_rbf,
                       nearest_cosine,
                       project,
                       provenance_labels,
)
from .spread import gain_strips
from .static import (
                       embedding_scatter,
                       image_grid,
                       loss_curves,
                       map_grid,
                       overlay,
                       relevance_panel,
                       roc_curves,
                       save,
                       score_histogram_grid,
                       score_histograms,
                       small_multiples,
                       summary_dots,
                       threshold_figure,
                       upsample,
                       value_histogram,
)

__all__ = ["PROJECTIONS", "distance_to_ood", "embedding_scatter", "format_distance", "format_threshold_stats",
           "gain_strips", "image_grid", "loss_curves", "map_grid", "mask_iou", "mask_localisation", "mmd_rbf",
           "nearest_cosine",
           "overlay", "patch_box_cover", "project", "provenance_labels", "relevance_panel", "roc_curves", "save",
           "score_histogram_grid", "score_histograms", "small_multiples", "summary_dots", "threshold_at_tpr",
           "threshold_figure", "threshold_stats", "upsample", "value_histogram", "worst_mistakes"]

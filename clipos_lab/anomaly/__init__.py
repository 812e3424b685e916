"""Zero- and few-shot anomaly detection and segmentation from CLIP patch tokens (see docs/anomaly.md).

data (pocket products with defects, MVTec-style folders, specs), tokens (multi-layer patch tokens, cached),
base (the method interface), memory (few-shot patch memory), mutual (MuSc-style zero-shot mutual scoring),
prompts (WinCLIP-style state prompts), metrics (image / pixel AUROC, AUPRO, F1-max), runner (the benchmark).
"""

from .base import AnomalyMethod, AnomalyScores
from .data import AnomalyCategory, AnomalyDataset, AnomalySpec, WorldDefectDataset, mvtec_category, world_category
from .memory import PatchMemory
from .metrics import anomaly_metrics, aupro, f1_max, image_auroc, pixel_auroc
from .mutual import MutualScoring
from .prompts import StatePrompts
from .runner import METHODS, AnomalyResult, build_anomaly_method, run_anomaly
from .tokens import TokenBank, encode_tokens, tokens_of_images

__all__ = ["AnomalyCategory", "AnomalyDataset", "AnomalyMethod", "AnomalyResult", "AnomalyScores", "AnomalySpec",
           "METHODS", "MutualScoring", "PatchMemory", "StatePrompts", "TokenBank", "WorldDefectDataset",
           "anomaly_metrics", "aupro", "build_anomaly_method", "encode_tokens", "f1_max", "image_auroc",
           "mvtec_category", "pixel_auroc", "run_anomaly", "tokens_of_images", "world_category"]

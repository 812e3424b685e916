"""Zero- and few-shot anomaly detection and segmentation from CLIP patch tokens (see docs/anomaly.md).

dataset (the shape of the data), masks (masks read like their images), data (pocket products with defects,
MVTec-style folders, specs), visa (VisA's split file), tokens (multi-layer patch tokens, cached), base (the
method interface), memory (few-shot patch memory), mutual (mutual scoring and its MuSc preset), rescore (RsCIN),
prompts (WinCLIP-style state prompts), windows (WinCLIP, WinCLIP+), registry (name -> method: the same contract
as the OOD methods), metrics (image / pixel AUROC, AUPRO, F1-max), runner (the benchmark).
"""

from .base import AnomalyMethod, AnomalyScores
from .data import AnomalySpec, WorldDefectDataset, mvtec_category, world_category
from .dataset import AnomalyCategory, AnomalyDataset
from .memory import PatchMemory
from .metrics import anomaly_metrics, aupro, f1_max, image_auroc, pixel_auroc
from .mutual import MuSc, MutualScoring
from .prompts import StatePrompts
from .registry import REGISTRY, build_anomaly_method, register
from .runner import AnomalyResult, run_anomaly
from .tokens import TokenBank, encode_tokens, tokens_of_images
from .visa import visa_category

__all__ = ["AnomalyCategory", "AnomalyDataset", "AnomalyMethod", "AnomalyResult", "AnomalyScores", "AnomalySpec",
           "REGISTRY", "MuSc", "MutualScoring", "PatchMemory", "StatePrompts", "TokenBank", "WorldDefectDataset",
           "anomaly_metrics", "aupro", "build_anomaly_method", "encode_tokens", "f1_max", "image_auroc",
           "mvtec_category", "pixel_auroc", "register", "run_anomaly", "tokens_of_images", "visa_category",
           "world_category"]

"""clipos_lab: few-shot and zero-shot OOD detection with CLIP (CLIP-OS and its baselines), Jupyter-first.

The pipeline reads in this order (one folder per step; ``docs/`` describes the method)::

    data/        which images: datasets, few-shot draws, benchmark specs
    backbone     a frozen open_clip ViT: global, patch and value-value tokens
    features     FeatureBank: every image encoded once and cached
    clipos/      CLIP-OS stage by stage: relevance -> synthesis -> prompts
    clipn/       CLIPN's no-text encoder: losses, training, released weights
    methods/     MCM, GL-MCM, CLIPN, CoOp, LoCoOp, CLIP-OS behind fit / score / predict
    evaluation/  scores, metrics, the benchmark runner, tables
    anomaly/     anomaly maps: patch memory, mutual scoring, state prompts (docs/anomaly.md)

The names below are the public API; they are imported on first use, so ``import clipos_lab`` stays fast::

    from clipos_lab import Backbone, BenchmarkSpec, run_benchmark
    result = run_benchmark(BenchmarkSpec.from_yaml(default_benchmark_path()), Backbone.load())
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "Backbone": "backbone", "FeatureBank": "features",
    "BenchmarkSpec": "data", "FolderDataset": "data", "WorldDataset": "data", "TorchvisionDataset": "data",
    "default_benchmark_path": "data", "few_shot": "data", "DataError": "data",
    "Method": "methods", "build_method": "methods", "register": "methods", "methods": "methods",
    "NoTextEncoder": "clipn", "load_released": "clipn",
    "PromptConfig": "clipos.prompts",
    "run_benchmark": "evaluation.runner", "rerun": "evaluation.runner", "RunConfig": "evaluation.record",
    "run_suite": "evaluation.suite", "ood_metrics": "evaluation.metrics",
    "run_sweep": "sweep",
    "AnomalySpec": "anomaly", "run_anomaly": "anomaly", "PatchMemory": "anomaly", "MutualScoring": "anomaly",
    "StatePrompts": "anomaly",
}
# every registered method class (MCM, GLMCM, CoOp, LoCoOp, CLIPOS, CLIPN, ...) is public too: see __getattr__

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    elif name[:1].isupper():  # a registered method's class, by its class name (the registry decides)
        value = importlib.import_module(".methods.registry", __name__).class_named(name)
        if value is None:
            raise AttributeError(f"module 'clipos_lab' has no attribute {name!r}")
    else:  # lower-case names are submodules (``from clipos_lab import scores``): the import system loads them
        raise AttributeError(f"module 'clipos_lab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    from .methods.registry import REGISTRY

    return sorted(set(globals()) | set(_API) | {e.cls.__name__ for e in REGISTRY.values()})

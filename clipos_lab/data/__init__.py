"""Data: image decoding (images), datasets (datasets), few-shot sampling and manifests (fewshot), benchmark
YAML specs (spec). Everything here is about *which pixels*; nothing here knows about models."""

from .datasets import (
                       ID_SHAPES,
                       NEAR_OOD_SHAPES,
                       TORCHVISION_DATASETS,
                       FolderDataset,
                       ImageDataset,
                       ListDataset,
                       Sample,
                       TorchvisionDataset,
                       WorldDataset,
                       write_folder,
)
from .errors import DataError, ImageLoadError, UnreadableFolderWarning
from .fewshot import few_shot, read_manifest, replay_manifest, write_manifest
from .images import IMAGE_EXTENSIONS, load_image
from .spec import DATASET_TYPES, BenchmarkSpec, build_dataset, default_benchmark_path

__all__ = ["ListDataset", "DATASET_TYPES", "ID_SHAPES", "IMAGE_EXTENSIONS", "NEAR_OOD_SHAPES", "TORCHVISION_DATASETS",
           "BenchmarkSpec", "DataError", "FolderDataset", "ImageDataset", "ImageLoadError", "Sample",
           "TorchvisionDataset", "UnreadableFolderWarning", "WorldDataset", "build_dataset", "default_benchmark_path",
           "few_shot",           "load_image", "read_manifest", "replay_manifest", "write_folder", "write_manifest"]

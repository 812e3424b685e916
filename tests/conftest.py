"""Shared fixtures: a tiny open_clip ViT (random weights saved to and reloaded from a local file)."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "clipos_lab_numba"))
# xdist runs two workers on two cores: one thread each avoids oversubscription (which slows small ops 30x)
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))

TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """A tiny ViT config JSON and a checkpoint of its seeded random weights."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_model")
    config = folder / "tiny-vit.json"
    config.write_text(json.dumps(TINY_CONFIG))
    torch.manual_seed(123)
    model = CLIP(**TINY_CONFIG)
    checkpoint = folder / "tiny-vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    return config, checkpoint


@pytest.fixture(scope="session")
def tiny_backbone(tiny_files):
    from clipos_lab.backbone import Backbone

    config, checkpoint = tiny_files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Backbone.load(config=config, checkpoint=checkpoint, surgery_blocks=1)


@pytest.fixture(scope="session")
def pocket_backbone():
    """The shipped pocket model (trained weights, checked against their sha256)."""
    from clipos_lab.backbone import Backbone

    return Backbone.load()

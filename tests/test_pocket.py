import json

import numpy as np
import pytest
import torch

from clipos_lab.errors import BackboneError
from clipos_lab.pocket import train as P
from clipos_lab.pocket import world as W
from clipos_lab.resources import verify_pocket_weights

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture
def tiny_cfg(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return lambda **kw: P.TrainConfig(model_config=str(path), batch_size=24, warmup_steps=2, curriculum_steps=4,
                                      eval_every=1000, eval_images=24, checkpoint_every=3, **{"lr": 2e-3, **kw})


def test_a_few_steps_lower_the_loss(tiny_cfg, tmp_path):
    P.train(tmp_path / "run", tiny_cfg(steps=30), progress=False)
    log = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["log"]
    losses = [row["loss"] for row in log]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.93 * np.mean(losses[:5])  # measured: 7.10 -> 6.18
    assert (tmp_path / "run" / "training_log.csv").read_text().startswith("step,loss")


def test_resume_continues_the_same_run(tiny_cfg, tmp_path):
    P.train(tmp_path / "whole", tiny_cfg(steps=6), progress=False)
    P.train(tmp_path / "split", tiny_cfg(steps=6), progress=False, max_steps_this_sitting=3)
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["step"] == 3
    P.train(tmp_path / "split", progress=False)  # resumes with the stored config
    assert_same_run(tmp_path / "whole", tmp_path / "split", steps=6)


def assert_same_run(expected_dir, got_dir, steps: int) -> dict:
    """Both folders' checkpoints hold ``steps`` steps with the same weights and losses; returns the second."""
    expected = torch.load(expected_dir / "checkpoint.pt", weights_only=False)
    got = torch.load(got_dir / "checkpoint.pt", weights_only=False)
    assert got["step"] == steps
    for name, value in expected["model"].items():
        torch.testing.assert_close(got["model"][name], value, msg=name)
    assert [r["loss"] for r in got["log"]] == pytest.approx([r["loss"] for r in expected["log"]])
    return got


def test_batches_drawn_by_worker_processes_give_the_same_run(tiny_cfg, tmp_path):
    P.train(tmp_path / "here", tiny_cfg(steps=4), progress=False)
    # a second sitting with workers, started mid-run: the loader must hand over steps 2 and 3, in order
    P.train(tmp_path / "ahead", tiny_cfg(steps=4), progress=False, max_steps_this_sitting=2, workers=2)
    P.train(tmp_path / "ahead", progress=False, workers=2)
    ahead = assert_same_run(tmp_path / "here", tmp_path / "ahead", steps=4)
    assert all(t.device.type == "cpu" for t in ahead["model"].values())


def test_training_device_and_workers_are_checked_before_a_step(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackboneError, match="no CUDA GPU"):
        P.train(tmp_path / "run", tiny_cfg(steps=1), progress=False, device="cuda")
    with pytest.raises(BackboneError, match="not a torch device"):
        P.train(tmp_path / "run", tiny_cfg(steps=1), progress=False, device="gpu0")
    with pytest.raises(ValueError, match="--workers"):
        P.train(tmp_path / "run", tiny_cfg(steps=1), progress=False, workers=-1)
    assert not (tmp_path / "run").exists()  # nothing started


def test_export_writes_half_precision_weights_and_checksum(tiny_cfg, tmp_path):
    from clipos_lab.backbone import Backbone, BackboneError

    P.train(tmp_path / "run", tiny_cfg(steps=3), progress=False)
    weights = tmp_path / "out" / "tiny.safetensors"
    digest = P.export(tmp_path / "run", weights)
    assert verify_pocket_weights(weights) == digest
    backbone = Backbone.load(config=tmp_path / "tiny.json", checkpoint=weights)
    assert backbone.encode_images(torch.zeros(1, 3, 32, 32)).patches.shape == (1, 16, 32)
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(BackboneError, match="do not match their checksum"):
        verify_pocket_weights(weights)


def test_missing_pocket_weights_is_a_clear_error(tmp_path):
    from clipos_lab.backbone import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="pocket model weights .* are missing"):
        verify_pocket_weights(tmp_path / "gone.safetensors")


def test_shipped_pocket_model_loads_and_classifies_fresh_images(pocket_backbone):
    """A real test of the shipped weights: zero-shot top-1 over all shapes on images no run has seen."""
    assert pocket_backbone.weights_id.endswith(verify_pocket_weights())
    assert P.POCKET_WEIGHTS.stat().st_size <= 10 * 1024 * 1024
    world = W.World(pocket_backbone.image_size)
    shapes = [W.SHAPES[i % len(W.SHAPES)] for i in range(120)]
    images = torch.stack([pocket_backbone.preprocess(world.image(424242, i, shape=s)) for i, s in enumerate(shapes)])
    feats = torch.nn.functional.normalize(pocket_backbone.encode_images(images, surgery=False).global_, dim=-1)
    text = pocket_backbone.encode_text([f"a photo of a {s}." for s in W.SHAPES])
    top1 = ((feats @ text.T).argmax(1).numpy() == np.arange(120) % len(W.SHAPES)).mean()
    assert top1 >= POCKET_TOP1_FLOOR, f"zero-shot top-1 {top1:.1%} on fresh images"


# chance is 1/12; the shipped model measures 98.5% on 600 test images (benchmarks/pocket_quality.py)
POCKET_TOP1_FLOOR = 0.85


def test_second_stage_starts_from_the_first_stages_weights(tiny_cfg, tmp_path):
    P.train(tmp_path / "stage1", tiny_cfg(steps=3), progress=False)
    # learning rate 0: stage 2 must end exactly where stage 1 ended
    P.train(tmp_path / "stage2", tiny_cfg(steps=2, lr=0.0, init_from=str(tmp_path / "stage1" / "checkpoint.pt")),
            progress=False)
    one = torch.load(tmp_path / "stage1" / "checkpoint.pt", weights_only=False)["model"]
    two = torch.load(tmp_path / "stage2" / "checkpoint.pt", weights_only=False)["model"]
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, msg=name)


def test_a_stage_can_start_from_exported_weights(tiny_cfg, tmp_path):
    # the shipped release is float16 safetensors without heads: a later stage must start from exactly those weights
    from safetensors.torch import load_file

    P.train(tmp_path / "stage1", tiny_cfg(steps=3), progress=False)
    weights = tmp_path / "stage1.safetensors"
    P.export(tmp_path / "stage1", weights, model_name="tiny")
    P.train(tmp_path / "stage2", tiny_cfg(steps=1, lr=0.0, init_from=str(weights)), progress=False)
    two = torch.load(tmp_path / "stage2" / "checkpoint.pt", weights_only=False)["model"]
    for name, value in load_file(str(weights)).items():
        torch.testing.assert_close(two[name], value.float(), msg=name)
    with pytest.raises(ValueError, match="init_from=.*no such file"):
        P.train(tmp_path / "stage3", tiny_cfg(steps=1, init_from=str(tmp_path / "missing.safetensors")),
                progress=False)

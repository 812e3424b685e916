"""Every stage keeps its tensors on the backbone's device, checked on a CPU-only machine with an emulated GPU.

:class:`EmulatedDevice` is a torch function mode that plays a second device ("cuda") on top of the CPU: tensors
moved or created there are tagged (by storage), results of ops on tagged tensors are tagged, ``x.device`` answers
"cuda" for them, and it records what a real GPU would reject: an op mixing tagged tensors with untagged ones that
are not 0-dim, ``numpy()`` of a tagged tensor, and indexing a host tensor with a device index. The pipeline then
runs exactly as it would on a GPU, with the numbers computed on the CPU.
"""

from __future__ import annotations

import traceback

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import WorldDataset
from clipos_lab.features import FeatureBank
from clipos_lab.methods import build_method

FAKE = torch.device("cuda")
_MIXING_ALLOWED = {"__setitem__", "copy_"}  # a GPU accepts host values copied in


class EmulatedDevice(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.tagged: set[int] = set()
        self.alive: list[torch.Tensor] = []  # keeps tagged storages alive so their addresses are not reused
        self.violations: list[str] = []

    # ------------------------------------------------------------------------------------------------ tags
    def tag(self, value):
        for t in tree_flatten(value)[0]:
            if isinstance(t, torch.Tensor) and t.numel():
                self.tagged.add(t.untyped_storage().data_ptr())
                self.alive.append(t)
        return value

    def on_device(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t.numel() > 0 and t.untyped_storage().data_ptr() in self.tagged

    def _violation(self, what: str):
        stack = [f for f in traceback.extract_stack() if "clipos_lab" in f.filename and "tests" not in f.filename]
        where = f"{stack[-1].filename.split('clipos_lab/')[-1]}:{stack[-1].lineno}" if stack else "?"
        self.violations.append(f"{what} at {where}")

    @staticmethod
    def _is_fake(device) -> bool:
        return device is not None and not isinstance(device, torch.dtype) and torch.device(device).type == "cuda"

    # --------------------------------------------------------------------------------------------- dispatch
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        getter = getattr(getattr(func, "__self__", None), "__name__", None) if name == "__get__" else None
        if getter == "device":
            return FAKE if self.on_device(args[0]) else func(*args)
        if getter == "is_cuda":
            return self.on_device(args[0])
        if getter == "grad":  # autograd's gradients live with their parameters
            grad = func(*args)
            return self.tag(grad) if grad is not None and self.on_device(args[0]) else grad
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu):
            return self._move(func, args, kwargs)
        if func is torch.Tensor.numpy and self.on_device(args[0]):
            self._violation("numpy() of a device tensor")
        if self._is_fake(kwargs.get("device")):  # a factory (empty, full, arange, as_tensor, ...) on the device
            kwargs["device"] = "cpu"
            return self.tag(func(*args, **kwargs))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on = [t for t in tensors if self.on_device(t)]
        off = [t for t in tensors if not self.on_device(t) and t.dim() > 0 and t.numel() > 0]
        if name == "__getitem__":
            if not self.on_device(args[0]) and on:
                self._violation("a host tensor indexed with a device index")
            off = []
        if on and off and name not in _MIXING_ALLOWED:
            self._violation(f"{name} mixes device and host tensors {[tuple(t.shape) for t in off][:3]}")
        out = func(*args, **kwargs)
        return self.tag(out) if on else out

    def _move(self, func, args, kwargs):
        src = args[0]
        if func is torch.Tensor.cuda:
            target = FAKE
        elif func is torch.Tensor.cpu:
            target = torch.device("cpu")
        else:
            target = None
            for a in [*args[1:], kwargs.get("device")]:
                if isinstance(a, (str, torch.device)):
                    target = torch.device(a)
                elif isinstance(a, torch.Tensor):
                    target = FAKE if self.on_device(a) else torch.device("cpu")
        if target is None:  # a dtype change stays where it is
            out = func(*args, **kwargs)
            return self.tag(out) if self.on_device(src) else out
        plain = tree_map(lambda a: "cpu" if isinstance(a, (str, torch.device)) else a, (args[1:], kwargs))
        plain_args = [a for a in plain[0] if not isinstance(a, torch.Tensor)]
        out = torch.Tensor.to(src, *plain_args, **plain[1]) if func is torch.Tensor.to else src
        if target.type == "cuda":
            return self.tag(out.clone() if out.data_ptr() == src.data_ptr() and not self.on_device(src) else out)
        return out.clone() if self.on_device(src) else out  # a copy to the host is a new, untagged tensor


@pytest.fixture()
def device_backbone(tiny_files):
    """The tiny backbone, told that it lives on "cuda", with its weights tagged as living there."""
    from clipos_lab.backbone import Backbone

    config, checkpoint = tiny_files
    backbone = Backbone.load(config=config, checkpoint=checkpoint, surgery_blocks=1)
    backbone.device = FAKE
    return backbone


def _tag_model(mode: EmulatedDevice, backbone):
    for t in [*backbone.model.parameters(), *backbone.model.buffers()]:
        mode.tag(t)


def test_the_emulated_device_catches_a_host_tensor(device_backbone):
    mode = EmulatedDevice()
    with mode:
        x = torch.ones(3, device="cuda")
        _ = x + torch.ones(3)  # what a GPU rejects
        _ = x.cpu().numpy()  # allowed: copied to the host first
        _ = x * 2.0 + torch.tensor(1.0)  # allowed: Python and 0-dim host scalars
        assert x.device == FAKE and (x + 1).device == FAKE and x.cpu().device.type == "cpu"
    assert len(mode.violations) == 1 and "add" in mode.violations[0]


def test_every_stage_keeps_its_tensors_on_the_backbone_device(device_backbone):
    ds = WorldDataset(n_per_class=3, shapes=("circle", "star", "heart"), image_size=32)
    ood = WorldDataset("background", n_per_class=4, image_size=32)
    mode = EmulatedDevice()
    _tag_model(mode, device_backbone)
    cfg = PromptConfig(epochs=2, progress=False)
    with mode:
        train = FeatureBank.encode(ds, device_backbone, batch_size=4, cache=False, progress=False)
        ood_bank = FeatureBank.encode(ood, device_backbone, batch_size=4, cache=False, progress=False)
        for name in ("MCM", "GL-MCM", "CoOp", "LoCoOp", "CLIP-OS"):
            method = build_method(name, seed=1, prompt=cfg).fit(device_backbone, train)
            assert method.text_.device == FAKE, name
            scores = method.score(ood_bank)
            assert all(isinstance(v, np.ndarray) and len(v) == len(ood_bank) for v in scores.values())
            assert len(method.predict(train)) == len(train)
    assert not mode.violations, "\n".join(dict.fromkeys(mode.violations))


def test_gpu_benchmark_cuda_branch_runs_with_torch_cuda_emulated(monkeypatch, capsys):
    """benchmarks/gpu.py's CUDA branch (synchronise, reset and read peak memory around every stage) end to end:
    torch.cuda's calls are recorded, the pocket model stands in for ViT-B/16 on the CPU."""
    import importlib.util
    from pathlib import Path

    from clipos_lab.backbone import Backbone

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_benchmark", path)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("sync", str(device))))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device=None: calls.append(("reset", str(device))))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Emulated GPU")
    real = Backbone.load
    monkeypatch.setattr(Backbone, "load", classmethod(lambda cls, *a, **k: real("pocket", device="cpu")))
    assert gpu.main(["--classes", "2", "--images", "4", "--epochs", "1", "--batch", "4", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "Emulated GPU" in out and "peak GPU 3.00 GiB" in out
    assert calls.count(("reset", "cuda")) == 3 + 2 * 3  # before each encode, each fit and each scoring
    assert ("sync", "cuda") in calls

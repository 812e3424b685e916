"""Dataclass configs built from user dicts (JSON on the command line, saved checkpoints).

Unknown keys and values of the wrong type are errors that name them, instead of a TypeError from ``__init__``
or a string where a number belongs surfacing mid-training.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path


def config_from_dict(cls, values: dict, what: str = "options"):
    """``cls(**values)`` after checking every key is a field and every value has its default's type (an int is
    accepted where a float is expected; a bool never stands for a number)."""
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(known)}")
    wrong = []
    for f in fields(cls):
        if f.name in values:
            want, got = type(f.default), values[f.name]
            ok = isinstance(got, want) and not (isinstance(got, bool) and want is not bool)
            ok = ok or (want is float and isinstance(got, int) and not isinstance(got, bool))
            if not ok:
                wrong.append(f"{f.name}={got!r} (wants {want.__name__})")
    if wrong:
        raise ValueError(f"{what} of the wrong type: {', '.join(wrong)}")
    return cls(**values)


def start_or_resume(out_dir, cls, cfg=None):
    """A training folder: ``(out, checkpoint path, stored state or None, config)``. A stored checkpoint's config
    wins over ``cfg``, so resuming can never change the run; ``cfg`` defaults to ``cls()``."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.exists() else None
    if state is not None:
        cfg = cls.from_dict(state["config"])
    cfg = cfg or cls()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return out, ckpt_path, state, cfg

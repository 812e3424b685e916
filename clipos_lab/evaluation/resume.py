"""Finished cells kept until their run is written, so a run stopped mid-way (killed, interrupted, a lost node)
resumes without recomputing them.

Each finished cell of a benchmark is saved, in the worker that ran it, as one ``.npz`` (no pickle) under
``<feature cache>/cells/<run key>/``; the run key hashes the run's config and the package's source code, so a
changed option, backbone, spec or line of code never reuses a cell. A run that planned a cell whose file is there
loads it instead of running it; a file that does not load is run again. When the run's files are written, its
cell folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..files import atomic_path


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha1 of every source file of the package: any code change starts the cells afresh."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cell_folder(cache_root: Path, config: dict) -> Path:
    key = hashlib.sha1(json.dumps([config, code_fingerprint()], sort_keys=True, default=str).encode()).hexdigest()
    return Path(cache_root) / "cells" / key[:20]


def cell_path(folder: Path, method: int, shots: int, seed: int) -> Path:
    return Path(folder) / f"m{method}-shots{shots}-seed{seed}.npz"


def save_outcome(outcome, path: Path) -> None:
    """One cell's result as arrays + a JSON header, atomically."""
    arrays = {f"scores/{s}/{name}": np.asarray(v) for s, per in outcome.scores.items() for name, v in per.items()}
    arrays["predicted"] = np.asarray(outcome.predicted)
    if outcome.prompts is not None:
        arrays["prompts"] = np.frombuffer(outcome.prompts, dtype=np.uint8)
    header = {"method": outcome.method, "shots": outcome.shots, "seed": outcome.seed, "seconds": outcome.seconds,
              "draw_seconds": outcome.draw_seconds, "manifest": outcome.manifest, "skipped": outcome.skipped,
              "sets": {s: list(per) for s, per in outcome.scores.items()}}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_outcome(path: Path, outcome_type):
    """The saved result of one cell (``outcome_type`` is :class:`~clipos_lab.evaluation.job.CellOutcome`)."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(data["header"].tobytes())
        scores = {s: {name: data[f"scores/{s}/{name}"] for name in names} for s, names in header["sets"].items()}
        prompts = data["prompts"].tobytes() if "prompts" in data.files else None
        return outcome_type(header["method"], header["shots"], header["seed"], scores, data["predicted"],
                            header["seconds"], header["draw_seconds"], header["manifest"], prompts,
                            header["skipped"])


def readable(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as data:
            json.loads(data["header"].tobytes())
        return True
    except Exception:  # noqa: BLE001 - any unreadable file is simply run again
        return False


def forget(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)

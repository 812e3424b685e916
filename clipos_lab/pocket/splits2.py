"""Class splits of the drawings (pocket v2's benchmarks): ID classes, near-OOD siblings, far-OOD, textures and
unseen concepts, drawn by a seeded rule from the pack's category tree, never by looking at results.

The rule, per split: the *families* are the top-level categories with at least ``min_family`` seen classes (food,
people, recreation, ...); in each family a seeded half of its seen classes (rounded down, at least one) are ID and
the others are **near-OOD** (siblings of ID classes under the same category); the seen classes of every other
category are **far-OOD**; the pack's held-out concepts (classes no pre-training caption names) are **unseen**;
backgrounds alone (held-out pattern drawings or v1's textures) are **textures**. (The pack's two-level
folders, e.g. ``food/fruit``, hold one to three classes each, too few for siblings, so near and far are decided
at the top level.)

Test specs read the ``eval`` drawings (shots: the ``val`` drawings, see :class:`~clipos_lab.data.BenchmarkSpec`);
validation specs read the ``val`` drawings for ID, shots and OOD, with other scene seeds, and are what defaults
may be chosen on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pack import DRAWINGS_DIR, DrawingsPack
from .splits import write_specs

SPLITS_SEED = 0
N_SPLITS = 10
FIRST_DATA_SEED = 500  # split k renders from seeds 500 + 10 k (+ 5 for its validation version)


def families(pack: DrawingsPack, min_family: int = 3) -> dict[str, list[str]]:
    """Top-level category -> its seen classes (sorted), for every category; families have >= ``min_family``."""
    out: dict[str, list[str]] = {}
    for top, subs in sorted(pack.manifest["tree"].items()):
        out[top] = sorted(c for classes in subs.values() for c in classes if not pack.classes[c]["unseen"])
    return {k: v for k, v in out.items() if v}


def drawings_split(pack: DrawingsPack, seed: int, min_family: int = 3) -> dict[str, list[str]]:
    """One split: ``{"id", "near", "far", "unseen"}`` class lists, a pure function of the pack and ``seed``."""
    rng = np.random.default_rng([SPLITS_SEED, int(seed)])
    ids, near, far = [], [], []
    for top, classes in families(pack, min_family).items():
        if len(classes) < min_family:
            far.extend(classes)
            continue
        order = [classes[i] for i in rng.permutation(len(classes))]
        n_id = max(1, len(classes) // 2)
        ids.extend(order[:n_id])
        near.extend(order[n_id:])
    unseen = sorted(c for c, info in pack.classes.items() if info["unseen"])
    return {"id": sorted(ids), "near": sorted(near), "far": sorted(far), "unseen": unseen}


def drawings_spec(split: dict[str, list[str]], data_seed: int, name: str, validation: bool = False,
                  n_per_class: int = 20, n_ood_per_class: int = 8) -> dict:
    """A benchmark spec (as :meth:`BenchmarkSpec.from_dict` reads it) for one split."""
    held = "val" if validation else "eval"
    n_textures = n_ood_per_class * max(1, len(split["near"]))
    return {
        "name": name,
        "id": {"type": "drawings", "classes": split["id"], "split": held, "n_per_class": n_per_class,
               "seed": data_seed},
        "ood": {
            "near-ood": {"type": "drawings", "classes": split["near"], "split": held,
                         "n_per_class": n_ood_per_class, "seed": data_seed + 1},
            "far-ood": {"type": "drawings", "classes": split["far"], "split": held,
                        "n_per_class": n_ood_per_class, "seed": data_seed + 2},
            "unseen": {"type": "drawings", "classes": split["unseen"], "split": "unseen",
                       "n_per_class": n_ood_per_class, "seed": data_seed + 3},
            "textures": {"type": "drawings", "kind": "background", "n_per_class": n_textures,
                         "seed": data_seed + 4},
        },
    }


def drawings_specs(n_splits: int = N_SPLITS, first_data_seed: int = FIRST_DATA_SEED, validation: bool = False,
                   pack: str | Path = DRAWINGS_DIR) -> list[dict]:
    """Split ``k`` (seed ``k``; split 0 is the default benchmark, ``drawings-default``) and its spec; the
    validation version renders other scenes (seeds ``+ 5``) of the ``val`` drawings."""
    p = DrawingsPack(pack)
    suffix, offset = ("-validation", 5) if validation else ("", 0)
    names = ["drawings-default"] + [f"drawings-split{k}" for k in range(1, n_splits)]
    return [drawings_spec(drawings_split(p, k), first_data_seed + 10 * k + offset, names[k] + suffix, validation)
            for k in range(n_splits)]


def write_drawings_specs(folder, n_splits: int = N_SPLITS, validation: bool = False, overwrite: bool = False,
                         pack: str | Path = DRAWINGS_DIR) -> list[Path]:
    """Write :func:`drawings_specs` as ``<folder>/<name>.yaml``; existing files only with ``overwrite``."""
    header = ("# A class split of the drawings (clipos_lab.pocket.splits2; regenerate with\n"
              "# `python -m clipos_lab splits --world 2`). Drawn by a seeded rule, not chosen by results.\n")
    return write_specs(drawings_specs(n_splits, validation=validation, pack=pack), folder, header, overwrite)


__all__ = ["drawings_split", "drawings_spec", "drawings_specs", "families", "write_drawings_specs"]

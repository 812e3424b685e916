"""Which world a notebook's data come from: the one its model was trained for, so that MODEL alone switches them.

Pocket v2 (``MODEL="pocket2"``, the notebooks' default) was trained on world v2's scenes of drawings, so its
notebooks read the drawings benchmarks; v1's pocket model (``MODEL="pocket"``) has never seen a drawing and keeps
the shapes world, and so does any other model (a real CLIP), as before v2. A spec parameter left at ``"default"``
(or empty) resolves here:

========================  =================================  ===================================
parameter                 world 1 (pocket, any other model)  world 2 (pocket2)
========================  =================================  ===================================
benchmark (SPEC)          ``world-default``                  ``drawings-default``
failing-vs-good draws     ``world-split1-validation``,       ``drawings-split1-validation``,
(03: COMPARE_*)           seeds 119 and 118                  seeds 1 and 2
anomaly spec (07)         ``world-anomaly``                  ``drawings-anomaly``
========================  =================================  ===================================

v1's draws 119 and 118 were picked on v1's validation split (docs/robustness.md: 119 lost 10 AUROC points with
the options before issue 21, 118 gained 4); they say nothing about v2's draws, so v2 compares the first two seeds,
by rule and not by any result, on the validation version of drawings split 1 (as v1 uses world split 1's).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..backbone import POCKET2_ALIASES
from ..resources import BENCHMARKS
from . import paths
from .params import parse_list


@dataclass(frozen=True)
class WorldDefaults:
    benchmark: str  # path under assets/benchmarks
    anomaly: str  # a shipped anomaly spec (clipos_lab.anomaly.data.SHIPPED_SPECS)
    compare_spec: str  # a validation benchmark (draws_view.validation_spec)
    compare_seeds: tuple[int, ...]
    compare_why: str


WORLDS = {
    1: WorldDefaults("world-default.yaml", "world-anomaly", "world-split1-validation", (119, 118),
                     "chosen on v1's validation draws (docs/robustness.md): with the options before issue 21, 119 "
                     "lost 10 AUROC points to zero-shot MCM and 118 gained 4"),
    2: WorldDefaults("drawings-splits/drawings-default.yaml", "drawings-anomaly", "drawings-split1-validation", (1, 2),
                     "the first two seeds, not chosen by any result (v1's 119 and 118 were picked on v1's draws and "
                     "say nothing about v2's); whether either draw loses to zero-shot MCM is what the table shows"),
}
DEFAULT = ("", "default", None)


def world_of(backbone=None) -> int:
    """2 for pocket v2 (any weights of its architecture), else 1 (v1's pocket model, a real CLIP, or no model)."""
    return 2 if backbone is not None and getattr(backbone, "name", "") in POCKET2_ALIASES else 1


def defaults(backbone=None) -> WorldDefaults:
    return WORLDS[world_of(backbone)]


def benchmark_path(spec: str = "default", backbone=None):
    """The benchmark YAML for a SPEC parameter: "default" (or empty) is the default benchmark of ``backbone``'s
    world; anything else a path relative to the current folder or the repository."""
    if spec in DEFAULT:
        return BENCHMARKS / defaults(backbone).benchmark
    return paths.resolve_input(spec)


def compare_draws_setup(spec: str = "default", seeds="default", backbone=None):
    """03's failing-vs-good comparison: ``(validation spec, seeds, why those seeds)``. "default" picks the spec
    and seeds of ``backbone``'s world (module docstring); any other spec must be a validation benchmark."""
    from .draws_view import validation_spec

    d = defaults(backbone)
    name = d.compare_spec if spec in DEFAULT else spec
    if seeds in DEFAULT:
        chosen, why = list(d.compare_seeds), f"{name}, seeds {', '.join(map(str, d.compare_seeds))}: {d.compare_why}"
    else:
        chosen = parse_list(seeds, int)
        why = f"{name}, seeds {', '.join(map(str, chosen))} (COMPARE_SEEDS)"
    return validation_spec(name), chosen, why


def anomaly_spec(spec: str = "default", backbone=None, product: str = "", n_good: int = 0, n_per_defect: int = 0):
    """07's anomaly spec restricted to one product: ``(spec, product)``.

    ``spec``: "default" (or empty) is the defect world of ``backbone``'s world, else a shipped spec's name or a YAML
    path. ``product``: empty picks the spec's example product, ``star`` where it has one (both pocket worlds' defect
    specs do; v1's notebook always showed it), else the spec's first product or category.
    """
    from ..anomaly.data import AnomalySpec, shipped_spec
    from ..data import DataError

    name = defaults(backbone).anomaly if spec in DEFAULT else spec
    full = AnomalySpec.from_yaml(shipped_spec(name) or paths.resolve_input(name))
    listed = full.data.get("products") or full.data.get("categories") or [c.name for c in full.categories()]
    chosen = product or ("star" if "star" in listed else listed[0])
    if chosen not in listed:
        raise DataError(f"PRODUCT={chosen!r} is not a product of anomaly spec '{full.name}': choose one of "
                        f"{', '.join(map(str, listed))}")
    return full.restricted([chosen], n_good=n_good, n_per_defect=n_per_defect), chosen


__all__ = ["WORLDS", "WorldDefaults", "anomaly_spec", "benchmark_path", "compare_draws_setup", "defaults", "world_of"]

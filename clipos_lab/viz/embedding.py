"""Looking at the joint embedding space: 2-D projections, outlier provenance, distance to real OOD.

All features are L2-normalised first (the space CLIP compares in), so Euclidean distances in the projection
inputs rank neighbours exactly as cosine similarity does.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

PROJECTIONS = ("umap", "pca")


def _normed(x) -> torch.Tensor:
    t = torch.as_tensor(x.detach().cpu() if hasattr(x, "detach") else np.asarray(x)).float()
    if t.dim() != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(t.shape)}")
    return F.normalize(t, dim=-1)


def pca_2d(x: torch.Tensor) -> np.ndarray:
    """Exact 2-D PCA (SVD of the centred data), signs fixed so the result is deterministic."""
    centred = x - x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    comps = vh[:2]
    if comps.shape[0] < 2:
        comps = torch.cat([comps, torch.zeros(2 - comps.shape[0], x.shape[1])])
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    return (centred @ comps.T).numpy()


@contextlib.contextmanager
def ticking_stage(what: str, enabled: bool = True, every_s: float = 1.0):
    """Say what a long, silent step is doing from its first second: a bar (a widget in JupyterLab) whose elapsed
    time ticks every ``every_s`` seconds while the step runs, removed when it ends. UMAP's first use compiled for
    over a minute with no output at all."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=None, desc=what, bar_format="{desc} {elapsed}", leave=False)
    done = threading.Event()

    def tick():
        while not done.wait(every_s):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()


def project(features: Mapping[str, object], method: str = "umap", seed: int = 0, n_neighbors: int = 15,
            min_dist: float = 0.1, progress: bool = False) -> dict[str, np.ndarray]:
    """One joint 2-D projection of several feature groups; returns group name -> ``(n, 2)`` coordinates.

    ``method="umap"`` (umap-learn) keeps local neighbourhoods; ``n_neighbors`` is lowered below the number of
    points, tiny sets (< 200 points) use ``init="random"`` (the spectral start needs a connected graph), and
    ``random_state=seed`` makes the layout reproducible. ``method="pca"`` is an exact linear projection: quick,
    deterministic, and distances along its axes mean something. Sets of fewer than 5 points always use PCA.
    ``progress`` shows UMAP's layout epochs as a tqdm bar (a widget in JupyterLab).
    """
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")
    names = [k for k in features]
    blocks = [_normed(features[k]) for k in names]
    sizes = [len(b) for b in blocks]
    x = torch.cat(blocks) if blocks else torch.empty(0, 2)
    n = x.shape[0]
    if n == 0:
        return {k: np.zeros((0, 2)) for k in names}
    if method == "pca" or n < 5:
        coords = pca_2d(x)
    else:
        with ticking_stage("UMAP: loading umap-learn (its first use in a fresh environment compiles numba code, "
                           "about a minute on two cores; later runs reuse the cache)", progress):
            import umap

            reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, n - 1)), min_dist=min_dist,
                                metric="euclidean", init="random" if n < 200 else "spectral", random_state=seed,
                                n_jobs=1, tqdm_kwds={"disable": not progress, "leave": False, "desc": "UMAP layout"})
        with ticking_stage(f"UMAP: neighbour graph of {n} points, then the layout", progress):
            coords = np.asarray(reducer.fit_transform(x.numpy()), dtype=float)
    out, start = {}, 0
    for name, size in zip(names, sizes):
        out[name] = coords[start: start + size]
        start += size
    return out


def provenance_labels(outliers, ids: Sequence[str], classnames: Sequence[str]) -> list[str]:
    """Hover text for each synthesised outlier: ``outlier #i = lam*img_a (class) + (1-lam)*img_b (class)``.

    ``ids`` are the sample ids of the rows that ``outliers.first`` / ``outliers.second`` index (the few-shot
    bank the ID-relevant features came from).
    """
    labels = []
    for i in range(len(outliers)):
        p = outliers.provenance(i)
        a, b = p["first"], p["second"]
        labels.append(f"outlier #{i} = {p['lam']:.2f}*{ids[a]} ({classnames[p['label_first']]}) + "
                      f"{1 - p['lam']:.2f}*{ids[b]} ({classnames[p['label_second']]})")
    return labels


def nearest_cosine(a, b, chunk: int = 1024) -> np.ndarray:
    """For every row of ``a``: the cosine similarity to its nearest row of ``b``."""
    fa, fb = _normed(a), _normed(b)
    if len(fb) == 0:
        raise ValueError("the reference set b is empty")
    return torch.cat([(fa[i: i + chunk] @ fb.T).amax(1) for i in range(0, len(fa), chunk)]).numpy()


def _median_bandwidth(x: torch.Tensor) -> float:
    d = torch.cdist(x, x)
    off = d[~torch.eye(len(x), dtype=torch.bool)]
    med = float(off.median()) if off.numel() else 1.0
    return med if med > 0 else 1.0


def mmd_rbf(a, b, bandwidth: float | None = None) -> float:
    """Squared maximum mean discrepancy between two feature sets with an RBF kernel (biased estimate).

    0 means the two sets are indistinguishable to the kernel; larger is further apart. ``bandwidth`` defaults to
    the median pairwise distance of the union (the usual heuristic); pass one value to compare several MMDs.
    """
    x, y = _normed(a), _normed(b)
    sigma = bandwidth or _median_bandwidth(torch.cat([x, y]))
    k = lambda p, q: torch.exp(-torch.cdist(p, q).pow(2) / (2 * sigma ** 2))  # noqa: E731
    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def distance_to_ood(outliers, real_ood: Mapping[str, object], id_features, relevant=None) -> dict:
    """How close synthesised outliers land to *real* OOD images, compared with ID images.

    For each group G (outliers, ID features, and the ID-relevant features the outliers were mixed from), the
    mean over G of the cosine similarity to the nearest real OOD feature ("nn_cos", higher = closer), per OOD
    set and pooled, and the RBF MMD to the pooled OOD set with one shared bandwidth (lower = closer).
    ``outliers_minus_id`` > 0 says the outliers sit nearer to real OOD than ID images do, which is what
    synthesis is for. Outliers are mixtures of *patch-level* features while ID features are *global* image
    embeddings, so the ID-relevant features (before mixing) are the like-for-like baseline: compare
    ``nn_cos["outliers"]`` with ``nn_cos["relevant"]`` to see what mixing alone does.
    """
    groups = {"outliers": _normed(outliers), "id": _normed(id_features)}
    if relevant is not None:
        groups["relevant"] = _normed(relevant)
    oods = {k: _normed(v) for k, v in real_ood.items()}
    pooled = torch.cat(list(oods.values()))
    per_set = {g: {k: float(nearest_cosine(x, o).mean()) for k, o in oods.items()} for g, x in groups.items()}
    nn_cos = {g: float(nearest_cosine(x, pooled).mean()) for g, x in groups.items()}
    sigma = _median_bandwidth(torch.cat([*groups.values(), pooled]))
    mmd = {g: mmd_rbf(x, pooled, bandwidth=sigma) for g, x in groups.items()}
    return {"nn_cos": nn_cos, "nn_cos_per_ood": per_set, "mmd": mmd, "mmd_bandwidth": sigma,
            "outliers_minus_id": nn_cos["outliers"] - nn_cos["id"],
            "n": {g: len(x) for g, x in groups.items()} | {"ood": len(pooled)}}


def format_distance(d: dict) -> str:
    """A readable summary of :func:`distance_to_ood`."""
    lines = ["mean cosine to the nearest real OOD feature (higher = closer to real OOD):"]
    lines += [f"  {g:>9}: {v:.4f}   MMD to OOD {d['mmd'][g]:.4f}" for g, v in d["nn_cos"].items()]
    lines.append(f"  outliers - id = {d['outliers_minus_id']:+.4f}")
    return "\n".join(lines)


__all__ = ["PROJECTIONS", "distance_to_ood", "format_distance", "mmd_rbf", "nearest_cosine", "pca_2d", "project",
           "provenance_labels"]

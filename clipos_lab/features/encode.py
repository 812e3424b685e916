"""The input pipeline of feature encoding: rows of a dataset decoded in a DataLoader, encoded batch by batch."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .keys import SkippedImageWarning, layer_kind


class Images(torch.utils.data.Dataset):
    """Rows of a dataset, decoded and preprocessed (in DataLoader workers when there are any)."""

    def __init__(self, dataset, rows, preprocess):
        self.dataset, self.rows, self.preprocess = dataset, [int(r) for r in rows], preprocess

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, k):
        from ..data import ImageLoadError

        row = self.rows[k]
        try:
            return row, self.preprocess(self.dataset.load(row)), None
        except ImageLoadError as err:
            return row, None, (str(err.path), str(err))


def collate(items):
    """A batch of the readable images, their rows, and ``(row, (path, error))`` of the unreadable ones."""
    good = [(row, x) for row, x, err in items if err is None]
    errors = [(row, err) for row, x, err in items if err is not None]
    rows = np.array([row for row, _ in good], dtype=np.int64)
    return rows, (torch.stack([x for _, x in good]) if good else None), errors


def encode_batches(dataset, backbone, rows, batch_size: int, surgery: bool = True, progress: bool = False,
                   num_workers: int = 0, layers: Sequence[int] = ()
                   ) -> Iterator[tuple[np.ndarray, object, dict[str, str]]]:
    """``(rows, ImageFeatures or None, {id: error})`` per batch: decoding in a DataLoader (worker processes if
    ``num_workers``), pinned memory and non-blocking copies when the backbone is on CUDA. ``layers``: also the
    patch tokens of those intermediate blocks (``ImageFeatures.layers``)."""
    device = torch.device(getattr(backbone, "device", "cpu"))
    cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(Images(dataset, rows, backbone.preprocess), batch_size=batch_size,
                                         shuffle=False, num_workers=num_workers, collate_fn=collate,
                                         pin_memory=cuda, persistent_workers=False)
    extra = {"layers": tuple(layers)} if layers else {}  # stand-in encoders without layers keep working
    bar = tqdm(total=len(rows), disable=not progress, desc=f"encode {getattr(dataset, 'name', '')}", unit="img")
    for batch_rows, images, errors in loader:
        skipped = {}
        for row, (path, message) in errors:
            warnings.warn(f"skipping unreadable image {path}: {message}", SkippedImageWarning)
            skipped[dataset.samples[row].id] = message
        feats = None
        if images is not None:
            if cuda:
                images = images.to(device, non_blocking=True)
            feats = backbone.encode_images(images, surgery=surgery, **extra)
        bar.update(len(batch_rows) + len(errors))
        yield batch_rows, feats, skipped
    bar.close()


def feature_tensors(feats, patch_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor field of an ``ImageFeatures`` by kind name (``global_`` -> ``global``; ``layers[k]`` ->
    ``layer<k>``), on the CPU in its storage dtype: float32 for global features, ``patch_dtype`` for tokens."""
    out = {}
    for f in dataclasses.fields(feats):
        value = getattr(feats, f.name)
        if torch.is_tensor(value):
            name = f.name.rstrip("_")
            out[name] = value.detach().to("cpu", torch.float32 if name == "global" else patch_dtype)
        elif f.name == "layers" and value:
            for layer, tokens in sorted(value.items()):
                out[layer_kind(layer)] = tokens.detach().to("cpu", patch_dtype)
    return out

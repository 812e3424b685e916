"""Defect masks read and resized exactly as their images are, so a map and its mask cover the same pixels.

Images are decoded upright (:func:`clipos_lab.data.images.load_image` applies the EXIF orientation) and then
resized and centre-cropped by torchvision (CLIP's ``Resize(size)`` + ``CenterCrop(size)``). Masks go through the
same steps: their own EXIF orientation is applied, they must match the *upright* image, and they are resized by
the same torchvision functions (which truncate the longer side and round the crop offset their own way).

A mask file may store its defect as 255 (MVTec), as 1 (0/1 masks), as small label values 1, 2, ... (VisA), as
any other grey level or as a colour: a pixel is defect where any channel is not zero (as MuSc and APRIL-GAN read
VisA). An anti-aliased mask therefore counts its grey rim as defect; black is the only "normal" value.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from ..data.errors import DataError

_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees


class EmptyMaskWarning(UserWarning):
    """A defective image whose mask marks no pixel: it counts as defective, yet adds no defect pixel."""


def upright_shape(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file as it is shown (after its EXIF orientation), without decoding it."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err}") from err
    return (w, h) if orientation in _SWAPS_SIDES else (h, w)


def read_mask(path: str | os.PathLike, image_path: str | os.PathLike | None = None,
              image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """A boolean mask from ``path`` (see the module docstring), checked against its image's upright shape."""
    try:
        with Image.open(path) as m:
            m.load()
            m = ImageOps.exif_transpose(m)
            values = np.asarray(m if m.mode in ("1", "L", "I", "I;16", "F") else m.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read mask {path}: {err}") from err
    mask = values != 0
    if mask.ndim == 3:
        mask = mask.any(-1)
    if image_shape is not None and mask.shape != tuple(image_shape):
        h, w = image_shape
        hint = ""
        if mask.shape == (w, h):
            hint = (" (it matches the image's stored pixels, but the image has an EXIF orientation and is used "
                    "upright: draw the mask on the upright view, or rotate it)")
        raise DataError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is {w}x{h} "
                        f"as shown{hint}: masks must have their image's size")
    if not mask.any():
        warnings.warn(f"mask {path} marks no defect pixel (all zero): its image {image_path} counts as defective "
                      "but adds nothing to pixel metrics", EmptyMaskWarning, stacklevel=2)
    return mask


def fit_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A full-resolution mask as the backbone sees its image: torchvision's ``Resize(size)`` (shorter side to
    ``size``) then ``CenterCrop(size)``, nearest-neighbour so it stays binary: the same functions, so the same
    rounding, as the image's preprocessing."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    h, w = mask.shape
    if (h, w) == (size, size):
        return mask.astype(bool)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    img = TF.center_crop(TF.resize(img, size, interpolation=InterpolationMode.NEAREST), size)
    return np.asarray(img) > 127

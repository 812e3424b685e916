"""Decoding one image file into an RGB PIL image, whatever its mode, bit depth or defects.

Corrupt, truncated and oversized files become :class:`~clipos_lab.data.errors.ImageLoadError` naming the file,
so a dataset can count them as skipped instead of stopping a whole encode.
"""

from __future__ import annotations

import errno
import os
import struct

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageLoadError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# changes whenever load_image would give other pixels for the same file; file fingerprints (and so cache keys) hold it
LOADER_VERSION = "exif-transpose"


# what Pillow raises for files that are corrupt, truncated or not images (plugins are not consistent about it)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return it as RGB.

    Decoding happens here (not lazily on first pixel access) so a broken file fails with its name, at load time.
    The EXIF orientation tag is applied (as image viewers do), so a phone photo stored sideways is seen upright.
    Transparent pixels become white, the usual background of product and clip-art images.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError as e:
        raise ImageLoadError(path, f"{e} (limit PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); downscale "
                                   f"the image, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it") from e
    except FileNotFoundError as e:
        dangling = os.path.islink(path)
        raise ImageLoadError(path, f"a symbolic link to {os.readlink(path)!r}, which does not exist" if dangling
                             else "no such file") from e
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageLoadError(path, "a loop of symbolic links; point the link at a real file or remove it") from e
        if e.errno is not None:  # the file system said no (permissions, I/O error, a folder with an image name)
            raise ImageLoadError(path, f"{e.strerror} ({type(e).__name__})") from e
        raise ImageLoadError(path, f"{e} ({type(e).__name__}); the file is corrupt, truncated or not an "
                                   f"image: replace or remove it") from e
    except _DECODE_ERRORS as e:
        raise ImageLoadError(path, f"{e} ({type(e).__name__}); the file is corrupt, truncated or not an "
                                   f"image: replace or remove it") from e


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I") or img.mode == "F":  # Pillow's own convert clips these to 0..255 instead of scaling
        return Image.fromarray(_high_depth_to_uint8(np.asarray(img), img.mode)).convert("RGB")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16/32-bit integer and float pixels to 0..255.

    16-bit data is scaled by its full range (divide by 257), so a dark image stays dark. Mode ``I`` holds 16-bit
    data in practice (TIFF, older Pillow PNGs); values outside 0..65535, like floats outside 0..1, have no
    canonical range and are min-max scaled.
    """
    a = np.nan_to_num(a.astype(np.float64))
    if mode.startswith("I;16") or (mode == "I" and a.min() >= 0 and a.max() <= 65535):
        a = a / 257.0
    elif mode == "F" and a.min() >= 0 and a.max() <= 1:
        a = a * 255.0
    else:
        lo, hi = a.min(), a.max()
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)



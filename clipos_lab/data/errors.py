"""The errors the data layer raises (a spec, file or dataset that cannot be used; one unreadable image) and its
warning (a sub-folder that could not be read)."""

from __future__ import annotations

import os


class DataError(ValueError):
    """A dataset, file or benchmark spec that cannot be used as given; the message says what to change."""


class ImageLoadError(DataError):
    """An image file that cannot be decoded; ``path`` names it so a caller can skip or report it."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):  # keeps the exception picklable across DataLoader workers
        return type(self), (self.path, self.reason)


class UnreadableFolderWarning(UserWarning):
    """A sub-folder of an image folder could not be listed, so its images are not in the dataset."""

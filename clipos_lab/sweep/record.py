"""One cell of a sweep: where its notebook ran, how it went, and (if ok) its metrics.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunRecord:
    """One grid cell: where it ran, how it went, and (if ok) its metrics.json."""

    slug: str
    folder: Path
    cell: dict
    status: str = "pending"
    error: str | None = None
    seconds: float | None = None
    executed: bool = False  # run by this call (False: kept from an earlier run)
    metrics: dict | None = None
    html: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

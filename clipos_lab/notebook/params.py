"""Notebook parameters as papermill delivers them: a list may arrive as ``1``, ``"1,2"`` or ``[1, 2]``."""

from __future__ import annotations

from typing import Callable


def parse_list(value, cast: Callable = int) -> list:
    """``"1,2"``, ``"1 2"``, ``1`` or ``[1, 2]`` to ``[cast(1), cast(2)]``; empty input is an error.

    papermill's ``-p SHOTS 1`` arrives as an int and ``-p SHOTS 1,2`` as a string, so both must work.
    """
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = value.replace(",", " ").split()
    else:
        items = [value]
    if not items:
        raise ValueError(f"expected a comma-separated list, got {value!r}")
    try:
        return [cast(x) for x in items]
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot read {value!r} as a list of {cast.__name__}: {err}") from err


def parse_names(value) -> list[str]:
    """``"MCM, GL-MCM,CoOp"`` to ``["MCM", "GL-MCM", "CoOp"]`` (comma-separated; names may contain spaces)."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = [str(x).strip() for x in items if str(x).strip()]
    if not names:
        raise ValueError(f"expected comma-separated names, got {value!r}")
    return names


__all__ = ["parse_list", "parse_names"]

"""How many intra-op threads each stage runs torch with: one for small tensors, every core for large ones.

Why: torch runs each op's parallel part on a team of OpenMP threads that meet at a barrier when the op ends. On a
pocket-sized model the ops are tiny (prompt training does thousands of them, each well under a millisecond), so
an op's time is mostly that barrier. When the cores are shared (a browser, JupyterLab, another run), a thread of
the team is often off its core, the others spin at the barrier until it comes back, and the same work costs many
times the wall and CPU time of one thread: CoOp's training took 0.18 s on one thread and 8.8 s (8.3 s of CPU) on
two, on two cores shared with other jobs (``benchmarks/stage_profile.py``, ``benchmarks/results/stage_profile.txt``).
Large ops (a ViT-B/16 batch, a 1000-class text tower) are long enough
that the barrier does not matter and more threads pay on an idle machine.

The rule: a stage whose unit of work (one encoder batch, one prompt-training step, one scoring chunk) needs at
least :data:`PARALLEL_WORK` multiply-adds runs on every core this process may use; smaller ones run on one
thread. ``CLIPOS_THREADS=N`` (or the command line's ``--threads N``, or :func:`set_threads`) runs every stage on
N threads instead; ``auto`` (or unset) is the rule. The thread count only changes float sums in the last bits,
and a given thread count gives the same bytes every run.

Stages apply the rule with :func:`stage_threads` (a context manager) or :func:`threaded` (a decorator that sizes
the work from the call's arguments); both put the previous thread count back when the stage ends.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

ENV_VAR = "CLIPOS_THREADS"
# Multiply-adds per unit of work from which every core is used. Below it: a pocket-model encoder batch of 64
# (3.4e9), a pocket prompt-training step (6e7), pocket scoring chunks (<1e9); each stage ran 3-50x slower in wall
# time with two threads than with one on two cores shared with other jobs (load 2). Above it: ViT-B/16 batches
# (1.3e11 per 8 images) and its text tower over hundreds of class prompts (1.2e12 for 1000), whose ops are long
# enough for the barrier not to matter on an idle machine; on a busy one, CLIPOS_THREADS=1 is cheaper there too.
PARALLEL_WORK = 1e10

_chosen: int | None = None  # set_threads(); None: CLIPOS_THREADS, then the rule
_share: int | None = None  # share_cores(): the cores a worker of a process pool counts as its own


def parse_threads(value: str | int | None, source: str = ENV_VAR) -> int | None:
    """A thread setting: a whole number >= 1, or None for the rule (``auto``, empty or unset).

    ``source`` names where the value came from (``CLIPOS_THREADS``, ``--threads``) in the error.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        n = int(value.strip()) if isinstance(value, str) else int(value)
        if isinstance(value, bool) or (not isinstance(value, str) and n != value):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{source}={value!r} is not a thread count: give a whole number >= 1 (e.g. {source}=1) "
                         "or 'auto' (one thread for small work, every core for large work)") from None
    if n < 1:
        raise ValueError(f"{source}={value!r}: the thread count must be at least 1, or 'auto'")
    return n


def set_threads(n: int | str | None) -> None:
    """Run every stage on ``n`` threads from now on (None or ``auto``: back to ``CLIPOS_THREADS`` / the rule)."""
    global _chosen
    _chosen = parse_threads(n, "threads")


@contextmanager
def using_threads(n: int | str | None = None) -> Iterator[int]:
    """Inside the block every stage runs on ``n`` threads (None: ``CLIPOS_THREADS``, else the rule), and so does
    work outside the sized stages (the rule's small-work count: 1); both are restored afterwards.

    The command line runs each command in it; an invalid ``CLIPOS_THREADS`` fails here, before any work.
    """
    global _chosen
    saved, previous = _chosen, torch.get_num_threads()
    if n is not None:
        _chosen = parse_threads(n, "threads")
    try:
        base = threads_for(0.0)
        torch.set_num_threads(base)
        yield base
    finally:
        _chosen = saved
        torch.set_num_threads(previous)


def requested() -> int | None:
    """The thread count the user asked for (:func:`set_threads`, else ``CLIPOS_THREADS``), or None for the rule."""
    return _chosen if _chosen is not None else parse_threads(os.environ.get(ENV_VAR), ENV_VAR)


def all_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it), at most its
    :func:`share_cores`."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    return cores if _share is None else min(cores, _share)


def share_cores(n: int | None) -> None:
    """Count at most ``n`` cores as this process's own (None: all): a worker of a pool of N processes takes
    ``cores // N``, so that the large stages of N workers do not ask for N times the machine."""
    global _share
    if n is not None and n < 1:
        raise ValueError(f"a process's share of the cores must be at least 1, got {n}")
    _share = n


def threads_for(work: float) -> int:
    """Threads for a unit of ``work`` multiply-adds: the user's count, else 1 below :data:`PARALLEL_WORK` and
    :func:`all_cores` from it."""
    n = requested()
    if n is not None:
        return n
    return all_cores() if work >= PARALLEL_WORK else 1


@contextmanager
def stage_threads(work: float = 0.0) -> Iterator[int]:
    """Run the block with :func:`threads_for` ``(work)`` intra-op threads, then restore the previous count."""
    n = threads_for(work)
    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def threaded(work: Callable[..., float]):
    """Decorator: run the function under :func:`stage_threads`, its work being ``work(*args, **kwargs)``."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with stage_threads(work(*args, **kwargs)):
                return fn(*args, **kwargs)
        return run
    return wrap


def matmul_weights(module: torch.nn.Module) -> int:
    """Multiply-adds one token costs in ``module``'s linear layers, convolutions and attention projections (the
    weights every token is multiplied by; attention's token-by-token products are left out)."""
    total = 0
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            total += m.weight.numel()
        elif isinstance(m, torch.nn.MultiheadAttention):
            if m.in_proj_weight is not None:
                total += m.in_proj_weight.numel()
            else:
                total += sum(getattr(m, f"{x}_proj_weight").numel() for x in "qkv")
    return total

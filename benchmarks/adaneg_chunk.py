"""AdaNeg's proxy logits, three ways, on one thread, measured in one run:

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python benchmarks/adaneg_chunk.py

1. a full memory (every label holds 10 cached features): the old fixed 2,048-label chunks against the default
   chunk (temporaries kept under glibc's mapped-block threshold, clipos_lab.negatives.adaneg.TEMP_BYTES);
2. a memory as the v2 suite's streams leave it (250 labels hold cached features, the rest only their text: the
   pocket v2 default split's AdaNeg streams held 148-287 of 10,014): the full product over every label (the
   code before the text-only path) against ``proxy_logits``, which computes only slot 0 for text-only labels.

Each pair must agree bit for bit. A synthetic memory of the pocket suite's size: 10,043 labels (10,000
negatives + 43 classes), 10 slots plus the text, 128-d, a 256-image batch. Output:
benchmarks/results/adaneg_chunk.txt (and stdout).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from clipos_lab.evaluation.memory import map_large_blocks
from clipos_lab.files import write_text
from clipos_lab.negatives import adaneg as A

LABELS, LENGTH, DIM, BATCH, HOLDING = 10_043, 10, 128, 256, 250


def seconds_per_step(fn, repeats: int = 10) -> tuple[float, torch.Tensor]:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def full_product(memory: A.ProxyMemory, images: torch.Tensor, chunk: int) -> torch.Tensor:
    """Every label through the full (L slots) product, ``chunk`` labels at a time: the code before the text-only
    path."""
    return torch.cat([A._sample_adaptive_logits(memory.features[s: s + chunk], images, 100.0, 5.0)
                      for s in range(0, len(memory.features), chunk)], dim=1)


def main() -> None:
    map_large_blocks()  # as every benchmark cell does (evaluation/memory.py)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(BATCH, DIM, generator=g), dim=-1)
    default = max(1, A.TEMP_BYTES // (4 * (LENGTH + 1) * BATCH))

    full = A.ProxyMemory.new(F.normalize(torch.randn(LABELS, DIM, generator=g), dim=-1), LENGTH)
    full.features[:, 1:LENGTH] = F.normalize(torch.randn(LABELS, LENGTH - 1, DIM, generator=g), dim=-1)
    old, old_out = seconds_per_step(lambda: A.proxy_logits(full, images, 100.0, True, 5.0, chunk=2048))
    new, new_out = seconds_per_step(lambda: A.proxy_logits(full, images, 100.0, True, 5.0))

    stream = A.ProxyMemory.new(F.normalize(torch.randn(LABELS, DIM, generator=g), dim=-1), LENGTH)
    for label in torch.randperm(LABELS, generator=g)[:HOLDING].tolist():
        for _ in range(int(torch.randint(1, LENGTH, (1,), generator=g))):
            stream.put(label, F.normalize(torch.randn(DIM, generator=g), dim=0), float(torch.rand(1, generator=g)))
    before, before_out = seconds_per_step(lambda: full_product(stream, images, default))
    after, after_out = seconds_per_step(lambda: A.proxy_logits(stream, images, 100.0, True, 5.0))

    text = "\n".join([
        f"AdaNeg proxy logits, {LABELS:,} labels x {LENGTH + 1} slots x {DIM}-d, {BATCH} images, one thread "
        f"(GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}; load {'%.2f %.2f %.2f' % os.getloadavg()})",
        "1. every label holding 10 cached features:",
        f"   2,048-label chunks: {old:.3f} s per step",
        f"   default ({default}-label chunks): {new:.3f} s per step",
        f"   speed-up: {old / new:.2f}x; bit-identical: {torch.equal(old_out, new_out)}",
        f"2. {HOLDING} labels holding cached features, the others only their text (as the suite's streams):",
        f"   full product over every label: {before:.3f} s per step",
        f"   text-only labels on slot 0 alone: {after:.3f} s per step",
        f"   speed-up: {before / after:.2f}x; bit-identical: {torch.equal(before_out, after_out)}"])
    print(text)
    write_text(text + "\n", Path("benchmarks/results/adaneg_chunk.txt"))


if __name__ == "__main__":
    main()

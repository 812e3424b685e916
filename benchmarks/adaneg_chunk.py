"""AdaNeg's proxy logits with the old fixed 2,048-label chunks against the default chunk (temporaries kept under
glibc's mapped-block threshold, clipos_lab.negatives.adaneg.TEMP_BYTES), on one thread, measured in one run:

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python benchmarks/adaneg_chunk.py

A synthetic memory of the pocket suite's size: 10,043 labels (10,000 negatives + 43 classes), 10 slots plus
the text, 128-d, a 256-image batch. Output: benchmarks/results/adaneg_chunk.txt (and stdout).
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


def seconds_per_step(memory, images, chunk, repeats: int = 10) -> tuple[float, torch.Tensor]:
    A.proxy_logits(memory, images, 100.0, True, 5.0, chunk=chunk)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        out = A.proxy_logits(memory, images, 100.0, True, 5.0, chunk=chunk)
    return (time.perf_counter() - start) / repeats, out


def main() -> None:
    map_large_blocks()  # as every benchmark cell does (evaluation/memory.py)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    memory = A.ProxyMemory.new(F.normalize(torch.randn(10_043, 128, generator=g), dim=-1), 10)
    memory.features = F.normalize(torch.randn(10_043, 11, 128, generator=g), dim=-1)
    images = F.normalize(torch.randn(256, 128, generator=g), dim=-1)
    old, old_out = seconds_per_step(memory, images, 2048)
    new, new_out = seconds_per_step(memory, images, None)
    default = max(1, A.TEMP_BYTES // (4 * 11 * 256))
    text = "\n".join([
        f"AdaNeg proxy logits, 10,043 labels x 11 slots x 128-d, 256 images, one thread "
        f"(GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}; load {'%.2f %.2f %.2f' % os.getloadavg()})",
        f"2,048-label chunks: {old:.3f} s per step",
        f"default ({default}-label chunks): {new:.3f} s per step",
        f"speed-up: {old / new:.2f}x; largest difference between the two: {float((old_out - new_out).abs().max())}"])
    print(text)
    write_text(text + "\n", Path("benchmarks/results/adaneg_chunk.txt"))


if __name__ == "__main__":
    main()

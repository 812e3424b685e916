"""Text side of the negative-label methods at ImageNet scale: K = 1000 ID labels + 10,000 negative labels.

    python benchmarks/text_scale.py [--models pocket,ViT-B-16] [--texts 11000] [--sample 1000] [--device cpu]

For each model (the shipped pocket text tower; ``ViT-B-16`` with random weights, the OpenAI ViT-B/16 text
tower's geometry) it encodes, in a fresh process each, with ``clipos_lab.negatives.text.template_embeddings``
(the code NegLabel, CSP and AdaNeg fit with):

* ``single``: the 1000 ImageNet class names under ``"the nice {}"`` and 10,000 WordNet nouns under the same
  template (NegLabel / AdaNeg: one text per label);
* then the mining step (0.95-quantile of the 10,000 x 1000 cosines, ``percentile_similarity``) and one scoring
  chunk of 4096 images against the 11,000 labels (grouped score, 100 groups).

Printed: seconds, texts per second, peak resident memory of the process (``ru_maxrss``; on a GPU also
``torch.cuda.max_memory_allocated``). When ``--sample`` is smaller than ``--texts`` (a slow CPU), only ``--sample``
texts are encoded and the time for all of them is extrapolated linearly (texts are encoded in independent
chunks, so time is linear in their number); the output says so. CSP's eight noun templates cost 8x the
single-template text count; AdaNeg's fit costs what NegLabel's does. The machine's load is printed with the
numbers: compare numbers only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(model: str, n_texts: int, sample: int, device: str) -> dict:
    import torch

    from clipos_lab.backbone import Backbone
    from clipos_lab.negatives import grouping, neglabel
    from clipos_lab.negatives.text import template_embeddings
    from clipos_lab.negatives.vocab import read_vocab
    from clipos_lab.resources import ASSETS

    torch.manual_seed(0)
    backbone = Backbone.load() if model == "pocket" else Backbone.load(model, random_weights=True, device=device)
    if model == "pocket" and device != "cpu":
        backbone = Backbone.load(device=device)
    names = (ASSETS / "classnames" / "imagenet1k.txt").read_text().splitlines()
    names = [n for n in names if n and not n.startswith("#")][:1000]
    vocab = read_vocab()
    nouns = [w for w, p in zip(vocab.words, vocab.pos) if p == "noun"][: max(n_texts - len(names), 0)]
    words = names + nouns
    todo = words[: min(sample, len(words))]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    emb = template_embeddings(backbone, todo, ["the nice {}"])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    encode_s = time.perf_counter() - t0
    full_s = encode_s * len(words) / len(todo)
    # mining and one scoring chunk at full size (random unit vectors of the model's width stand in for what the
    # sample did not encode: the cost of these steps does not depend on the values)
    d = emb.shape[1]
    full = torch.nn.functional.normalize(torch.randn(len(words), d, device=emb.device), dim=-1)
    t1 = time.perf_counter()
    distance = neglabel.percentile_similarity(full[len(names):], full[: len(names)], 0.95)
    picked = neglabel.mine_negatives(distance, torch.zeros(len(distance), dtype=torch.bool), 1.0)
    mine_s = time.perf_counter() - t1
    images = torch.nn.functional.normalize(torch.randn(4096, d, device=emb.device), dim=-1)
    perm = grouping.group_permutation(len(picked), 100)
    t2 = time.perf_counter()
    logits = 100 * images @ full.T
    grouping.grouped_id_score(logits[:, : len(names)], logits[:, len(names):], 100, perm)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    score_s = time.perf_counter() - t2
    out = {"model": model, "weights": backbone.weights_id, "device": device, "texts": len(words),
           "encoded": len(todo), "extrapolated": len(todo) < len(words), "encode_s": encode_s,
           "encode_all_s": full_s, "texts_per_s": len(todo) / encode_s, "mine_s": mine_s,
           "score_4096_images_s": score_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_before_encode_mb": rss0 / 1024, "threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="pocket,ViT-B-16")
    parser.add_argument("--texts", type=int, default=11_000, help="ID labels + negative labels (1000 + 10,000)")
    parser.add_argument("--sample", type=int, default=11_000, help="texts actually encoded (the rest extrapolated)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.texts, args.sample, args.device)))
        return 0
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs; device {args.device}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for model in args.models.split(","):
        cmd = [sys.executable, __file__, "--child", model, "--texts", str(args.texts), "--sample", str(args.sample),
               "--device", args.device]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode:
            print(f"{model}: failed\n{res.stderr[-2000:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        how = (f"{r['encoded']} encoded in {r['encode_s']:.1f} s, all {r['texts']} extrapolated: "
               f"{r['encode_all_s']:.1f} s" if r["extrapolated"] else f"{r['texts']} texts in {r['encode_s']:.1f} s")
        print(f"{model} ({r['weights']}, {r['threads']} threads): {how} ({r['texts_per_s']:.0f} texts/s); "
              f"mining 10k x 1k {r['mine_s']:.2f} s; scoring 4096 images x {r['texts']} labels "
              f"{r['score_4096_images_s']:.2f} s; peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(before encoding {r['rss_before_encode_mb']:.0f} MB)"
              + (f"; CUDA peak {r['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in r else ""))
        print(f"  CSP (8 noun templates): ~{8 * r['encode_all_s']:.0f} s for the same labels")
    print(f"load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

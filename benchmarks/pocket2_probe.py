"""Where pocket v2's zero-shot recognition is lost: in the image features, or between the towers?

A linear probe (scikit-learn's logistic regression on the normalised image embeddings) learns the 43 seen classes
from scenes of the drawings pre-training used (``pretrain``), then from the validation drawings (``val``), and
is scored on scenes of the validation and evaluation drawings (``val``, ``eval``), next to zero-shot top-1 ("a
photo of a {class}.") on the same scenes. Every image is a single undamaged drawing, as in the zero-shot bar.

- probe(pretrain) close to its training accuracy on pretrain scenes: the features generalise to new drawings;
  far below: the image tower memorised its drawings.
- probe(pretrain) well above zero-shot: the class is in the image features and the text tower's class words do
  not find it (alignment, not vision, is what to train).

    python benchmarks/pocket2_probe.py [--weights assets/pocket2/pocket2-vit.safetensors] [--scenes 4]

Output: benchmarks/results/pocket2/probe.md (or --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from clipos_lab.backbone import Backbone
from clipos_lab.files import write_text
from clipos_lab.methods.text import DEFAULT_TEMPLATES, class_embeddings
from clipos_lab.pocket import world2 as W2
from clipos_lab.pocket.pack import DrawingsPack
from clipos_lab.pocket.train import images_to_tensor
from clipos_lab.pocket.train2 import POCKET2_CONFIG

SCENE_SEED = 828_282  # a scene seed no benchmark spec or training stream uses


def scenes(world: W2.World2, records: list[dict], per_drawing: int, classes: list[str]):
    """``per_drawing`` single-drawing scenes of each record: uint8 images and class indices."""
    images, labels = [], []
    for i, record in enumerate(records):
        for j in range(per_drawing):
            images.append(world.render(SCENE_SEED, i * per_drawing + j, kind="object", drawing=record, state="")[0])
            labels.append(classes.index(record["class"]))
    return np.stack(images), np.array(labels)


@torch.no_grad()
def embed(backbone: Backbone, images: np.ndarray, batch: int = 128) -> np.ndarray:
    parts = [backbone.encode_images(images_to_tensor(images[i:i + batch]), surgery=False, local=False).global_
             for i in range(0, len(images), batch)]
    return torch.nn.functional.normalize(torch.cat(parts), dim=-1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="exported weights (default: the shipped pocket v2)")
    parser.add_argument("--config", default=str(POCKET2_CONFIG))
    parser.add_argument("--scenes", type=int, default=4, help="scenes per drawing")
    parser.add_argument("--out", default="benchmarks/results/pocket2/probe.md")
    args = parser.parse_args()
    backbone = (Backbone.load(config=args.config, checkpoint=args.weights) if args.weights
                else Backbone.load(model="pocket2"))
    pack = DrawingsPack()
    classes = sorted(c for c, info in pack.classes.items() if not info["unseen"])
    world = W2.World2(pack, backbone.image_size, ("pretrain", "val", "eval"), occlusion=0.0, defect=0.0)
    data = {}
    for split in ("pretrain", "val", "eval"):
        records = sorted((r for r in pack.select(split) if r["class"] in classes), key=lambda r: r["file"])
        images, labels = scenes(world, records, args.scenes, classes)
        data[split] = (embed(backbone, images), labels, len(records))
    text = class_embeddings(backbone, classes, DEFAULT_TEMPLATES).float().numpy()
    def top1(predict, split: str) -> str:
        x, y, _ = data[split]
        return f"{float((predict(x) == y).mean()):.3f}"

    rows = [("zero-shot, \"a photo of a {class}.\"", "", top1(lambda x: (x @ text.T).argmax(1), "val"),
             top1(lambda x: (x @ text.T).argmax(1), "eval"))]
    for split in ("pretrain", "val"):
        probe = LogisticRegression(C=10.0, max_iter=3000).fit(*data[split][:2])
        rows.append((f"linear probe fitted on {split} scenes", top1(probe.predict, split),
                     top1(probe.predict, "val") if split != "val" else "", top1(probe.predict, "eval")))
    counts = ", ".join(f"{s} {n} drawings" for s, (_, _, n) in data.items())
    lines = [f"# pocket v2: linear probe against zero-shot, {len(classes)} seen classes, {args.scenes} single-drawing "
             f"scenes per drawing ({counts})", "",
             "| classifier | top-1 on its own training scenes | top-1 on val scenes | top-1 on eval scenes |",
             "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text_out = "\n".join(lines)
    print(text_out)
    write_text(text_out, Path(args.out))


if __name__ == "__main__":
    main()

"""Issue 19's bars for pocket v2, measured on drawings pre-training never saw (the pack's ``eval`` split).

    python benchmarks/pocket2_quality.py --checkpoint /work/runs/pocket2 [--per-class 10] [--splits 10]
        [--out benchmarks/results/pocket2]
    python benchmarks/pocket2_quality.py --weights assets/pocket2/pocket2-vit.safetensors ...

1. Zero-shot top-1 and top-5 with "a photo of a {class}." over every seen class of the pack (>= 40), per
   top-level category; and top-1 over v1's twelve shapes (v1's world at 112 px).
2. Stage 1 on the object: for each ID image, the share of its ID-relevant patches (CLIP-OS's discrepancy rule)
   that lie on the drawing (a patch counts when the drawing covers at least half of it); an image passes when
   most of them do. Bar: >= 80 % of images pass. Also printed, to tell a bad map from a bad count: the rule's
   mean ID proportion rho against the drawing's true share of patches, and the pass rate when each map keeps
   exactly as many patches as the drawing covers.
3. Zero-shot MCM's AUROC per OOD set on the shipped drawings splits (near-OOD bar: between 70 and 92).

``--split val`` measures the same on ``val`` drawings and the validation splits (how checkpoints and recipes are
compared). ``--checkpoint`` reads a training folder's ``checkpoint.pt`` (mid-training checks; the step is
printed), ``--weights`` an exported model. Every number is printed with the step it was measured at.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clipos_lab.backbone import Backbone
from clipos_lab.clipos import relevance as R
from clipos_lab.data import BenchmarkSpec, WorldDataset
from clipos_lab.data.drawings_set import DrawingsDataset
from clipos_lab.evaluation.metrics import auroc
from clipos_lab.evaluation.runner import encode_banks
from clipos_lab.features import FeatureBank
from clipos_lab.files import write_json
from clipos_lab.methods import MCM
from clipos_lab.methods.text import DEFAULT_TEMPLATES, class_embeddings
from clipos_lab.pocket import world as W
from clipos_lab.pocket.pack import DrawingsPack
from clipos_lab.pocket.splits2 import drawings_specs
from clipos_lab.pocket.train import export
from clipos_lab.pocket.train2 import POCKET2_CONFIG

TEST_SEED = 919_191  # a scene seed no benchmark spec or training stream uses
VAL_SEED = 727_272  # the same for --split val (choosing between checkpoints: never the test numbers)


def load(args) -> tuple[Backbone, str]:
    if args.weights:
        return Backbone.load(config=args.config, checkpoint=args.weights), Path(args.weights).name
    folder = Path(args.checkpoint)
    step = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)["step"]
    tmp = Path(tempfile.mkdtemp(prefix="pocket2-quality-"))
    export(folder, tmp / "pocket2.safetensors")
    return Backbone.load(config=args.config, checkpoint=tmp / "pocket2.safetensors"), f"checkpoint step {step}"


def zero_shot(backbone, bank) -> tuple[np.ndarray, np.ndarray]:
    """Per image of an encoded bank: rank of the true class among all classes (0 = top-1), and the true label."""
    text = class_embeddings(backbone, bank.classnames, DEFAULT_TEMPLATES)
    logits = torch.nn.functional.normalize(bank.global_.float(), dim=-1) @ text.T.float()
    labels = bank.labels.long()
    true = logits.gather(1, labels[:, None])
    return (logits > true).sum(1).numpy(), labels.numpy()


def patch_on_object(dataset: DrawingsDataset, grid: int) -> torch.Tensor:
    """(N, P) whether the drawing covers at least half of each patch."""
    rows = []
    for i in range(len(dataset)):
        cover = torch.from_numpy(dataset.render(i)[2]["objects"].sum(0))  # (S, S) coverage of the drawing
        cells = torch.nn.functional.adaptive_avg_pool2d(cover[None, None], grid)[0, 0]
        rows.append(cells.flatten() >= 0.5)
    return torch.stack(rows)


def on_share(mask: torch.Tensor, on_object: torch.Tensor) -> torch.Tensor:
    """Per image: the share of its masked patches that lie on the drawing."""
    return (mask & on_object).sum(1).float() / mask.sum(1).clamp(min=1).float()


def passing(mask: torch.Tensor, on_object: torch.Tensor) -> torch.Tensor:
    """Per image: whether most of its masked patches lie on the drawing (stage 1's bar)."""
    return (on_share(mask, on_object) > 0.5).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="training folder holding checkpoint.pt")
    source.add_argument("--weights", help="exported weights (safetensors)")
    parser.add_argument("--config", default=str(POCKET2_CONFIG))
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--splits", type=int, default=10, help="shipped drawings splits measured for item 3")
    parser.add_argument("--split", choices=("eval", "val"), default="eval",
                        help="eval: the reported bars (eval drawings, test splits); val: the same measures on val "
                             "drawings and the validation splits, for choosing a checkpoint or a recipe")
    parser.add_argument("--out", default=None, help="folder for quality.json and the tables")
    args = parser.parse_args()
    torch.set_num_threads(1)
    backbone, source = load(args)
    pack = DrawingsPack()
    seen = sorted(c for c, info in pack.classes.items() if not info["unseen"])
    seed = TEST_SEED if args.split == "eval" else VAL_SEED
    report: dict = {"source": source, "split": args.split}
    print(f"# pocket v2 quality, {source}; {args.split} drawings, scene seed {seed}, {args.per_class} scenes per class")

    drawings = DrawingsDataset(classes=seen, split=args.split, n_per_class=args.per_class, seed=seed)
    bank = FeatureBank.encode(drawings, backbone, progress=False)  # items 1 and 2 read the same features
    rank, labels = zero_shot(backbone, bank)
    top = [pack.classes[c]["superclass"].split("/")[0] for c in seen]
    per = pd.DataFrame({"category": [top[y] for y in labels], "top1": rank == 0, "top5": rank < 5})
    table = per.groupby("category").agg(classes=("category", lambda s: len({seen[y] for y in labels[s.index]})),
                                        images=("top1", "size"), top1=("top1", "mean"), top5=("top5", "mean"))
    report["zero_shot"] = {"classes": len(seen), "top1": float((rank == 0).mean()), "top5": float((rank < 5).mean()),
                           "per_category": table.reset_index().to_dict(orient="records")}
    print(f"1. zero-shot over {len(seen)} seen classes: top-1 {100 * (rank == 0).mean():.1f} %, top-5 "
          f"{100 * (rank < 5).mean():.1f} % (bar: top-1 >= 40 %)")
    print((100 * table[["top1", "top5"]]).round(1).assign(classes=table["classes"]).to_string())
    shapes = WorldDataset("object", shapes=W.SHAPES, n_per_class=args.per_class, seed=seed, image_size=112)
    shape_rank, _ = zero_shot(backbone, FeatureBank.encode(shapes, backbone, progress=False))
    report["v1_shapes_top1"] = float((shape_rank == 0).mean())
    print(f"   v1's {len(W.SHAPES)} shapes: top-1 {100 * (shape_rank == 0).mean():.1f} % (bar: >= 95 %)")

    text = class_embeddings(backbone, drawings.classnames, DEFAULT_TEMPLATES)
    rel = R.relevance(bank, text, rule="discrepancy", tokens="local", k=3)
    on_object = patch_on_object(drawings, int(bank.grid[0]))
    share = on_share(rel.mask, on_object)
    chance = on_object.float().mean(1)
    true_count = {name: float(passing(R.top_fraction_mask(m, on_object.sum(1).clamp(min=1)), on_object).mean())
                  for name, m in (("surgery_map", rel.surgery), ("raw_map", rel.raw))}
    report["stage1"] = {"images_passing": float(passing(rel.mask, on_object).mean()), "mean_share": float(share.mean()),
                        "chance": float(chance.mean()), "mean_rho": float(rel.rho.mean()),
                        "passing_with_true_count": true_count}
    print(f"2. stage 1: ID-relevant patches mostly on the drawing for "
          f"{100 * report['stage1']['images_passing']:.1f} % of images (bar >= 80 %); "
          f"mean share {share.mean():.2f}, drawing's share of the image {chance.mean():.2f}")
    print(f"   rho (ID proportion) {rel.rho.mean():.2f} against the drawing's {chance.mean():.2f}; keeping the "
          f"drawing's own patch count, {100 * true_count['surgery_map']:.1f} % pass on the surgery map, "
          f"{100 * true_count['raw_map']:.1f} % on the raw map")

    rows = []
    for spec_dict in drawings_specs(args.splits, validation=args.split == "val"):
        spec = BenchmarkSpec.from_dict(spec_dict)
        banks = encode_banks(spec, backbone, progress=False)
        mcm = MCM().fit(backbone, banks.id_train)
        id_scores = mcm.score(banks.id_test, ["MCM"])["MCM"]
        rows.extend({"spec": spec.name, "ood": name, "AUROC": auroc(id_scores, mcm.score(b, ["MCM"])["MCM"])}
                    for name, b in banks.ood.items())
    ood = pd.DataFrame(rows).pivot(index="spec", columns="ood", values="AUROC")
    report["mcm"] = (100 * ood).round(2).reset_index().to_dict(orient="records")
    print(f"3. zero-shot MCM AUROC per OOD set on {len(ood)} drawings splits (near-OOD bar: 70-92):")
    print((100 * ood).round(2).to_string())
    print("   mean: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in ood.mean().items()))
    if args.out:
        write_json(report, Path(args.out) / "quality.json")
        print(f"wrote {Path(args.out) / 'quality.json'}")


if __name__ == "__main__":
    main()

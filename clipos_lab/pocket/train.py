"""Training the pocket CLIP: a small open_clip ViT that learns the pocket world on a 2-core CPU.

Why this recipe (each piece was kept because a naive contrastive run on 12-16 shapes stayed near chance):

* **Multi-positive contrastive loss.** Captions state a subset of attributes ("a photo of a star" says nothing
  about colour), so every image that satisfies a caption's constraints is a positive of that caption, not a
  negative. Identical captions are merged first, so each batch encodes only its distinct texts.
* **Auxiliary attribute heads** (shape, colour, background, size) on the image embedding give the image tower
  a direct, dense-in-labels signal from step one; they are dropped from the shipped model.
* **Dense patch-text alignment.** Each projected patch token is classified against the text embeddings of
  "a photo of a {shape}." (patches on the object) and "a photo of a {texture} background." (the rest). Patch
  tokens then live in the joint space the way CLIP-OS needs them, and relevance maps are spatial.
* **Curriculum.** ``difficulty`` ramps from an easy world (large, upright shapes on plain or gradient
  backgrounds) to the full world over ``curriculum_steps``: the tiny ViT first learns what a shape is.
* **AdamW at 5e-4 with warm-up and cosine decay.** Measured on the easy world, supervised, 200 steps of 64:
  shape accuracy 21% at 1e-3, 27% at 2.5e-4, 31% at 5e-4; class-token pooling beat average pooling (23%) and
  2-D sin-cos position initialisation did not help. A 6-layer model at 1e-3 reached only 28% zero-shot top-1
  after 600 steps, so the shipped model trades depth (4 blocks) for more steps in the same CPU budget.

* **Two stages.** The shipped model is stage 2 (``init_from`` the stage-1 checkpoint, fresh optimiser and
  schedule): stage 1 trained 1,200 steps on the world with all orientations and the four heads weighted alike
  (zero-shot top-1 at full difficulty: 24% at step 500, 32% at step 1,000); stage 2 limits rotations to +-45
  degrees (the world's default) and weights the shape head 3x, the signal the zero-shot bar asks for
  (validation top-1: 51% after 500 steps, 88% after 2,000, 97% after 4,500).
* **Stage 3: the value-value path.** After stage 2 the raw patch map of an image's class peaked inside the
  object for 99.8% of test images but CLIP Surgery's value-value map only for 63%: a 4-block model trained
  from scratch does not grow the property CLIP Surgery relies on in large CLIPs. 400 more steps
  (``surgery_dense_weight``) apply the dense loss to the value-value tokens too: 87% inside the box, zero-shot
  top-1 98.5%. The exact commands are in ``assets/pocket/README.md``.

Every batch is a pure function of ``(seed, step)``, and a checkpoint holds model, optimiser and log, so a run
interrupted at any step and resumed continues exactly the same run. The same purity lets worker processes draw
the next batches while the model trains (``workers``), and a sitting may run on a GPU (``device``): the
checkpoint stays on the CPU, so a run started on one device resumes on another.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..backbone import resolve_device
from ..config import config_from_dict, start_or_resume
from ..files import atomic_path, write_csv
from ..resources import POCKET_CONFIG, POCKET_NAME, POCKET_WEIGHTS, sha256_of
from . import world as W

MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip's OpenAI normalisation, which the pocket model uses too
STD = (0.26862954, 0.26130258, 0.27577711)
TRAIN_STREAM, VAL_STREAM = 1, 2  # world seeds are (stream, seed): training and validation never overlap


@dataclass
class TrainConfig:
    """Every knob of a pocket training run; stored in the checkpoint so a resume cannot silently change it."""

    model_config: str = str(POCKET_CONFIG)
    steps: int = 6500
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 200
    curriculum_steps: int = 1500
    background_fraction: float = 0.1
    clutter_fraction: float = 0.05
    aux_weight: float = 1.0
    shape_weight: float = 1.0  # weight of the shape head among the four attribute heads
    max_rotation: float = 45.0  # degrees, the world's rotation range at full difficulty
    init_from: str = ""  # a checkpoint.pt (model and heads) or exported .safetensors (model) starting this run
    surgery_dense_weight: float = 0.0  # dense loss on CLIP Surgery's value-value tokens too (stage 3)
    surgery_blocks: int = 2  # depth of the value-value path that loss trains (the backbone's default: half)
    dense_weight: float = 0.5
    eval_every: int = 500
    eval_images: int = 360
    checkpoint_every: int = 100
    seed: int = 0
    threads: int = 0  # 0 keeps torch's default

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        return config_from_dict(cls, values, "training options")


def build_model(config_path: str | os.PathLike, seed: int | None = 0):
    """An open_clip CLIP built from a model config JSON, with seeded random weights."""
    from open_clip.model import CLIP

    cfg = json.loads(Path(config_path).read_text())
    if seed is None:  # the caller seeds (and isolates) the global RNG itself
        return CLIP(**cfg)
    with torch.random.fork_rng(devices=[]):  # module init draws from the global RNG: seed it, then restore it
        torch.manual_seed(seed)
        return CLIP(**cfg)


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 ``(B, S, S, 3)`` -> normalised float ``(B, 3, S, S)`` on ``device``, exactly what the open_clip
    transform gives (the uint8 batch crosses to the device, a quarter of the float bytes)."""
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class AuxHeads(torch.nn.Module):
    """Attribute classifiers on the image embedding, used only during training."""

    def __init__(self, dim: int):
        super().__init__()
        self.shape = torch.nn.Linear(dim, len(W.SHAPES) + 1)  # + "no single object"
        self.colour = torch.nn.Linear(dim, len(W.COLOURS) + 1)
        self.background = torch.nn.Linear(dim, len(W.BACKGROUNDS))
        self.size = torch.nn.Linear(dim, len(W.SIZES) + 1)


def _labels(scenes: list[W.Scene]) -> dict[str, torch.Tensor]:
    none_shape, none_colour, none_size = len(W.SHAPES), len(W.COLOURS), len(W.SIZES)
    shapes, colours, bgs, sizes = [], [], [], []
    colour_names, size_names, bg_names = list(W.COLOURS), list(W.SIZES), list(W.BACKGROUNDS)
    for s in scenes:
        obj = s.objects[0] if s.kind == "object" else None
        shapes.append(W.SHAPES.index(obj.shape) if obj else none_shape)
        colours.append(colour_names.index(obj.colour) if obj else none_colour)
        sizes.append(size_names.index(obj.size) if obj else none_size)
        bgs.append(bg_names.index(s.background))
    return {k: torch.tensor(v) for k, v in
            dict(shape=shapes, colour=colours, background=bgs, size=sizes).items()}


def class_prompts() -> list[str]:
    """The dense loss's vocabulary: one prompt per shape, then one per background texture."""
    return ([f"a photo of a {s}." for s in W.SHAPES]
            + [f"a photo of a {w} background." for w in W.BACKGROUNDS.values()])


def make_batch(world: W.World, seed: int, step: int, cfg: TrainConfig, grid: int):
    """The training batch of ``step``: images, scenes, captions with constraints, and per-patch dense labels."""
    rng = np.random.default_rng([seed, TRAIN_STREAM, step])
    difficulty = min(1.0, step / max(1, cfg.curriculum_steps))
    kinds = rng.choice(["object", "background", "clutter"], size=cfg.batch_size,
                       p=[1 - cfg.background_fraction - cfg.clutter_fraction, cfg.background_fraction,
                          cfg.clutter_fraction])
    images, scenes, dense = [], [], []
    n_shapes = len(W.SHAPES)
    bg_names = list(W.BACKGROUNDS)
    for j, kind in enumerate(kinds):
        img, scene, cover = world.render(seed * 1_000_003 + TRAIN_STREAM, step * cfg.batch_size + j, kind=str(kind),
                                         difficulty=difficulty, return_mask=True)
        images.append(img)
        scenes.append(scene)
        patch_cover = cover.reshape(grid, cover.shape[0] // grid, grid, -1).mean(axis=(1, 3))
        bg_label = n_shapes + bg_names.index(scene.background)
        if scene.kind == "object":
            label = np.where(patch_cover > 0.35, W.SHAPES.index(scene.shape), bg_label)
        else:  # clutter objects are too small to label per patch: keep only clear background patches
            label = np.where(patch_cover < 0.05, bg_label, -100)
        dense.append(label.reshape(-1))
    captions = [W.caption(s, rng) for s in scenes]
    return np.stack(images), scenes, captions, torch.from_numpy(np.stack(dense)).long(), difficulty


def multi_positive_loss(image_emb, text_emb, positives, logit_scale):
    """Symmetric contrastive loss where every positive pair of ``positives`` (B_img x B_txt, bool) counts; a row
    with no positive adds nothing (instead of 0 / 0 = NaN, which would end a run)."""
    logits = logit_scale * image_emb @ text_emb.T
    target_i = positives.float() / positives.sum(1, keepdim=True).clamp(min=1)
    target_t = positives.T.float() / positives.T.sum(1, keepdim=True).clamp(min=1)
    loss_i = -(target_i * logits.log_softmax(1)).sum(1).mean()
    loss_t = -(target_t * logits.T.log_softmax(1)).sum(1).mean()
    return (loss_i + loss_t) / 2


def encode_patches(model, images: torch.Tensor, surgery_blocks: int = 0):
    """Global embedding, projected patch tokens and (with ``surgery_blocks``) value-value patch tokens, with
    gradients: :func:`clipos_lab.backbone.forward_tokens`, which inference uses too."""
    from ..backbone import forward_tokens

    return forward_tokens(model.visual, images, surgery_blocks)


@torch.no_grad()
def zero_shot_top1(model, tokenizer, seed: int, n_images: int, image_size: int, max_rotation: float = 45.0,
                   batch: int = 120) -> tuple[float, np.ndarray]:
    """Top-1 of "a photo of a {shape}." over all shapes on fresh validation images, and the confusion matrix."""
    model.eval()
    device = model_device(model)
    world = W.World(image_size, max_rotation=max_rotation)
    text = F.normalize(model.encode_text(tokenizer([f"a photo of a {s}." for s in W.SHAPES]).to(device)), dim=-1)
    confusion = np.zeros((len(W.SHAPES), len(W.SHAPES)), dtype=int)
    for start in range(0, n_images, batch):
        idx = range(start, min(n_images, start + batch))
        shapes = [W.SHAPES[i % len(W.SHAPES)] for i in idx]
        imgs = np.stack([world.render(seed, i, shape=s)[0] for i, s in zip(idx, shapes)])
        emb = F.normalize(model.encode_image(images_to_tensor(imgs, device)), dim=-1)
        pred = (emb @ text.T).argmax(1).cpu().numpy()
        for s, p in zip(shapes, pred):
            confusion[W.SHAPES.index(s), p] += 1
    model.train()
    return float(np.trace(confusion) / confusion.sum()), confusion


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class ShapesTask:
    """The v1 world as a training task: what :func:`train`'s loop asks of its data (batches, caption matching,
    attribute heads and their loss, the dense loss's prompts, the validation number). World v2 has its own
    (:class:`clipos_lab.pocket.train2.DrawingsTask`); the loop, its checkpoints and resumes are shared."""

    matches = staticmethod(W.matches)

    def __init__(self, cfg: TrainConfig, image_size: int, grid: int):
        self.cfg, self.image_size, self.grid = cfg, image_size, grid
        self.world = W.World(image_size, max_rotation=cfg.max_rotation)

    @staticmethod
    def make_heads(dim: int, cfg: TrainConfig) -> torch.nn.Module:
        return AuxHeads(dim)

    def prompts(self) -> list[str]:
        return class_prompts()

    def batch(self, step: int):
        return make_batch(self.world, self.cfg.seed, step, self.cfg, self.grid)

    def aux_loss(self, heads: torch.nn.Module, image_emb: torch.Tensor, scenes) -> torch.Tensor:
        weights = {"shape": self.cfg.shape_weight}
        losses = [weights.get(k, 1.0) * F.cross_entropy(getattr(heads, k)(image_emb * 10), v.to(image_emb.device))
                  for k, v in _labels(scenes).items()]
        return sum(losses) / 4

    def evaluate(self, model, tokenizer) -> float:
        return zero_shot_top1(model, tokenizer, self.cfg.seed * 1_000_003 + VAL_STREAM, self.cfg.eval_images,
                              self.image_size, self.cfg.max_rotation)[0]


class StepBatches(Dataset):
    """Steps ``first`` to ``last - 1`` of a run as a dataset (item i is the batch of step ``first + i``), so that
    a DataLoader's worker processes draw the next batches while the model trains on this one."""

    def __init__(self, task, first: int, last: int):
        self.task, self.first, self.last = task, first, last

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, i: int):
        return self.task.batch(self.first + i)


def _as_drawn(batch):
    return batch  # the loader's default would turn the batch's numpy images into tensors: keep it as drawn


def step_batches(task, first: int, last: int, workers: int):
    """The batches of steps ``first .. last - 1`` in order: drawn here (``workers=0``) or by that many worker
    processes ahead of the loop; a batch is a pure function of its step, so both give the same run."""
    if workers == 0:
        return (task.batch(step) for step in range(first, last))
    loader = DataLoader(StepBatches(task, first, last), batch_size=None, num_workers=workers, collate_fn=_as_drawn,
                        prefetch_factor=4)
    return iter(loader)


def load_init(path: str | os.PathLike, model: torch.nn.Module, heads: torch.nn.Module) -> None:
    """Start a run (a later training stage) from ``path``: a training ``checkpoint.pt`` (model and heads) or an
    exported ``.safetensors`` model (float16, no heads: the heads start from their seeded init)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"init_from={str(path)!r}: no such file; give a training checkpoint.pt or exported "
                         f".safetensors weights")
    if path.suffix == ".safetensors":
        import open_clip

        open_clip.load_checkpoint(model, str(path))  # the loader Backbone.load's pretrained=<file> uses
        return
    init = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(init["model"])
    heads.load_state_dict(init["heads"])


def cpu_copy(value):
    """A state dict (nested dicts and lists of tensors) with every tensor on the CPU: checkpoints load anywhere."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copy(v) for v in value)
    return value


def train(out_dir: str | os.PathLike, cfg: TrainConfig | None = None, progress: bool = True,
          max_steps_this_sitting: int | None = None, task_class=ShapesTask, config_class=TrainConfig,
          device: str = "auto", workers: int = 0) -> dict:
    """Train (or resume) a pocket model in ``out_dir``; returns the final log row.

    ``out_dir/checkpoint.pt`` is written every ``checkpoint_every`` steps; calling again with the same folder
    resumes from it (the stored config wins, so a resume cannot change the run). ``max_steps_this_sitting``
    stops early on purpose, to spread one run over several sittings. ``task_class`` supplies the data and the
    task-specific losses (default: the v1 world), ``config_class`` the config dataclass (a TrainConfig subclass).
    ``device`` and ``workers`` (processes drawing batches ahead) belong to a sitting, not to the run: a run may
    start on the CPU and go on on a GPU.
    """
    from open_clip.tokenizer import tokenize

    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ValueError(f"--workers must be a whole number >= 0 (0 draws batches in the training process), "
                         f"not {workers!r}")
    on = resolve_device(device)  # checked before any step: a typo or a missing GPU is one clear sentence
    out, ckpt_path, state, cfg = start_or_resume(out_dir, config_class, cfg)

    with torch.random.fork_rng(devices=[]):  # model and heads draw their init from one seeded stream
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model_config, seed=None)
        heads = task_class.make_heads(model.visual.output_dim, cfg)
    model.to(on)  # before the optimiser: its loaded state follows the parameters' device
    heads.to(on)
    context_length = model.context_length
    tokenizer = lambda texts: tokenize(texts, context_length=context_length).to(on)  # noqa: E731
    params = list(model.parameters()) + list(heads.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    log: list[dict] = []
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        optim.load_state_dict(state["optim"])
        log, step = state["log"], state["step"]

    elif cfg.init_from:
        load_init(cfg.init_from, model, heads)
    image_size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    grid = model.visual.grid_size[0]
    task = task_class(cfg, image_size, grid)
    prompt_tokens = tokenizer(task.prompts())
    token_cache: dict[str, torch.Tensor] = {}
    stop_at = cfg.steps if max_steps_this_sitting is None else min(cfg.steps, step + max_steps_this_sitting)
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="pocket train")
    t_start = time.time() - (log[-1]["elapsed_s"] if log else 0.0)
    model.train()
    batches = step_batches(task, step, stop_at, workers)
    while step < stop_at:
        images, scenes, captions, dense_labels, difficulty, *extra = next(batches)
        dense_labels = dense_labels.to(on)
        texts = sorted({c for c, _ in captions})
        constraints = {c: k for c, k in captions}
        positives = torch.tensor([[task.matches(constraints[t], s) for t in texts] for s in scenes], device=on)
        missing = [t for t in texts if t not in token_cache]
        if missing:
            token_cache.update(zip(missing, tokenizer(missing)))
        tokens = torch.stack([token_cache[t] for t in texts])

        for group in optim.param_groups:
            group["lr"] = _lr_at(step, cfg)
        x = images_to_tensor(images, on)
        n_vv = cfg.surgery_blocks if cfg.surgery_dense_weight > 0 else 0
        global_emb, patch_emb, surgery_emb = encode_patches(model, x, n_vv)
        image_emb = F.normalize(global_emb, dim=-1)
        text_all = F.normalize(model.encode_text(torch.cat([tokens, prompt_tokens])), dim=-1)
        text_emb, prompt_emb = text_all[: len(texts)], text_all[len(texts):]
        scale = model.logit_scale.exp().clamp(max=100)
        loss_clip = multi_positive_loss(image_emb, text_emb, positives, scale)
        loss_aux = task.aux_loss(heads, image_emb, scenes)
        dense_logits = scale * F.normalize(patch_emb, dim=-1) @ prompt_emb.T
        loss_dense = F.cross_entropy(dense_logits.reshape(-1, dense_logits.shape[-1]), dense_labels.reshape(-1),
                                     ignore_index=-100)
        loss = loss_clip + cfg.aux_weight * loss_aux + cfg.dense_weight * loss_dense
        if extra:  # a task's own dense targets (world v2's state words), on the same tokens
            loss_extra = task.extra_loss(model, tokenizer, patch_emb, surgery_emb, scale, scenes, extra, images=x)
            loss = loss + loss_extra
        if surgery_emb is not None:
            vv_logits = scale * F.normalize(surgery_emb, dim=-1) @ prompt_emb.T
            loss = loss + cfg.surgery_dense_weight * F.cross_entropy(
                vv_logits.reshape(-1, vv_logits.shape[-1]), dense_labels.reshape(-1), ignore_index=-100)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        step += 1
        bar.update(1)
        row = {"step": step, "loss": loss.item(), "loss_clip": loss_clip.item(), "loss_aux": loss_aux.item(),
               "loss_dense": loss_dense.item(), **({"loss_extra": loss_extra.item()} if extra else {}),
               "lr": optim.param_groups[0]["lr"], "difficulty": difficulty,
               "logit_scale": scale.item(), "val_top1": "", "elapsed_s": time.time() - t_start}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row["val_top1"] = task.evaluate(model, tokenizer)
        log.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", top1=row["val_top1"] or "-")
        if step % cfg.checkpoint_every == 0 or step == stop_at:
            with atomic_path(ckpt_path) as tmp:
                torch.save(cpu_copy({"model": model.state_dict(), "heads": heads.state_dict(),
                                     "optim": optim.state_dict(), "step": step, "log": log, "config": asdict(cfg)}),
                           tmp)
            write_log(log, out / "training_log.csv")
    bar.close()
    return log[-1] if log else {}


def write_log(log: list[dict], path: str | os.PathLike) -> None:
    """The training log as CSV (one row per step), written atomically."""
    if log:
        write_csv(log, path, columns=list(log[0]))


def export(out_dir: str | os.PathLike, weights_path: str | os.PathLike = POCKET_WEIGHTS,
           model_name: str = POCKET_NAME) -> str:
    """Write the trained model (heads dropped) as float16 safetensors plus its sha256; returns the digest.
    ``model_name`` goes into the file's metadata (pocket v2 exports as "pocket2-vit")."""
    from ..files import save_safetensors

    state = torch.load(Path(out_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    tensors = {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in state["model"].items()}
    weights_path = Path(weights_path)
    save_safetensors(tensors, weights_path, metadata={"format": "pt", "model": model_name,  # same bytes each time
                                                      "steps": str(state["step"])})
    digest = sha256_of(weights_path)
    with atomic_path(weights_path.with_name(weights_path.name + ".sha256")) as tmp:
        Path(tmp).write_text(f"{digest}  {weights_path.name}\n")
    # the shipped log keeps every 10th step and every evaluation: the curve, in a file small enough to commit
    thin = [row for row in state["log"] if row["step"] % 10 == 0 or row["val_top1"] != ""]
    write_log(thin, weights_path.parent / f"training_log_{Path(out_dir).name}.csv")
    return digest

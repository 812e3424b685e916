"""Training CLIPN's no tower on cached image features of pocket-world images and their captions.

The image tower and the yes tower are frozen, so an image enters training only through its global feature:
a pool of pocket-world images (drawn like the backbone's own training batches, from scenes it never trained on)
is encoded once and cached; the image encoder never runs while training. Every step then draws a batch of pool
images and, for each, a fresh caption, so an image meets many captions over a run. Which captions of the batch
are true of which image comes from the captions' stated constraints
(:func:`clipos_lab.clipn.losses.exact_targets`); ``targets="reference"`` gives CLIPN's diagonal instead, for
comparison. The world (v1's shapes for the v1 pocket model, world v2's drawings for pocket v2, whose captions
never name an unseen concept) is :mod:`.worlds`' business; ``world="auto"`` picks the backbone's own.

Every batch, caption and no-prompt draw is a pure function of ``(seed, step)`` and a checkpoint holds the tower,
the optimiser and the log, so an interrupted run resumed from its folder continues the same run.

    python -m clipos_lab clipn train --out runs/clipn --options '{"steps": 3000}'
    python -m clipos_lab clipn export --out runs/clipn --to assets/clipn/pocket-clipn.safetensors
    python -m clipos_lab clipn train --model pocket2 --out runs/clipn2   # pocket v2, on world v2
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..config import config_from_dict, start_or_resume
from ..files import atomic_path
from ..resources import sha256_of
from .encoder import NoTextEncoder
from .losses import exact_targets, itbo_loss, own_caption_targets, tso_loss, yes_no_margin
from .worlds import WORLDS, DrawingsPool, ShapesPool, pool_world, resolve_world

POOL_FIRST_STEP = 1_000_000  # pool batches come from pocket training steps far past any pocket run (<= 12,000;
# world v2 turns a step into scene indices step * 1000 and up, far past pocket v2's: clipn/worlds.py)
VAL_FIRST_STEP = 2_000_000  # held-out pool images for the pair-accuracy check, disjoint from the training pool
POOL_CHUNK = 250


@dataclass
class ClipnConfig:
    """Every knob of a no-tower training run; stored in the checkpoint so a resume cannot change the run."""

    steps: int = 2000
    batch_size: int = 128  # images per step (captions are one per image, merged when identical)
    lr: float = 2e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    tso_weight: float = 1.0  # the reference sums ITBO-yes, ITBO-no and TSO with equal weights (then halves)
    targets: str = "exact"  # "exact" (caption constraints) or "reference" (only an image's own caption is true)
    scale: float = 0.0  # logit scale of ITBO; 0 = the backbone's own
    pool_size: int = 20_000  # cached training images
    val_size: int = 1_000  # held-out images for the pair accuracy in the log
    world: str = "auto"  # "v1" (shapes), "v2" (drawings) or "auto": the backbone's own (stored resolved)
    background_fraction: float = 0.1  # v1 pool mix, as in the v1 pocket model's training batches; a v2 pool
    clutter_fraction: float = 0.05  # is mixed as pocket v2's (Train2Config), which these two do not change
    pack: str = ""  # v2: the drawings pack ("" = the shipped assets/drawings)
    eval_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    threads: int = 0  # 0 keeps torch's default

    @classmethod
    def from_dict(cls, values: dict) -> "ClipnConfig":
        cfg = config_from_dict(cls, values, "CLIPN training options")
        if cfg.targets not in ("exact", "reference"):
            raise ValueError(f"targets={cfg.targets!r}: choose 'exact' or 'reference'")
        if cfg.world not in WORLDS:
            raise ValueError(f"world={cfg.world!r}: choose 'auto', 'v1' (shapes) or 'v2' (drawings)")
        return cfg


# ------------------------------------------------------------------------------------------------ the pool
@dataclass
class Pool:
    """Global features ``(N, D)`` of pocket-world images, the scenes they show and the world that captions them
    and decides which captions are true."""

    features: torch.Tensor
    scenes: list
    world: ShapesPool | DrawingsPool


def world_of(backbone, cfg: ClipnConfig) -> ShapesPool | DrawingsPool:
    """The pool world ``cfg`` asks for (``world="auto"``: the backbone's own)."""
    return pool_world(backbone, cfg.world, cfg.background_fraction, cfg.clutter_fraction, cfg.pack)


def build_pool(backbone, n_images: int, seed: int, first_step: int, cfg: ClipnConfig, cache=True,
               progress: bool = True, world: ShapesPool | DrawingsPool | None = None) -> Pool:
    """Draw ``n_images`` training images of the pool world (default: ``cfg``'s) and encode them once; cached on
    disk."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..features import default_cache_dir

    world = world or world_of(backbone, cfg)
    chunk = min(POOL_CHUNK, n_images)
    key = json.dumps({"weights": backbone.weights_id, "preprocess": backbone.preprocess_id(), "n": n_images,
                      "seed": seed, "first": first_step, "chunk": chunk, **world.key()}, sort_keys=True)
    folder = (Path(cache) if isinstance(cache, (str, os.PathLike)) else default_cache_dir()) / "clipn_pool"
    path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"
    if cache and path.is_file():
        try:
            with safe_open(str(path), framework="pt") as fh:
                scenes = [world.from_json(s) for s in json.loads(fh.metadata()["scenes"])]
                return Pool(fh.get_tensor("features"), scenes, world)
        except Exception:  # unreadable cache: rebuild it
            pass
    features, scenes = [], []
    n_chunks = math.ceil(n_images / chunk)
    for k in tqdm(range(n_chunks), disable=not progress, desc=f"CLIPN pool ({world.name})"):
        images, chunk_scenes = world.draw(seed, first_step, k, chunk)
        x = torch.stack([backbone.preprocess(Image.fromarray(img)) for img in images])
        features.append(backbone.encode_images(x, surgery=False).global_.cpu())
        scenes.extend(chunk_scenes)
    pool = Pool(torch.cat(features)[:n_images].contiguous(), scenes[:n_images], world)
    if cache:
        with atomic_path(path) as tmp:
            save_file({"features": pool.features}, str(tmp),
                      metadata={"key": key, "scenes": json.dumps([world.to_json(s) for s in pool.scenes])})
    return pool


# ------------------------------------------------------------------------------------------------ batches
def draw_batch(pool: Pool, step: int, cfg: ClipnConfig):
    """Step ``step``'s batch: pool rows, one fresh caption per image, the distinct texts and both target kinds."""
    rng = np.random.default_rng([cfg.seed, 7, step])
    rows = rng.choice(len(pool.scenes), size=min(cfg.batch_size, len(pool.scenes)), replace=False)
    scenes = [pool.scenes[i] for i in rows]
    captions = [pool.world.caption(s, rng) for s in scenes]
    constraints = {text: c for text, c in captions}
    texts = sorted(constraints)
    if cfg.targets == "exact":
        positives = exact_targets(scenes, [constraints[t] for t in texts], pool.world.matches)
    else:
        positives = own_caption_targets([c for c, _ in captions], texts)
    return torch.as_tensor(rows), texts, positives


def _prompt_draw(n_texts: int, n_prompts: int, seed: int, step: int) -> torch.Tensor:
    """Which no-prompt each caption uses this step: one of the ``n_prompts`` or (index ``n_prompts``) their mean."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n_prompts + 1, (n_texts,), generator=gen)


@torch.no_grad()
def pair_accuracy(encoder: NoTextEncoder, backbone, pool: Pool, scale: float, seed: int = 0) -> float:
    """Balanced accuracy of "p_yes > 0.5" against exact truth over every (image, caption) pair of a held-out pool,
    one random caption per image: does the no tower say no exactly where a caption is false?"""
    rng = np.random.default_rng([seed, 11])
    captions = [pool.world.caption(s, rng) for s in pool.scenes]
    constraints = {t: c for t, c in captions}
    texts = sorted(constraints)
    truth = exact_targets(pool.scenes, [constraints[t] for t in texts], pool.world.matches)
    was_training = encoder.training
    encoder.eval()
    no = encoder(backbone.tokenize(texts))
    encoder.train(was_training)
    says_yes = yes_no_margin(pool.features, backbone.encode_text(texts), no, scale) > 0
    return 0.5 * float((says_yes[truth]).float().mean() + (~says_yes[~truth]).float().mean())


def _lr_at(step: int, cfg: ClipnConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ------------------------------------------------------------------------------------------------ training
def train(backbone, out_dir: str | os.PathLike, cfg: ClipnConfig | None = None, progress: bool = True,
          max_steps_this_sitting: int | None = None, cache=True) -> NoTextEncoder:
    """Train (or resume) a no tower for ``backbone`` in ``out_dir``; returns the encoder.

    ``out_dir/checkpoint.pt`` is written every ``checkpoint_every`` steps and at the end; calling again with the
    same folder resumes (the stored config wins). ``training_log.csv`` has one row per step.
    """
    out, ckpt_path, state, cfg = start_or_resume(out_dir, ClipnConfig, cfg)
    cfg = replace(cfg, world=resolve_world(backbone, cfg.world))  # stored resolved: a resume keeps its world
    world = world_of(backbone, cfg)
    if state is not None and state.get("world", world.key()) != world.key():
        raise RuntimeError(f"{ckpt_path} was trained on another pool world ({state['world']}; now {world.key()}): "
                           "the pack or pocket v2's scene mix changed since this run started, so its batches would "
                           "differ; finish it with the code and pack that started it, or use another --out")
    scale = cfg.scale or backbone.logit_scale
    pool = build_pool(backbone, cfg.pool_size, cfg.seed, POOL_FIRST_STEP, cfg, cache, progress, world)
    val = build_pool(backbone, cfg.val_size, cfg.seed, VAL_FIRST_STEP, cfg, cache, progress, world)

    encoder = NoTextEncoder.from_backbone(backbone)
    params = list(encoder.parameters())
    decay = [p for p in params if p.ndim >= 2 and p is not encoder.prompts]
    no_decay = [p for p in params if p.ndim < 2 or p is encoder.prompts]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    log: list[dict] = []
    step = 0
    if state is not None:
        if state["fingerprint"] != encoder.fingerprint:
            raise RuntimeError(f"{ckpt_path} was trained for another backbone's text tower; use another --out")
        encoder.load_state_dict(state["encoder"])
        optim.load_state_dict(state["optim"])
        log, step = state["log"], state["step"]
    stop_at = cfg.steps if max_steps_this_sitting is None else min(cfg.steps, step + max_steps_this_sitting)
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="CLIPN no tower")
    t_start = time.time() - (log[-1]["elapsed_s"] if log else 0.0)
    cpu_start = time.process_time() - (log[-1]["cpu_s"] if log else 0.0)  # CPU time: the machine is shared
    encoder.train()
    while step < stop_at:
        rows, texts, positives = draw_batch(pool, step, cfg)
        tokens = backbone.tokenize(texts)
        yes = backbone.encode_text(texts).to(backbone.device)
        no = F.normalize(encoder(tokens, _prompt_draw(len(texts), encoder.n_prompts, cfg.seed, step)), dim=-1)
        images = pool.features[rows].to(backbone.device)
        loss_yes, loss_no = itbo_loss(images, yes, no, scale, positives)
        loss_tso = tso_loss(yes, no)
        loss = 0.5 * (loss_yes + loss_no + cfg.tso_weight * loss_tso)
        for group in optim.param_groups:
            group["lr"] = _lr_at(step, cfg)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        step += 1
        bar.update(1)
        row = {"step": step, "loss": loss.item(), "itbo_yes": loss_yes.item(), "itbo_no": loss_no.item(),
               "tso": loss_tso.item(), "true_pair_fraction": float(positives.float().mean()),
               "lr": optim.param_groups[0]["lr"], "val_pair_acc": "", "elapsed_s": time.time() - t_start,
               "cpu_s": time.process_time() - cpu_start}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row["val_pair_acc"] = pair_accuracy(encoder, backbone, val, scale, cfg.seed)
        log.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=row["val_pair_acc"] or "-")
        if step % cfg.checkpoint_every == 0 or step == stop_at:
            with atomic_path(ckpt_path) as tmp:
                torch.save({"encoder": encoder.state_dict(), "optim": optim.state_dict(), "step": step, "log": log,
                            "config": asdict(cfg), "fingerprint": encoder.fingerprint, "world": world.key()}, tmp)
            write_log(log, out / "training_log.csv")
    bar.close()
    encoder.meta = {"config": asdict(cfg), "step": step}
    return encoder.eval()


def write_log(log: list[dict], path: str | os.PathLike) -> None:
    """The training log as CSV, written atomically."""
    if not log:
        return
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(log[0]))
            writer.writeheader()
            writer.writerows(log)


def load_checkpoint(backbone, out_dir: str | os.PathLike) -> NoTextEncoder:
    """The no tower of a training folder's ``checkpoint.pt`` (any step), for evaluating a run in progress."""
    path = Path(out_dir) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train first (python -m clipos_lab clipn train)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    encoder = NoTextEncoder.from_backbone(backbone)
    if state["fingerprint"] != encoder.fingerprint:
        raise RuntimeError(f"{path} was trained for another backbone's text tower")
    encoder.load_state_dict(state["encoder"])
    encoder.meta = {"config": state["config"], "step": state["step"]}
    return encoder.eval().requires_grad_(False)


def export(backbone, out_dir: str | os.PathLike, weights_path: str | os.PathLike, overwrite: bool = False) -> str:
    """Write a run's no tower as float16 safetensors plus ``.sha256`` and the log beside it; returns the digest."""
    encoder = load_checkpoint(backbone, out_dir)
    weights_path = Path(weights_path)
    encoder.save(weights_path, overwrite=overwrite, dtype=torch.float16)
    digest = sha256_of(weights_path)
    with atomic_path(weights_path.with_name(weights_path.name + ".sha256")) as tmp:
        Path(tmp).write_text(f"{digest}  {weights_path.name}\n")
    state = torch.load(Path(out_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    # the shipped log keeps every 10th step and every evaluation: the curve, in a file small enough to commit
    thin = [row for row in state["log"] if row["step"] % 10 == 0 or row["val_pair_acc"] != ""]
    write_log(thin, weights_path.with_name(weights_path.stem + "_training_log.csv"))
    return digest

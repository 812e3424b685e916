"""Training pocket v2: a small open_clip ViT with a 14 x 14 patch grid on world v2 (real drawings).

The loop, its checkpoints and its resumes are v1's (:func:`.train.train`); this module supplies what differs:
the model config (``assets/pocket2/pocket2-vit.json``: 112 px images, 8 px patches, 6 blocks of width 128; text
transformer of width 96), the data (:class:`DrawingsTask`: world v2 scenes of the pack's pre-training drawings
and captions that never name a held-out concept), the attribute heads, the dense loss's vocabulary, and the
validation number (zero-shot top-1 over the seen classes on the pack's ``val`` drawings, never trained on).

Why the recipe keeps v1's pieces: the multi-positive loss is what makes captions that state only some
attributes ("a drawing from the fruit collection") exact; the attribute heads and the dense patch loss give the
small ViT dense signal from step one, and the dense loss makes patch tokens spatial (CLIP-OS's stage 1 needs it).
A later stage (``init_from``) may add the state dense loss (``state_dense_weight``: patch tokens against "an
intact X." / "a damaged X." on the defect masks), other state words and phrases in the captions
(``state_words``, ``state_phrases``) and the window state loss (``window_state_weight``: WinCLIP's windows
against the same captions); the stages tried so far are in ``docs/pocket2.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..backbone import forward_windows, window_index
from ..resources import POCKET2_CONFIG
from . import world as W
from . import world2 as W2
from .captions2 import caption, say_state, state_forms
from .pack import DRAWINGS_DIR, DrawingsPack, load_pack
from .train import TRAIN_STREAM, VAL_STREAM, TrainConfig, images_to_tensor, model_device, train

WINDOW_STREAM = 3  # the window state loss's own random stream: the batches and captions stay the released run's


@dataclass
class Train2Config(TrainConfig):
    """TrainConfig with v2's defaults and world v2's knobs (stored in the checkpoint like v1's)."""

    model_config: str = str(POCKET2_CONFIG)
    pack: str = str(DRAWINGS_DIR)
    steps: int = 12000
    batch_size: int = 64
    warmup_steps: int = 500
    curriculum_steps: int = 1  # world v2 has no curriculum; v1's field is kept for the shared loop
    max_rotation: float = 20.0
    multi_fraction: float = 0.15
    shape_fraction: float = 0.1
    background_fraction: float = 0.1
    tint: float = 0.2
    occlusion: float = 0.15
    defect: float = 0.1
    labelled: float = 0.7  # share of drawings drawn from labelled ones (the rest: unlabelled extras)
    style: float = 0.0  # share of drawings redrawn in another style (world2.STYLES; the released run: none)
    state_dense_weight: float = 0.0  # patch tokens vs "an intact X." / "a damaged X." on defect masks (stage 2)
    state_patches: str = "object"  # which undamaged patches count as intact: the drawing's ("object") or "all"
    state_words: bool = False  # state captions and the state loss also say captions2's other state words
    state_phrases: bool = False  # ... and its phrase forms ("an apple without a flaw", "an apple with a defect")
    window_state_weight: float = 0.0  # k x k windows alone (WinCLIP's reading) vs the same state captions
    windows_per_image: int = 4  # per drawing with state labels: up to half damaged windows, the rest intact
    eval_every: int = 500
    eval_images: int = 300
    checkpoint_every: int = 50


def patch_cover(masks: np.ndarray, grid: int) -> np.ndarray:
    """``(n, S, S)`` pixel masks -> ``(n, grid, grid)``: the share of each patch they cover."""
    n, size = len(masks), masks.shape[1]
    return masks.reshape(n, grid, size // grid, grid, -1).mean(axis=(2, 4))


def vocabulary(pack: DrawingsPack) -> dict[str, list[str]]:
    """Label lists of the attribute heads (and the dense loss): only seen classes and their superclasses."""
    seen = sorted(c for c, info in pack.classes.items() if not info["unseen"])
    supers = sorted({pack.classes[c]["superclass"] for c in seen})
    backgrounds = list(dict.fromkeys(list(W.BACKGROUNDS.values()) + list(W2.PACK_BACKGROUND_WORDS.values())))
    shapes = [s for s in W.SHAPES if s not in seen]  # "star" and "heart" are drawing classes too: one label each
    return {"name": seen + shapes, "superclass": list(dict.fromkeys(supers + ["shapes"])), "background": backgrounds,
            "size": list(W2.SIZES), "colour": list(W.COLOURS), "state": ["intact", *W2.STATES]}


class Heads(torch.nn.Module):
    """Attribute classifiers on the image embedding (training only): name, superclass, background, size,
    colour, state; each with a last "none / not applicable" label."""

    def __init__(self, dim: int, vocab: dict[str, list[str]]):
        super().__init__()
        self.keys = list(vocab)
        self.layers = torch.nn.ModuleDict({k: torch.nn.Linear(dim, len(v) + 1) for k, v in vocab.items()})


class DrawingsTask:
    """World v2 as a training task for :func:`.train.train` (see :class:`.train.ShapesTask` for the protocol)."""

    matches = staticmethod(W2.matches)

    def __init__(self, cfg: Train2Config, image_size: int, grid: int):
        if cfg.state_patches not in ("object", "all"):
            raise ValueError(f"state_patches={cfg.state_patches!r}: choose 'object' (the drawing's undamaged patches "
                             f"are intact) or 'all' (the background too)")
        if cfg.window_state_weight > 0 and not 2 <= cfg.windows_per_image <= 64:
            raise ValueError(f"windows_per_image={cfg.windows_per_image!r}: give 2 to 64 windows per drawing (half of "
                             f"them may be damaged) or set window_state_weight to 0")
        self.cfg, self.image_size, self.grid = cfg, image_size, grid
        self.pack = load_pack(cfg.pack)
        self.vocab = vocabulary(self.pack)
        self.forbidden = frozenset(self.pack.manifest["forbidden_words"])
        object_fraction = 1 - cfg.multi_fraction - cfg.shape_fraction - cfg.background_fraction
        self.world = W2.World2(self.pack, image_size, ("pretrain", "extra"),
                               {"object": object_fraction, "multi": cfg.multi_fraction, "shape": cfg.shape_fraction,
                                "background": cfg.background_fraction},
                               cfg.max_rotation, cfg.tint, cfg.occlusion, cfg.defect, labelled=cfg.labelled,
                               style=cfg.style)
        if not any(r["class"] in self.vocab["name"] for r in self.pack.select("val")):
            raise ValueError(f"the pack at {self.pack.folder} has no 'val' drawings of seen classes: training "
                             "could not be checked; rebuild the pack with `python -m clipos_lab pocket pack`")
        self.prompt_names = self.vocab["name"]
        self.prompt_backgrounds = self.vocab["background"]

    @staticmethod
    def make_heads(dim: int, cfg: Train2Config) -> torch.nn.Module:
        return Heads(dim, vocabulary(load_pack(cfg.pack)))

    def prompts(self) -> list[str]:
        """The dense loss's vocabulary: one prompt per seen class and v1 shape, then one per background word."""
        return ([f"a photo of {'an' if n[0] in 'aeiou' else 'a'} {n}." for n in self.prompt_names]
                + [f"a photo of a {w} background." for w in self.prompt_backgrounds])

    def dense_labels(self, scene: W2.Scene2, masks: np.ndarray) -> np.ndarray:
        """Per patch: the prompt of the object covering > 35% of it, the background's prompt where objects cover
        < 5%, else ignored (-100); patches of unlabelled drawings are ignored too."""
        g = self.grid
        bg = len(self.prompt_names) + self.prompt_backgrounds.index(scene.background)
        if not len(masks):
            return np.full(g * g, bg)
        cover = patch_cover(masks, g)  # (n, g, g)
        label = np.where(cover.sum(0) < 0.05, bg, -100)
        for j, obj in enumerate(scene.objects):
            value = self.prompt_names.index(obj.name) if obj.name in self.prompt_names else -100
            label = np.where(cover[j] > 0.35, value, label)
        return label.reshape(-1)

    def state_labels(self, scene: W2.Scene2, masks: dict) -> np.ndarray:
        """Per patch of a single named drawing: 1 ("damaged") where its defect covers >= 25% of the patch, 0
        ("intact") where the defect covers none of it and (``state_patches="object"``) the drawing covers > 35%
        of it, else ignored (-100). With ``"all"`` the background is intact too: a state map is read over the
        whole image, where the background must not look damaged."""
        ignore = np.full(self.grid ** 2, -100)
        if scene.kind != "object" or scene.objects[0].name not in self.prompt_names:
            return ignore
        cover, defect = patch_cover(np.stack([masks["objects"][0], masks["defect"]]), self.grid).reshape(2, -1)
        intact = (defect == 0) & ((cover > 0.35) | (self.cfg.state_patches == "all"))
        return np.where(defect >= 0.25, 1, np.where(intact, 0, ignore))

    def batch(self, step: int):
        rng = np.random.default_rng([self.cfg.seed, TRAIN_STREAM, step])
        images, scenes, dense, states = [], [], [], []
        for j in range(self.cfg.batch_size):
            img, scene, masks = self.world.render(self.cfg.seed * 1_000_003 + TRAIN_STREAM,
                                                  step * self.cfg.batch_size + j, return_masks=True)
            images.append(img)
            scenes.append(scene)
            dense.append(self.dense_labels(scene, masks["objects"]))
            if self.cfg.state_dense_weight > 0 or self.cfg.window_state_weight > 0:
                states.append(self.state_labels(scene, masks))
        captions = [caption(s, rng, self.forbidden, self.cfg.state_words, self.cfg.state_phrases) for s in scenes]
        out = (np.stack(images), scenes, captions, torch.from_numpy(np.stack(dense)).long(), 1.0)
        if not states:
            return out
        states = np.stack(states)
        out += (torch.from_numpy(states).long(),)
        if self.cfg.window_state_weight > 0:
            out += self.state_windows(states, np.random.default_rng([self.cfg.seed, WINDOW_STREAM, step]))
        return out

    def state_windows(self, states: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows for the window state loss, from the patch state labels ``(B, P)``: one size ``k`` (2 or 3, as
        WinCLIP's scales) per batch; per image up to ``windows_per_image`` windows, at most half of them damaged
        (holding a damaged patch), the rest intact (every patch intact). Returns ``(B, M, k*k)`` patch indices
        and ``(B, M)`` labels (1 damaged, 0 intact, -100 unused)."""
        k, m = int(rng.choice([2, 3])), self.cfg.windows_per_image
        index = window_index((self.grid, self.grid), k).numpy()
        chosen, labels = np.zeros((len(states), m, k * k), dtype=np.int64), np.full((len(states), m), -100)
        for i, patch in enumerate(states):
            inside = patch[index]  # (W, k*k)
            damaged = np.flatnonzero((inside == 1).any(1))
            intact = np.flatnonzero((inside == 0).all(1))
            take_damaged = rng.permutation(damaged)[: m // 2]
            take_intact = rng.permutation(intact)[: m - len(take_damaged)]
            picks = np.concatenate([take_damaged, take_intact])
            chosen[i, : len(picks)] = index[picks]
            labels[i, : len(picks)] = [1] * len(take_damaged) + [0] * len(take_intact)
        return torch.from_numpy(chosen), torch.from_numpy(labels).long()

    def extra_loss(self, model, tokenizer, patch_emb, surgery_emb, scale, scenes, extra,
                   images: torch.Tensor | None = None) -> torch.Tensor:
        """The state dense loss: each labelled patch's token against its own drawing's two state captions
        ("an intact X." / "a damaged X.", the words the captions use), on the projected patch tokens and, when
        the run trains them, CLIP Surgery's value-value tokens (what zero-shot state prompts read); with
        ``window_state_weight``, also each chosen window's own embedding (WinCLIP's windows) against them."""
        labels = extra[0].to(patch_emb.device)
        rows = (labels != -100).any(1).nonzero().flatten().tolist()
        if not rows:
            return patch_emb.sum() * 0.0
        names = sorted({scenes[i].objects[0].name for i in rows})
        forms = [state_forms(state, self.cfg.state_words, self.cfg.state_phrases) for state in ("intact", "damaged")]
        texts = [f"{say_state(form, n)}." for n in names for state in forms for form in state]
        text = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)  # each state: the mean of its forms
        parts = [len(state) for state in forms] * len(names)
        text = F.normalize(torch.stack([t.mean(0) for t in text.split(parts)]), dim=-1).view(len(names), 2, -1)
        pair = text[torch.tensor([names.index(scenes[i].objects[0].name) for i in rows], device=text.device)]
        target = labels[rows].reshape(-1)
        losses = [F.cross_entropy(scale * torch.einsum("rpd,rkd->rpk", F.normalize(tokens[rows], dim=-1), pair)
                                  .reshape(-1, 2), target, ignore_index=-100)
                  for tokens in (patch_emb, surgery_emb) if tokens is not None]
        loss = self.cfg.state_dense_weight * sum(losses) / len(losses)
        if self.cfg.window_state_weight > 0 and (extra[2][rows] != -100).any():  # no window to read: no term
            index, window_labels = (t[rows].to(patch_emb.device) for t in extra[1:3])
            windows = F.normalize(forward_windows(model.visual, model.visual._embeds(images[rows]), index), dim=-1)
            logits = scale * torch.einsum("rmd,rkd->rmk", windows, pair)
            loss = loss + self.cfg.window_state_weight * F.cross_entropy(
                logits.reshape(-1, 2), window_labels.reshape(-1), ignore_index=-100)
        return loss

    def labels(self, scenes: list[W2.Scene2]) -> dict[str, torch.Tensor]:
        """Head targets: the single object's attributes (-100 where a drawing has no class), "none" otherwise."""
        out = {k: [] for k in self.vocab}
        for s in scenes:
            obj = s.objects[0] if s.kind in ("object", "shape") else None
            values = {"name": obj.name if obj else None, "superclass": obj.superclass if obj else None,
                      "background": s.background, "size": obj.size if obj else None,
                      "colour": (obj.colour or None) if obj else None,
                      "state": (obj.state or "intact") if obj else None}
            for k, v in values.items():
                names = self.vocab[k]
                if v is None:
                    out[k].append(len(names))  # the "none" label
                else:
                    out[k].append(names.index(v) if v in names else -100)
        return {k: torch.tensor(v) for k, v in out.items()}

    def aux_loss(self, heads: Heads, image_emb: torch.Tensor, scenes) -> torch.Tensor:
        losses = [F.cross_entropy(heads.layers[k](image_emb * 10), v.to(image_emb.device), ignore_index=-100)
                  for k, v in self.labels(scenes).items() if (v != -100).any()]
        return sum(losses) / len(losses)

    @torch.no_grad()
    def evaluate(self, model, tokenizer) -> float:
        return zero_shot_top1_v2(model, tokenizer, self.pack, self.cfg.seed * 1_000_003 + VAL_STREAM,
                                 self.cfg.eval_images, self.image_size, self.cfg.max_rotation)


@torch.no_grad()
def zero_shot_top1_v2(model, tokenizer, pack: DrawingsPack, seed: int, n_images: int, image_size: int,
                      max_rotation: float = 20.0, split: str = "val", batch: int = 100) -> float:
    """Top-1 of "a photo of a {class}." over the seen classes on single undamaged drawings of ``split``."""
    was_training = model.training
    model.eval()
    classes = sorted(c for c, info in pack.classes.items() if not info["unseen"])
    world = W2.World2(pack, image_size, (split,), max_rotation=max_rotation, occlusion=0.0, defect=0.0)
    records = [r for r in world.pool if r["class"] in classes]
    if not records:
        raise ValueError(f"the pack has no {split!r} drawings of seen classes to evaluate on")
    device = model_device(model)
    text = F.normalize(model.encode_text(tokenizer([f"a photo of {'an' if c[0] in 'aeiou' else 'a'} {c}."
                                                    for c in classes]).to(device)), dim=-1)
    correct = 0
    for start in range(0, n_images, batch):
        idx = range(start, min(n_images, start + batch))
        recs = [records[i % len(records)] for i in idx]
        imgs = np.stack([world.render(seed, i, kind="object", drawing=r, state="")[0] for i, r in zip(idx, recs)])
        emb = F.normalize(model.encode_image(images_to_tensor(imgs, device)), dim=-1)
        pred = (emb @ text.T).argmax(1).tolist()
        correct += sum(classes[p] == r["class"] for p, r in zip(pred, recs))
    model.train(was_training)
    return correct / n_images


def train2(out_dir: str | os.PathLike, options: dict | None = None, progress: bool = True,
           max_steps_this_sitting: int | None = None, device: str = "auto", workers: int = 0) -> dict:
    """Train (or resume) pocket v2 in ``out_dir`` with :func:`.train.train`'s loop; ``options`` are
    :class:`Train2Config` fields (ignored on resume: the stored config wins); ``device`` and ``workers`` are
    this sitting's."""
    cfg = Train2Config.from_dict(options) if options else None
    return train(out_dir, cfg, progress=progress, max_steps_this_sitting=max_steps_this_sitting,
                 task_class=DrawingsTask, config_class=Train2Config, device=device, workers=workers)

"""A frozen open_clip ViT that gives what CLIP-OS needs from one forward pass.

For a batch of images: the global embedding, every patch token projected into the joint image-text space the
same way the global token is (``ln_post`` then ``proj``), the patch tokens of CLIP Surgery's value-value
attention path over the last ``surgery_blocks`` blocks, and the *local features* GL-MCM and LoCoOp compute:
the last block run with each token attending only to itself (its own value), i.e. for the block's input ``x``,
``v = x + out_proj(W_v ln_1(x))``, ``v = v + mlp(ln_2(v))``, then ``ln_post`` and ``proj``. For text: the
model's own tokenizer and the pieces prompt learning needs (token embeddings, the text transformer, EOT pooling,
projection), reached through the model's public modules, without patching open_clip.

Sources of weights, tried in this order and never mixed:

* ``checkpoint=path``: a local file (``.safetensors``, ``.pt``, ``.bin``); no hub access at all;
* ``model="pocket"`` (the default): the pocket model shipped in ``assets/pocket``, checked against its sha256;
  ``model="pocket2"``: pocket v2 (14 x 14 patches, trained on the drawings) from ``assets/pocket2`` once exported
  there (``python -m clipos_lab pocket export2``), else a clear error;
* ``pretrained=tag``: an open_clip tag (e.g. ``"openai"``), from the hub cache or downloaded when online;
* ``random_weights=True``: seeded random weights, for tests and speed benchmarks only.

A model can also be given as a config JSON file (``config=path``): open_clip treats models as data.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .attention import block_with_value_value, value_path
from .errors import BackboneError, WeightsNotFoundError
from .resources import (
    POCKET2_CONFIG,
    POCKET2_NAME,
    POCKET2_WEIGHTS,
    POCKET_CONFIG,
    POCKET_NAME,
    POCKET_WEIGHTS,
    verify_checksum,
    verify_pocket_weights,
)
from .threads import matmul_weights, threaded

POCKET_ALIASES = ("pocket", "pocket-vit")
POCKET2_ALIASES = ("pocket2", "pocket2-vit")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> the first CUDA GPU when there is one, else the CPU; ``cpu`` / ``cuda`` / ``cuda:n`` checked."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise BackboneError(f"device {device!r} is not a torch device: use auto, cpu, cuda or cuda:<n>") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackboneError(f"device {device!r} asked for, but torch sees no CUDA GPU here: use --device cpu "
                                "(or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackboneError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPUs are visible")
    return dev


def check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise BackboneError(f"precision {precision!r} is unknown: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise BackboneError("precision fp16 needs a CUDA device (CPU autocast supports bf16 only); use fp32 or bf16")
    return precision


@dataclass
class ImageFeatures:
    """One batch's features in the joint space (not normalised): global ``(B, D)``, patches ``(B, N, D)``.

    ``patches``: the final-layer patch tokens; ``surgery``: CLIP Surgery's value-value tokens; ``local``: the
    value-path local features of GL-MCM and LoCoOp (see the module docstring); ``layers``: ``{block: (B, N, D)}``
    patch tokens after earlier blocks (1-based, when asked for), through the same ``ln_post`` and projection."""

    global_: torch.Tensor
    patches: torch.Tensor
    surgery: torch.Tensor | None
    grid: tuple[int, int]
    local: torch.Tensor | None = None
    layers: dict[int, torch.Tensor] | None = None


_REGISTERED: dict[str, str] = {}  # model name -> config text given to open_clip


def _register_config(config: str | os.PathLike) -> str:
    import open_clip

    path = Path(config).expanduser()
    if not path.is_file():
        raise BackboneError(f"model config {path} does not exist: pass the path of an open_clip model JSON")
    try:
        json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BackboneError(f"model config {path} is not valid JSON ({err})") from err
    text = path.read_text()
    if _REGISTERED.get(path.stem) != text:  # open_clip keeps a global registry: add each config once
        open_clip.add_model_config(path)
        _REGISTERED[path.stem] = text
    return path.stem


def check_device(device: str | torch.device) -> str:
    """``device`` as a string if torch can use it on this machine; else a BackboneError that says what to pass."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise BackboneError(f"device {device!r} is not a torch device ({err}); use cpu, cuda, cuda:<k> or mps") \
            from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise BackboneError(f"device {device!r}: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                                "use device 'cpu'")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise BackboneError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPUs "
                                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise BackboneError(f"device {device!r}: Apple MPS is not available here; use device 'cpu'")
    return str(device)


class Backbone:
    """A frozen open_clip ViT with patch tokens and the value-value path; see the module docstring."""

    def __init__(self, model: torch.nn.Module, preprocess, tokenizer, name: str, weights_id: str,
                 surgery_blocks: int | None = None, device: str | torch.device = "cpu", precision: str = "fp32"):
        visual = getattr(model, "visual", None)
        if visual is None or not hasattr(visual, "transformer") or not hasattr(visual, "conv1"):
            kind = type(visual).__name__ if visual is not None else "no image tower"
            raise BackboneError(
                f"model {name!r} has a {kind} image tower without patch tokens; CLIP-OS needs an open_clip "
                "VisionTransformer (e.g. ViT-B-16 or the pocket model)")
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") not in ("tok", "avg"):
            raise BackboneError(f"model {name!r} pools image tokens with attention; only class-token or average "
                                "pooling ViTs map patch tokens into the joint space")
        self.device = resolve_device(device)
        self.precision = check_precision(precision, self.device)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.weights_id = weights_id
        self._text_cache: dict[str, torch.Tensor] = {}
        self._weights_per_token: dict[str, int] = {}
        self.no_text = None  # CLIPN's optional no-text encoder (clipos_lab.clipn.attach sets it)
        depth = len(visual.transformer.resblocks)
        self.surgery_blocks = depth // 2 if surgery_blocks is None else int(surgery_blocks)
        if not 0 <= self.surgery_blocks <= depth:
            raise BackboneError(f"surgery_blocks={surgery_blocks} must be between 0 and the depth {depth}")

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, model: str = "pocket", pretrained: str | None = None, checkpoint: str | os.PathLike | None = None,
             config: str | os.PathLike | None = None, random_weights: bool = False, seed: int = 0,
             surgery_blocks: int | None = None, device: str = "cpu", cache_dir: str | None = None,
             precision: str = "fp32") -> "Backbone":
        """Load a backbone; see the module docstring for the sources and their order."""
        import open_clip

        # what a run record stores to load the same backbone again (the device is the rerun's choice)
        requested = {"model": model, "pretrained": pretrained, "random_weights": bool(random_weights),
                     "seed": int(seed),
                     "checkpoint": None if checkpoint is None else str(Path(checkpoint).expanduser().resolve()),
                     "config": None if config is None else str(Path(config).expanduser().resolve()),
                     "surgery_blocks": surgery_blocks, "precision": precision}
        if str(device) != "auto":
            check_device(device)
        device = resolve_device(device)
        check_precision(precision, device)
        weights_id = None
        if config is not None:
            model = _register_config(config)
        if model in POCKET_ALIASES:
            model = _register_config(POCKET_CONFIG)
            if checkpoint is None and not random_weights:
                checkpoint, weights_id = POCKET_WEIGHTS, f"{POCKET_NAME}:sha256:{verify_pocket_weights()}"
        elif model in POCKET2_ALIASES:
            model = _register_config(POCKET2_CONFIG)
            if checkpoint is None and not random_weights:
                if not POCKET2_WEIGHTS.is_file():
                    raise WeightsNotFoundError(
                        f"pocket v2 has no weights yet ({POCKET2_WEIGHTS} is missing; assets/pocket2/README.md "
                        "says how they were made). Use model='pocket' (v1), or train it with `python -m "
                        "clipos_lab pocket train2` and `python -m clipos_lab pocket export2`")
                digest = verify_checksum(POCKET2_WEIGHTS, "pocket v2 weights")
                checkpoint, weights_id = POCKET2_WEIGHTS, f"{POCKET2_NAME}:sha256:{digest}"
        if open_clip.get_model_config(model) is None:
            raise BackboneError(f"unknown model {model!r}: use an open_clip name (open_clip.list_models()), "
                                "'pocket', or config=path/to/model.json")

        if checkpoint is not None:
            path = Path(checkpoint).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(
                    f"checkpoint {path} for model {model!r} does not exist: pass the path of a local weights file")
            stat = path.stat()
            weights_id = weights_id or f"file:{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
            weights = str(path)
        elif pretrained is not None:
            weights, weights_id = pretrained, f"open_clip:{model}/{pretrained}"
        elif random_weights:
            weights, weights_id = None, f"random:seed{seed}"
        else:
            raise WeightsNotFoundError(
                f"no weights given for model {model!r}: pass pretrained=<tag> "
                f"(tags: {open_clip.list_pretrained_tags_by_model(model) or 'none known'}), checkpoint=<file>, "
                "or use model='pocket' (shipped, offline)")
        try:
            with torch.random.fork_rng(devices=[]):  # random init draws from the global RNG; leave it as it was
                torch.manual_seed(seed)
                net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=weights, device=device,
                                                                           cache_dir=cache_dir)
        except Exception as err:  # open_clip raises RuntimeError / OSError / HF errors: name what was tried
            if checkpoint is not None:
                raise BackboneError(f"could not load checkpoint {checkpoint} into {model!r}: {err}") from err
            raise WeightsNotFoundError(
                f"could not load weights {model!r} pretrained={pretrained!r}: tried the open_clip / Hugging Face "
                f"hub cache{f' in {cache_dir}' if cache_dir else ''} and a download ({type(err).__name__}: {err}). "
                "Offline? Copy the weights file here and pass checkpoint=<file>, or use model='pocket'.") from err
        tokenizer = open_clip.get_tokenizer(model)
        backbone = cls(net, preprocess, tokenizer, model, weights_id, surgery_blocks=surgery_blocks, device=device,
                       precision=precision)
        backbone.load_args = requested
        return backbone

    # --------------------------------------------------------------------------------------------- properties
    @property
    def visual(self):
        return self.model.visual

    depth = property(lambda self: len(self.visual.transformer.resblocks), doc="Blocks of the image tower.")

    @property
    def embed_dim(self) -> int:
        return int(self.visual.output_dim)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(int(g) for g in self.visual.grid_size)

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp())

    def autocast(self):
        """Mixed precision for forward passes (``precision`` bf16 / fp16); fp32 runs exactly as without it."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def preprocess_id(self) -> str:
        """A stable description of the image transform: part of every feature cache key."""
        return repr(self.preprocess)

    # ------------------------------------------------------------------------------------------------ images
    def forward_work(self, tower: str, items: int, tokens: int | None = None) -> float:
        """Multiply-adds of one pass of ``items`` images (``tower="image"``) or texts of ``tokens`` tokens
        (default: the full context) through a tower; the thread policy (:mod:`clipos_lab.threads`) sizes by it."""
        if tower not in self._weights_per_token:
            module = self.visual if tower == "image" else self._text_tower()
            self._weights_per_token[tower] = matmul_weights(module)
        if tokens is None:
            tokens = self.grid[0] * self.grid[1] + 1 if tower == "image" else int(self.tokenize(["x"]).shape[1])
        return float(items) * tokens * self._weights_per_token[tower]

    @torch.no_grad()
    @threaded(lambda self, images, *args, **kwargs: self.forward_work("image", len(images)))
    def encode_images(self, images: torch.Tensor, surgery: bool = True, local: bool = True,
                      layers: Sequence[int] = ()) -> ImageFeatures:
        """Global, patch and (optionally) value-value and value-path local features of images ``(B, 3, S, S)``.

        One pass through the ViT: blocks before the last ``surgery_blocks`` run as open_clip runs them; the last
        ones are unrolled so the value-value attention reuses the block's own q/k/v projection. The surgery
        stream starts from the hidden state entering those blocks and adds each block's v-v attention output,
        skipping the MLP, as CLIP Surgery does. The local features reuse the last block's input. ``layers``: also
        the patch tokens after those blocks (1-based; the last block's are ``patches``), for anomaly maps."""
        visual = self.visual
        images = images.to(self.device, dtype=visual.conv1.weight.dtype, non_blocking=True)
        with self.autocast():
            global_, patches, surgery_tokens, local_tokens, middle = _forward(
                visual, images, self.surgery_blocks if surgery else 0, local, check_layers(layers, self.depth))
        grid = (images.shape[-2] // visual.patch_size[0], images.shape[-1] // visual.patch_size[1])
        as_float = lambda t: None if t is None else t.float()  # noqa: E731
        return ImageFeatures(global_.float(), patches.float(), as_float(surgery_tokens), grid, as_float(local_tokens),
                             {k: v.float() for k, v in middle.items()} if layers else None)

    # -------------------------------------------------------------------------------------------------- text
    def _text_tower(self):
        return getattr(self.model, "text", self.model)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def token_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Word embeddings ``(T, L, W)`` of token ids, the input space learnable prompts live in."""
        return self._text_tower().token_embedding(tokens)

    def encode_text_embeddings(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Text features from word embeddings (e.g. with learned context vectors spliced in).

        ``tokens`` gives the sequence whose end-of-text position is pooled (argmax of the ids for CLIP's
        tokenizer), so prompts that replace placeholder words keep the tokenizer's EOT position.
        Gradients flow to ``embeddings``; the tower's weights stay frozen.
        """
        from open_clip.transformer import text_global_pool

        tower = self._text_tower()
        pool_type = getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))
        eos = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
        mask = tower.attn_mask
        if mask is not None and pool_type == "argmax":
            # causal attention: nothing after the last EOT reaches a pooled token, so those positions are
            # skipped (same result, e.g. 10 instead of 77 positions for short prompts)
            length = int(tokens.argmax(-1).max()) + 1
            embeddings, tokens = embeddings[:, :length], tokens[:, :length]
        x = embeddings + tower.positional_embedding[: embeddings.shape[1]].to(embeddings.dtype)
        if mask is not None:
            mask = mask[: x.shape[1], : x.shape[1]]
        with self.autocast():
            x = tower.transformer(x, attn_mask=mask)
            x = tower.ln_final(x)
            x = text_global_pool(x, tokens, pool_type, eos_token_id=eos)
            projection = tower.text_projection
            if projection is None:
                return x.float()
            return (projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection).float()

    @torch.no_grad()
    @threaded(lambda self, texts, *args, **kwargs: self.forward_work("text", min(len(texts), 256)))
    def encode_text(self, texts: Sequence[str], normalize: bool = True, batch_size: int = 256,
                    cached: bool = True) -> torch.Tensor:
        """Text features ``(T, D)`` of plain strings, with the model's own tokenizer; cached per string.

        A string's last bits depend on the batch it was first encoded in (docs/cluster.md); ``cached=False``
        encodes ``texts`` as given, in batches of ``batch_size``, so the same list gives the same bits in any
        process, whatever it encoded before (for features a loss reads continuously)."""
        texts = list(texts)
        if not cached:
            with self.autocast():
                encoded = [self.model.encode_text(self.tokenize(texts[s: s + batch_size])).float().cpu()
                           for s in range(0, len(texts), batch_size)]
            return self._finish_text(encoded, normalize)
        todo = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start: start + batch_size]
            with self.autocast():
                encoded = self.model.encode_text(self.tokenize(chunk)).float().cpu()
            self._text_cache.update(zip(chunk, encoded))
        return self._finish_text([self._text_cache[t][None] for t in texts], normalize)

    def _finish_text(self, rows: list[torch.Tensor], normalize: bool) -> torch.Tensor:
        if not rows:
            return torch.empty(0, self.embed_dim, device=self.device)
        features = torch.cat(rows).to(self.device)
        return F.normalize(features, dim=-1) if normalize else features


def forward_tokens(visual, images: torch.Tensor, surgery_blocks: int = 0):
    """``(global, patches, surgery or None)`` in the joint space, from one pass of an open_clip ViT tower.

    Gradients follow the caller's mode: :meth:`Backbone.encode_images` runs it without them, pocket training
    with them, so both see the same computation.
    """
    return _forward(visual, images, surgery_blocks, local=False)[:3]


def window_index(grid: tuple[int, int], k: int) -> torch.Tensor:
    """``(W, k*k)`` patch indices (row-major) of every ``k x k`` window at stride 1."""
    h, w = grid
    if not 1 <= k <= min(h, w):
        raise ValueError(f"window size {k} does not fit the {h} x {w} patch grid")
    rows = [[(r + i) * w + (c + j) for i in range(k) for j in range(k)]
            for r in range(h - k + 1) for c in range(w - k + 1)]
    return torch.tensor(rows, dtype=torch.long)


def forward_windows(visual, embeds: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(N, M, D)`` projected class tokens (not unit length) of windows that go through the tower alone: the
    class token and the window's patches, every other patch left out, as WinCLIP reads a window.

    ``embeds``: ``visual._embeds(images)``, ``(N, 1 + P, width)``; ``index``: patch indices ``(M, k*k)`` (the same
    windows of every image) or ``(N, M, k*k)``. Gradients follow the caller's mode, as in :func:`forward_tokens`.
    """
    n = len(embeds)
    index = index.expand(n, -1, -1) if index.dim() == 2 else index
    parts = embeds[:, 1:][torch.arange(n, device=embeds.device)[:, None, None], index]  # (N, M, k*k, width)
    seq = torch.cat([embeds[:, :1, None].expand(-1, index.shape[1], -1, -1), parts], dim=2).flatten(0, 1)
    for block in visual.transformer.resblocks:
        seq = block(seq)
    pooled = visual.ln_post(seq[:, 0])
    return (pooled @ visual.proj if visual.proj is not None else pooled).reshape(n, index.shape[1], -1)


def check_layers(layers: Sequence[int], depth: int) -> tuple[int, ...]:
    """Intermediate block numbers (1-based, before the last block), sorted; anything else is a BackboneError."""
    if bad := [k for k in layers if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < depth]:
        raise BackboneError(f"layers {bad}: intermediate layers are blocks 1..{depth - 1} (block {depth} gives the "
                            "patch tokens)")
    return tuple(sorted({int(k) for k in layers}))


def _forward(visual, images: torch.Tensor, surgery_blocks: int = 0, local: bool = False, layers: Sequence[int] = ()):
    """:func:`forward_tokens` plus the local features and ``{block: patch tokens}`` of the blocks ``layers``."""
    x = visual._embeds(images)
    blocks = visual.transformer.resblocks
    start = len(blocks) - surgery_blocks
    proj = visual.proj
    project = (lambda t: t @ proj) if proj is not None else (lambda t: t)
    last_input, middle, vv = None, {}, None
    for number, block in enumerate(blocks, start=1):
        if local and number == len(blocks):
            last_input = x
        if number > start:  # the last surgery_blocks: value-value path too, starting from this block's input
            vv = x if vv is None else vv
            x, vv_out = block_with_value_value(block, x)
            vv = vv + vv_out
        else:
            x = block(x)
        if number in layers:
            middle[number] = project(visual.ln_post(x[:, 1:]))
    tokens = visual.ln_post(x)
    pooled = tokens[:, 1:].mean(1) if getattr(visual, "pool_type", "tok") == "avg" else tokens[:, 0]
    surgery = project(visual.ln_post(vv[:, 1:])) if surgery_blocks else None
    local_tokens = project(visual.ln_post(value_path(blocks[-1], last_input[:, 1:]))) if local else None
    return project(pooled), project(tokens[:, 1:]), surgery, local_tokens, middle

"""CLIPN's "no" text encoder: a second text tower that learns to say what an image is *not*.

CLIPN (Wang et al., ICCV 2023) keeps CLIP's image tower and ordinary ("yes") text tower frozen and adds a copy of
the text tower, the *no* tower (token and positional embeddings, transformer, final LayerNorm, projection), plus
16 learnable no-prompt vectors. Each no-prompt is a ``(context_length, width)`` array added position-wise to the
token + positional embeddings (the layout of CLIPN's public code, ``prompt_no``); training picks one of the 16 or
their mean per caption, inference uses the mean.

The encoder is an optional part of a :class:`~clipos_lab.backbone.Backbone`: :func:`attach` sets
``backbone.no_text``. It is tied to the yes tower it was copied from: a fingerprint of that tower is stored with
the weights, and loading onto a backbone with another text tower is refused (its no-embeddings would be opposite
to nothing in particular).

Weights are saved as safetensors with the parameter names of CLIPN's released checkpoints
(``token_embedding_no.weight``, ``positional_embedding_no``, ``transformer_no.*``, ``ln_final_no.*``,
``text_projection_no``, ``prompt_no``), so one naming serves our files and :mod:`clipos_lab.clipn.released`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import weakref
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import BackboneError, WeightsNotFoundError
from ..files import atomic_path
from ..resources import ASSETS, POCKET2_NAME, POCKET_NAME, verify_checksum

N_NO_PROMPTS = 16
FORMAT = "clipos_lab.clipn/1"
CLIPN_DIR = ASSETS / "clipn"
POCKET_NO_TEXT = CLIPN_DIR / "pocket-clipn.safetensors"
POCKET2_NO_TEXT = CLIPN_DIR / "pocket2-clipn.safetensors"  # pocket v2's, trained on world v2 (docs/clipn.md)
TRAIN_POCKET2 = ("python -m clipos_lab clipn train --model pocket2 --out runs/clipn2 && python -m clipos_lab clipn "
                 "export --model pocket2 --out runs/clipn2 --to assets/clipn/pocket2-clipn.safetensors")


class NoTextEncoder(torch.nn.Module):
    """The no tower: a trainable copy of a frozen open_clip text tower plus ``n_prompts`` additive no-prompts."""

    def __init__(self, token_embedding: torch.nn.Embedding, positional_embedding: torch.Tensor,
                 transformer: torch.nn.Module, ln_final: torch.nn.Module, text_projection: torch.Tensor,
                 attn_mask: torch.Tensor | None, prompts: torch.Tensor, fingerprint: str, model_name: str = "",
                 pool_type: str = "argmax"):
        super().__init__()
        if pool_type != "argmax":
            raise BackboneError(f"the no-text encoder pools at the end-of-text token (argmax); this text tower "
                                f"pools with {pool_type!r}")
        self.token_embedding = token_embedding
        self.positional_embedding = torch.nn.Parameter(positional_embedding.detach().clone())
        self.transformer = transformer
        self.ln_final = ln_final
        self.text_projection = torch.nn.Parameter(text_projection.detach().clone())
        self.register_buffer("attn_mask", None if attn_mask is None else attn_mask.detach().clone(),
                             persistent=False)
        self.prompts = torch.nn.Parameter(prompts.detach().clone())
        self.fingerprint = fingerprint
        self.model_name = model_name
        self.meta: dict = {}

    # ----------------------------------------------------------------------------------------------- creation
    @classmethod
    def from_backbone(cls, backbone, n_prompts: int = N_NO_PROMPTS) -> "NoTextEncoder":
        """A no tower initialised as an exact copy of ``backbone``'s yes tower, with zero no-prompts."""
        tower = yes_tower(backbone)
        context, width = tower.positional_embedding.shape
        encoder = cls(copy.deepcopy(tower.token_embedding), tower.positional_embedding,
                      copy.deepcopy(tower.transformer), copy.deepcopy(tower.ln_final), tower.text_projection,
                      tower.attn_mask, torch.zeros(n_prompts, context, width), yes_tower_fingerprint(backbone),
                      backbone.name, _pool_type(tower))
        return encoder.to(backbone.device).requires_grad_(True)

    @property
    def n_prompts(self) -> int:
        return int(self.prompts.shape[0])

    # -------------------------------------------------------------------------------------------------- forward
    def forward(self, tokens: torch.Tensor, prompt_index: torch.Tensor | None = None) -> torch.Tensor:
        """No-features ``(T, D)`` (not normalised) of token ids ``(T, L)``.

        ``prompt_index`` ``(T,)`` picks a no-prompt per text, ``n_prompts`` meaning their mean (training draws
        these); ``None`` uses the mean for every text (inference).
        """
        from open_clip.transformer import text_global_pool

        if prompt_index is None:
            prompt = self.prompts.mean(0, keepdim=True)
        else:
            bank = torch.cat([self.prompts, self.prompts.mean(0, keepdim=True)])
            prompt = bank[prompt_index]
        # causal attention: positions after the last end-of-text token never reach a pooled token
        length = int(tokens.argmax(-1).max()) + 1 if self.attn_mask is not None else tokens.shape[1]
        tokens = tokens[:, :length]
        x = self.token_embedding(tokens) + self.positional_embedding[:length] + prompt[:, :length]
        mask = None if self.attn_mask is None else self.attn_mask[:length, :length]
        x = self.transformer(x, attn_mask=mask)
        x = self.ln_final(x)
        x = text_global_pool(x, tokens, "argmax")
        return x @ self.text_projection

    @torch.no_grad()
    def encode(self, backbone, texts: Sequence[str], normalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """No-features ``(T, D)`` of plain strings with ``backbone``'s tokenizer (mean no-prompt)."""
        self.check_backbone(backbone)
        was_training = self.training
        self.eval()
        out = [self(backbone.tokenize(list(texts[i: i + batch_size]))).float().cpu()
               for i in range(0, len(texts), batch_size)]
        self.train(was_training)
        features = torch.cat(out) if out else torch.empty(0, backbone.embed_dim)
        return F.normalize(features, dim=-1) if normalize else features

    # ---------------------------------------------------------------------------------------------- identity
    def check_backbone(self, backbone) -> None:
        """Refuse a backbone whose yes tower is not the one this no tower was made for."""
        theirs = yes_tower_fingerprint(backbone)
        if theirs != self.fingerprint:
            raise BackboneError(
                f"this CLIPN no-text encoder was made for the text tower of {self.model_name or 'another model'!r} "
                f"(fingerprint {self.fingerprint[:12]}...), not for {backbone.name!r} ({theirs[:12]}...): "
                "train one for this backbone (python -m clipos_lab clipn train) or load the weights released for it")

    # ------------------------------------------------------------------------------------------- persistence
    def released_state_dict(self) -> dict[str, torch.Tensor]:
        """The parameters under the names of CLIPN's released checkpoints."""
        out = {"token_embedding_no.weight": self.token_embedding.weight, "positional_embedding_no":
               self.positional_embedding, "text_projection_no": self.text_projection, "prompt_no": self.prompts}
        out.update({f"transformer_no.{k}": v for k, v in self.transformer.state_dict().items()})
        out.update({f"ln_final_no.{k}": v for k, v in self.ln_final.state_dict().items()})
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def load_released_state_dict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load tensors named as in CLIPN's checkpoints; every no-branch tensor must be there, with its shape."""
        mine = self.released_state_dict()
        missing = sorted(set(mine) - set(state))
        if missing:
            raise BackboneError(f"{source} lacks {len(missing)} no-branch tensors, e.g. {missing[:3]}: it is not a "
                                "CLIPN no-text encoder for this model")
        wrong = [k for k in mine if k != "prompt_no" and tuple(state[k].shape) != tuple(mine[k].shape)]
        if wrong or state["prompt_no"].shape[1:] != mine["prompt_no"].shape[1:]:
            k = (wrong or ["prompt_no"])[0]
            raise BackboneError(f"{source}: {k} has shape {tuple(state[k].shape)}, this model needs "
                                f"{tuple(mine[k].shape)}: the weights belong to another model")
        with torch.no_grad():
            self.token_embedding.weight.copy_(state["token_embedding_no.weight"])
            self.positional_embedding.copy_(state["positional_embedding_no"])
            self.text_projection.copy_(state["text_projection_no"])
            self.prompts = torch.nn.Parameter(state["prompt_no"].detach().clone().float().to(self.prompts.device))
            self.transformer.load_state_dict({k[len("transformer_no."):]: v for k, v in state.items()
                                              if k.startswith("transformer_no.")})
            self.ln_final.load_state_dict({k[len("ln_final_no."):]: v for k, v in state.items()
                                           if k.startswith("ln_final_no.")})

    def save(self, path: str | os.PathLike, extra: dict | None = None, overwrite: bool = False,
             dtype: torch.dtype | None = None) -> Path:
        """Write the no tower as safetensors (atomically), with the yes tower's fingerprint in the metadata;
        ``dtype`` (e.g. ``torch.float16``, how the shipped file is stored) converts on the way; loading gives
        float32 back."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists: pass overwrite=True to replace it")
        meta = {"format": FORMAT, "fingerprint": self.fingerprint, "model": self.model_name,
                "n_prompts": str(self.n_prompts), "extra": json.dumps({**self.meta, **(extra or {})})}
        with atomic_path(path) as tmp:
            state = self.released_state_dict()
            if dtype is not None:
                state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
            save_file(state, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, backbone) -> "NoTextEncoder":
        """Load a no tower saved by :meth:`save`; refused when ``backbone``'s yes tower is another one."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"CLIPN no-text weights {path} do not exist: train them "
                                       "(python -m clipos_lab clipn train) or pass the right path")
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types for truncated / foreign files
            raise BackboneError(f"{path} is not a readable safetensors file ({err})") from err
        if meta.get("format") != FORMAT:
            raise BackboneError(f"{path} is not a clipos_lab CLIPN no-text file (format {meta.get('format')!r}); "
                                "for CLIPN's released .pt checkpoints use clipos_lab.clipn.released.load_released")
        if meta.get("fingerprint") != yes_tower_fingerprint(backbone):
            raise BackboneError(
                f"{path} was trained for the text tower of {meta.get('model') or 'another model'!r}, not for "
                f"{backbone.name!r} ({backbone.weights_id}): its no-embeddings mean nothing for this backbone; "
                "train one for it (python -m clipos_lab clipn train)")
        encoder = cls.from_backbone(backbone, n_prompts=int(state["prompt_no"].shape[0]))
        encoder.load_released_state_dict({k: v.float() for k, v in state.items()}, source=str(path))
        encoder.meta = json.loads(meta.get("extra", "{}"))
        return encoder.eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------------- helpers
_FINGERPRINTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def yes_tower(backbone):
    tower = backbone._text_tower()
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    if any(getattr(tower, n, None) is None for n in needed) or not isinstance(tower.text_projection,
                                                                              torch.nn.Parameter):
        raise BackboneError(f"model {backbone.name!r} has no open_clip-native text tower (token embedding, "
                            "transformer, ln_final, projection matrix): CLIPN's no tower copies exactly that")
    return tower


def _pool_type(tower) -> str:
    return getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))


def yes_tower_fingerprint(backbone) -> str:
    """sha256 over the yes text tower's parameters (names, shapes and values): which tower a no tower belongs to.

    Hashes the tower's float32 values, so float16 storage of the same weights hashes differently only if the values
    differ; a few seconds at most for a ViT-B text tower.
    """
    tower = yes_tower(backbone)
    cached = _FINGERPRINTS.get(tower)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    named = {"token_embedding.weight": tower.token_embedding.weight, "positional_embedding":
             tower.positional_embedding, "text_projection": tower.text_projection,
             **{f"transformer.{k}": v for k, v in tower.transformer.state_dict().items()},
             **{f"ln_final.{k}": v for k, v in tower.ln_final.state_dict().items()}}
    for name in sorted(named):
        value = named[name].detach().float().cpu().contiguous()
        h.update(f"{name}:{tuple(value.shape)}".encode())
        h.update(value.numpy().tobytes())
    _FINGERPRINTS[tower] = h.hexdigest()  # the tower is frozen, so its fingerprint never changes
    return _FINGERPRINTS[tower]


def attach(backbone, encoder: NoTextEncoder) -> NoTextEncoder:
    """Make ``encoder`` the backbone's no-text branch (``backbone.no_text``), after checking it belongs there."""
    encoder.check_backbone(backbone)
    backbone.no_text = encoder.to(backbone.device).eval().requires_grad_(False)
    return backbone.no_text


def is_pocket(backbone) -> bool:
    """The shipped v1 pocket model (its weights id names their sha256)."""
    return str(getattr(backbone, "weights_id", "")).startswith(f"{POCKET_NAME}:")


def is_pocket2(backbone) -> bool:
    """The shipped pocket v2 model (a checkpoint loaded from elsewhere is ``file:...``, not this)."""
    return str(getattr(backbone, "weights_id", "")).startswith(f"{POCKET2_NAME}:")


def load_pocket_no_text(backbone, path: str | os.PathLike | None = None) -> NoTextEncoder:
    """The shipped CLIPN no tower of the pocket model ``backbone`` is (v1 or v2), checked against its sha256 and
    attached; ``path`` overrides which file."""
    if path is None:
        path = POCKET2_NO_TEXT if is_pocket2(backbone) else POCKET_NO_TEXT
    path = Path(path)
    if is_pocket2(backbone) and not path.is_file():
        raise WeightsNotFoundError(
            f"pocket v2's CLIPN no tower {path} is missing: it belongs to the exact pocket v2 weights in use "
            f"(trained on world v2, captions that never name an unseen concept). Train and export it with "
            f"`{TRAIN_POCKET2}`, or attach one you trained (clipos_lab.clipn.load_no_text(backbone, path))")
    verify_checksum(path, f"{'pocket v2' if is_pocket2(backbone) else 'pocket'} CLIPN no-text weights")
    return attach(backbone, NoTextEncoder.load(path, backbone))


def no_text_of(backbone) -> NoTextEncoder:
    """``backbone``'s no tower: the attached one, else the shipped one for a pocket model (v1 or v2), else a clear
    error."""
    encoder = getattr(backbone, "no_text", None)
    if encoder is not None:
        return encoder
    if is_pocket(backbone) or is_pocket2(backbone):
        return load_pocket_no_text(backbone)
    raise WeightsNotFoundError(
        f"backbone {backbone.name!r} has no CLIPN no-text encoder: stock CLIP weights have none. Load CLIPN's "
        "released checkpoint (clipos_lab.clipn.released.load_released(path, backbone)), attach one you trained "
        "(clipos_lab.clipn.attach(backbone, NoTextEncoder.load(path, backbone))), or use the pocket model")

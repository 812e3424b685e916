"""Loading CLIPN's released checkpoints (the layout of the public xmed-lab/CLIPN code) onto a backbone.

A released checkpoint is a ``torch.save`` file of a whole CLIPN model: either the state dict itself or a dict
with it under ``"state_dict"`` (the training script also stores ``epoch``, ``name`` and ``optimizer``), keys
possibly prefixed ``module.`` (distributed training). Besides the stock open_clip CLIP keys (``visual.*``,
``token_embedding.weight``, ``positional_embedding``, ``transformer.*``, ``ln_final.*``, ``text_projection``,
``logit_scale``) it holds the no branch:

===========================  =======================================
``token_embedding_no.weight``  (vocab, width)
``positional_embedding_no``    (context, width)
``transformer_no.*``           the text transformer's blocks
``ln_final_no.weight/bias``    (width,)
``text_projection_no``         (width, embed_dim)
``prompt_no``                  (16, context, width), added per position
===========================  =======================================

Parameter names learned from the public repository's ``src/open_clip/model.py`` and ``src/training/main.py``; no
code was copied. CLIPN froze the image and yes towers while training, so its yes tower is the stock one of the
backbone it was trained from (ViT-B-16 ``laion2b_s34b_b88k`` for the released weights): the loader checks that
the checkpoint's yes tower equals the backbone's and refuses otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import BackboneError, WeightsNotFoundError
from .encoder import NoTextEncoder, attach, yes_tower

YES_KEYS = ("token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight", "ln_final.bias")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a released checkpoint, ``module.`` prefixes stripped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"CLIPN checkpoint {path} does not exist: download a released CLIPN checkpoint "
                                   "(see the xmed-lab/CLIPN README) and pass its path")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors: name the file
        raise BackboneError(f"could not read CLIPN checkpoint {path} ({type(err).__name__}: {err})") from err
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise BackboneError(f"{path} holds no state dict (found {type(checkpoint).__name__})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()
            if isinstance(v, torch.Tensor)}


def checkyes_tower(state: dict[str, torch.Tensor], backbone, source: str, atol: float = 1e-3) -> None:
    """Refuse a checkpoint whose yes tower differs from the backbone's (it was trained against another model)."""
    tower = yes_tower(backbone)
    mine = {"token_embedding.weight": tower.token_embedding.weight, "positional_embedding":
            tower.positional_embedding, "text_projection": tower.text_projection,
            "ln_final.weight": tower.ln_final.weight, "ln_final.bias": tower.ln_final.bias}
    mine.update({f"transformer.{k}": v for k, v in tower.transformer.state_dict().items()})
    missing = [k for k in mine if k not in state]
    if missing:
        raise BackboneError(f"{source} lacks the yes text tower ({missing[:3]}...): not a CLIPN checkpoint of an "
                            "open_clip CLIP")
    for key, value in mine.items():
        theirs = state[key]
        if tuple(theirs.shape) != tuple(value.shape) or not torch.allclose(
                theirs.float().cpu(), value.detach().float().cpu(), atol=atol, rtol=1e-3):
            raise BackboneError(
                f"{source} was trained from another model than {backbone.name!r} ({backbone.weights_id}): its yes "
                f"tower differs at {key!r}. Load the backbone CLIPN was trained from (for the released weights "
                "ViT-B-16 with pretrained='laion2b_s34b_b88k') and try again")


def load_released(path: str | os.PathLike, backbone, attach_to_backbone: bool = True) -> NoTextEncoder:
    """A :class:`NoTextEncoder` with the no branch of a released CLIPN checkpoint, checked against ``backbone``."""
    state = read_state_dict(path)
    source = str(path)
    checkyes_tower(state, backbone, source)
    if "prompt_no" not in state:
        raise BackboneError(f"{source} has no 'prompt_no': it is a stock CLIP checkpoint without CLIPN's no branch")
    encoder = NoTextEncoder.from_backbone(backbone, n_prompts=int(state["prompt_no"].shape[0]))
    encoder.load_released_state_dict(state, source=source)
    encoder.meta = {"source": f"released:{Path(path).name}"}
    encoder = encoder.eval().requires_grad_(False)
    return attach(backbone, encoder) if attach_to_backbone else encoder


def load_no_text(backbone, path: str | os.PathLike) -> NoTextEncoder:
    """Attach the no tower in ``path``: a clipos_lab ``.safetensors`` file, or a released CLIPN ``.pt`` / ``.pth``
    checkpoint (:func:`load_released`)."""
    path = Path(path).expanduser()
    if path.suffix in (".pt", ".pth", ".bin"):
        return load_released(path, backbone)
    return attach(backbone, NoTextEncoder.load(path, backbone))

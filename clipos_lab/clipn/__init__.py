"""CLIPN ("CLIP saying no"): a no-text encoder beside a frozen CLIP, its losses, training and released weights.

encoder   the no tower (copy of the yes tower + 16 no-prompts), safetensors save/load, attach to a backbone
losses    ITBO and TSO, with exact or reference (diagonal) targets
scores    ATD and CTW
train     training on cached image features of pocket-world images (``python -m clipos_lab clipn train``)
worlds    the caption world a no tower trains on: v1's shapes or v2's drawings (no unseen-concept word)
released  loader for CLIPN's released checkpoint layout, and load_no_text (either kind of file)
"""

from .encoder import NoTextEncoder, attach, load_pocket_no_text, no_text_of, yes_tower_fingerprint
from .released import load_no_text, load_released
from .scores import atd, ctw, p_yes

__all__ = ["NoTextEncoder", "attach", "load_no_text", "load_pocket_no_text", "no_text_of", "yes_tower_fingerprint",
           "load_released", "atd", "ctw", "p_yes"]

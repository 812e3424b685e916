"""The two attention paths CLIP-OS reads from a ViT block besides its own output: each token attending only to
itself (the value path of GL-MCM's and LoCoOp's local features) and CLIP Surgery's value-value attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import BackboneError


def value_path(block, x: torch.Tensor) -> torch.Tensor:
    """One ViT block with every token attending only to itself: ``v = x + out_proj(W_v ln_1(x))``, then the MLP.

    With attention replaced by the identity, each head returns the token's own value, so no attention is
    computed and tokens are independent (the class token can be left out). This is the last-block path of
    GL-MCM's and LoCoOp's local features (the same as MaskCLIP's dense features).
    """
    attn = block.attn
    if not isinstance(attn, torch.nn.MultiheadAttention):
        raise BackboneError(f"unsupported attention module {type(attn).__name__} for the value path")
    c = x.shape[-1]
    bias = None if attn.in_proj_bias is None else attn.in_proj_bias[2 * c:]
    v = attn.out_proj(F.linear(block.ln_1(x), attn.in_proj_weight[2 * c:], bias))
    v = x + block.ls_1(v)
    return v + block.ls_2(block.mlp(block.ln_2(v)))


def block_with_value_value(block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One ViT block's normal output and its value-value attention output, from one q/k/v projection."""
    attn = block.attn
    if not isinstance(attn, torch.nn.MultiheadAttention):
        raise BackboneError(f"unsupported attention module {type(attn).__name__} for the value-value path")
    b, n, c = x.shape
    heads = attn.num_heads
    h = block.ln_1(x)
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = (t.reshape(b, n, heads, c // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    both = F.scaled_dot_product_attention(torch.cat([q, v]), torch.cat([k, v]), torch.cat([v, v]))
    both = attn.out_proj(both.transpose(1, 2).reshape(2 * b, n, c))
    out, vv_out = both[:b], both[b:]
    x = x + block.ls_1(out)
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, vv_out

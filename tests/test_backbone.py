import json

import pytest
import torch
import torch.nn.functional as F

from clipos_lab.backbone import Backbone, BackboneError, WeightsNotFoundError


def images(n=3, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_grid(tiny_backbone):
    feats = tiny_backbone.encode_images(images())
    assert feats.global_.shape == (3, 16)
    assert feats.patches.shape == (3, 16, 16)
    assert feats.surgery.shape == (3, 16, 16)
    assert feats.local.shape == (3, 16, 16)
    assert feats.grid == (4, 4) == tiny_backbone.grid


def test_global_matches_open_clip_forward(tiny_backbone):
    x = images()
    feats = tiny_backbone.encode_images(x)
    torch.testing.assert_close(feats.global_, tiny_backbone.model.encode_image(x), atol=1e-5, rtol=1e-5)


def test_patch_tokens_are_open_clips_tokens_projected(tiny_backbone):
    x = images()
    visual = tiny_backbone.visual
    visual.output_tokens = True
    try:
        pooled, tokens = visual(x)
    finally:
        visual.output_tokens = False
    torch.testing.assert_close(tiny_backbone.encode_images(x).patches, tokens @ visual.proj, atol=1e-5, rtol=1e-5)


def _reference_surgery(backbone, x, n_blocks):
    """The value-value path written out naively: separate q/k/v projections, explicit softmax."""
    visual = backbone.visual
    h = visual._embeds(x)
    blocks = visual.transformer.resblocks
    vv = None
    for i, blk in enumerate(blocks):
        if i == len(blocks) - n_blocks:
            vv = h.clone()
        if vv is not None:
            attn = blk.attn
            y = blk.ln_1(h)
            w_v = attn.in_proj_weight[2 * y.shape[-1]:]
            b_v = attn.in_proj_bias[2 * y.shape[-1]:]
            v = y @ w_v.T + b_v
            heads = attn.num_heads
            b, n, c = v.shape
            vh = v.reshape(b, n, heads, c // heads).transpose(1, 2)
            a = torch.softmax(vh @ vh.transpose(-1, -2) / (c // heads) ** 0.5, dim=-1)
            out = (a @ vh).transpose(1, 2).reshape(b, n, c)
            vv = vv + attn.out_proj(out)
        h = blk(h)
    return visual.ln_post(vv[:, 1:]) @ visual.proj


def test_value_value_path_matches_naive_reference(tiny_backbone):
    x = images()
    ref = _reference_surgery(tiny_backbone, x, tiny_backbone.surgery_blocks)
    torch.testing.assert_close(tiny_backbone.encode_images(x).surgery, ref, atol=1e-5, rtol=1e-4)
    assert tiny_backbone.encode_images(x, surgery=False).surgery is None


def _reference_local(backbone, x):
    """GL-MCM / LoCoOp's local features written out through open_clip's own attention module, with a mask
    that lets every token attend only to itself (so each head returns the token's own value)."""
    visual = backbone.visual
    h = visual._embeds(x)
    blocks = visual.transformer.resblocks
    for blk in blocks[:-1]:
        h = blk(h)
    last = blocks[-1]
    n = h.shape[1]
    only_self = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
    y = last.ln_1(h)
    v = h + last.attn(y, y, y, attn_mask=only_self, need_weights=False)[0]
    v = v + last.mlp(last.ln_2(v))
    return visual.ln_post(v[:, 1:]) @ visual.proj


@pytest.mark.parametrize("surgery_blocks", [0, 1, 2])
def test_local_features_follow_the_value_path_of_the_last_block(tiny_backbone, surgery_blocks):
    x = images()
    old = tiny_backbone.surgery_blocks
    tiny_backbone.surgery_blocks = surgery_blocks  # the last block may or may not be unrolled for surgery
    try:
        feats = tiny_backbone.encode_images(x)
    finally:
        tiny_backbone.surgery_blocks = old
    ref = _reference_local(tiny_backbone, x)
    torch.testing.assert_close(feats.local, ref, atol=1e-5, rtol=1e-4)
    # they are not the ordinary final-layer patch tokens
    assert (F.normalize(feats.local, dim=-1) - F.normalize(feats.patches, dim=-1)).abs().max() > 1e-2
    assert tiny_backbone.encode_images(x, local=False).local is None


def test_text_encoding_and_prompt_path(tiny_backbone):
    texts = ["a photo of a star.", "a red circle on a striped background."]
    tokens = tiny_backbone.tokenize(texts)
    expected = F.normalize(tiny_backbone.model.encode_text(tokens), dim=-1)
    torch.testing.assert_close(tiny_backbone.encode_text(texts), expected, atol=1e-5, rtol=1e-5)
    via_embeddings = tiny_backbone.encode_text_embeddings(tiny_backbone.token_embedding(tokens), tokens)
    torch.testing.assert_close(F.normalize(via_embeddings, dim=-1), expected, atol=1e-5, rtol=1e-5)


def test_loads_weights_from_local_checkpoint(tiny_files, tiny_backbone):
    from safetensors.torch import load_file

    saved = load_file(str(tiny_files[1]))
    state = tiny_backbone.model.state_dict()
    for name in ("visual.proj", "token_embedding.weight", "visual.conv1.weight"):
        torch.testing.assert_close(state[name], saved[name])
    assert tiny_backbone.weights_id.startswith("file:")


def test_missing_checkpoint_is_a_clear_error(tiny_files, tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsNotFoundError, match=r"checkpoint .*nope\.safetensors.* does not exist"):
        Backbone.load(config=tiny_files[0], checkpoint=missing)


def test_no_weights_source_is_a_clear_error(tiny_files):
    with pytest.raises(WeightsNotFoundError, match="no weights given"):
        Backbone.load(config=tiny_files[0])


def test_missing_pretrained_weights_offline_names_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"ViT-B-16.*openai.*hub cache.*checkpoint="):
        Backbone.load("ViT-B-16", pretrained="openai", cache_dir=str(tmp_path))


def test_backbone_without_patch_tokens_is_refused(tmp_path):
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    path = tmp_path / "tiny-resnet.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(BackboneError, match="without patch tokens"):
        Backbone.load(config=path, random_weights=True)


def test_unknown_model_and_bad_config(tmp_path):
    with pytest.raises(BackboneError, match="unknown model 'ViT-Nope'"):
        Backbone.load("ViT-Nope", random_weights=True)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BackboneError, match="not valid JSON"):
        Backbone.load(config=bad, random_weights=True)

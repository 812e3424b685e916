"""``zero_shot_blend``: prompt methods score with their learned class prompts interpolated towards the
hand-written ones (docs/robustness.md); training is unchanged and the unknown class keeps its learned prompt."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.features import FeatureBank
from clipos_lab.methods import MCM, build_method
from clipos_lab.methods.prompt import PromptMethod
from clipos_lab.methods.text import DEFAULT_TEMPLATES, class_embeddings

CLASSES = ["circle", "star", "heart"]
PROMPT = PromptConfig(n_ctx=4, epochs=3, lr=0.5, progress=False)
OLD = {"zero_shot_blend": 0.0, "blend_in_training": False}  # CLIP-OS's class prompts before issue 21: learned


def _bank(n=9, seed=5):
    g = torch.Generator().manual_seed(seed)
    return FeatureBank(torch.randn(n, 16, generator=g), torch.randn(n, 16, 16, generator=g).half(),
                       torch.randn(n, 16, 16, generator=g).half(), torch.arange(n) % 3,
                       [f"img{i}" for i in range(n)], CLASSES, (4, 4),
                       extra={"local": torch.randn(n, 16, 16, generator=g).half()})


def test_full_blend_scores_like_zero_shot_mcm(tiny_backbone):
    learned = PromptMethod(PROMPT, zero_shot_blend=1.0, seed=1).fit(tiny_backbone, _bank())
    zero_shot = MCM().fit(tiny_backbone, classnames=CLASSES)
    test = _bank(seed=6)
    np.testing.assert_allclose(learned.score(test, ["MCM"])["MCM"], zero_shot.score(test, ["MCM"])["MCM"],
                               atol=1e-6)


def test_blend_interpolates_id_prompts_and_keeps_the_unknown_one(tiny_backbone):
    plain = build_method("CLIP-OS", seed=1, prompt=PROMPT, **OLD).fit(tiny_backbone, _bank())
    half = build_method("CLIP-OS", seed=1, prompt=PROMPT, **{**OLD, "zero_shot_blend": 0.5}).fit(tiny_backbone,
                                                                                               _bank())
    zs = F.normalize(class_embeddings(tiny_backbone, CLASSES, DEFAULT_TEMPLATES), dim=-1)
    torch.testing.assert_close(half.learner_(), plain.learner_())  # training is the same
    expected = F.normalize(plain.text_[:3] + zs, dim=-1)  # equal weights: the normalised sum
    torch.testing.assert_close(half.text_[:3], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(half.text_[3], plain.text_[3])
    assert not torch.allclose(half.text_[:3], plain.text_[:3])


def test_blend_survives_save_and_load(tiny_backbone, tmp_path):
    fitted = build_method("CLIP-OS", seed=2, prompt=PROMPT, zero_shot_blend=0.3).fit(tiny_backbone, _bank())
    fitted.save(tmp_path / "p.safetensors")
    loaded = PromptMethod.load(tmp_path / "p.safetensors", tiny_backbone)
    assert loaded.zero_shot_blend == 0.3
    torch.testing.assert_close(loaded.text_, fitted.text_)


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "half"])
def test_blend_outside_the_unit_interval_is_a_clear_error(tiny_backbone, bad):
    with pytest.raises(ValueError, match="zero_shot_blend"):
        build_method("CLIP-OS", prompt=PROMPT, zero_shot_blend=bad).fit(tiny_backbone, _bank())


def test_unknown_score_reads_the_learned_classifier_not_the_blend(tiny_backbone):
    """1 - p(unknown) is the (K + 1)-way classifier the unknown class was trained in: blending moves MCM only."""
    test = _bank(seed=7)
    plain = build_method("CLIP-OS", seed=1, prompt=PROMPT, **OLD).fit(tiny_backbone, _bank())
    half = build_method("CLIP-OS", seed=1, prompt=PROMPT, **{**OLD, "zero_shot_blend": 0.5}).fit(tiny_backbone,
                                                                                               _bank())
    a, b = plain.score(test), half.score(test)
    np.testing.assert_array_equal(a["1-p(unknown)"], b["1-p(unknown)"])
    assert not np.allclose(a["MCM"], b["MCM"])
    assert plain.score_signature() != half.score_signature()  # the runner's score memo must tell them apart


def test_blend_in_training_trains_against_the_blended_classifier(tiny_backbone):
    """With blend_in_training the loss sees the blended ID prompts (so training differs), and 1 - p(unknown) then
    reads the same blended classifier that the unknown class was trained against."""
    after = build_method("CLIP-OS", seed=1, prompt=PROMPT, zero_shot_blend=0.5,
                         blend_in_training=False).fit(tiny_backbone, _bank())
    during = build_method("CLIP-OS", seed=1, prompt=PROMPT, zero_shot_blend=0.5,
                          blend_in_training=True).fit(tiny_backbone, _bank())
    assert not torch.allclose(during.learner_(), after.learner_())
    torch.testing.assert_close(during.unknown_text_, during.text_)
    zs = F.normalize(class_embeddings(tiny_backbone, CLASSES, DEFAULT_TEMPLATES), dim=-1)
    torch.testing.assert_close(during.text_[:3], F.normalize(during.learner_()[:3] + zs, dim=-1), rtol=1e-5,
                               atol=1e-6)
    test = _bank(seed=8)
    assert not np.allclose(during.score(test)["1-p(unknown)"], after.score(test)["1-p(unknown)"])


def test_clipos_defaults_keep_the_hand_written_class_prompts(tiny_backbone):
    """Issue 21's defaults: the ID columns are zero-shot MCM's prompts, only the unknown prompt is learned."""
    fitted = build_method("CLIP-OS", seed=1, prompt=PROMPT).fit(tiny_backbone, _bank())
    zs = F.normalize(class_embeddings(tiny_backbone, CLASSES, DEFAULT_TEMPLATES), dim=-1)
    torch.testing.assert_close(fitted.text_[:3], zs)
    assert fitted.zero_shot_blend == 1.0 and fitted.blend_in_training and fitted.beta == 0.02
    assert fitted.unknown_text_ is fitted.text_


def test_prompts_saved_before_the_blend_options_load_as_they_scored(tiny_backbone, tmp_path):
    """A file whose recorded options predate zero_shot_blend scored with its learned prompts: loading it must not
    pick up CLIP-OS's new default (hand-written prompts)."""
    from safetensors import safe_open

    from clipos_lab.files import save_safetensors

    old = build_method("CLIP-OS", seed=1, prompt=PROMPT, **OLD).fit(tiny_backbone, _bank())
    old.save(tmp_path / "new.safetensors")
    with safe_open(str(tmp_path / "new.safetensors"), "pt") as fh:
        tensors, meta = {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()
    extra = json.loads(meta["extra"])
    for key in ("zero_shot_blend", "blend_in_training"):
        del extra["options"][key]
    save_safetensors(tensors, tmp_path / "old.safetensors", metadata={**meta, "extra": json.dumps(extra)})
    loaded = PromptMethod.load(tmp_path / "old.safetensors", tiny_backbone)
    assert loaded.zero_shot_blend == 0.0 and not loaded.blend_in_training
    torch.testing.assert_close(loaded.text_, old.text_)

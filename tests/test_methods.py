import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipos_lab.features import FeatureBank
from clipos_lab.methods import GLMCM, MCM, NotFittedError, build_method


class FakeTextBackbone:
    """encode_text maps 'a photo of a {c}.' to a fixed unit vector per class: answers are known by hand."""

    def __init__(self, vectors: dict[str, torch.Tensor]):
        self.vectors = vectors
        self.calls = []

    def encode_text(self, texts, normalize=True):
        self.calls.append(list(texts))
        out = torch.stack([self.vectors[t] for t in texts])
        return F.normalize(out, dim=-1) if normalize else out


def bank_of(global_, patches=None, labels=None, classnames=("a", "b"), local=None):
    n = len(global_)
    return FeatureBank(global_, patches, None, torch.zeros(n, dtype=torch.long) if labels is None else labels,
                       [str(i) for i in range(n)], list(classnames), (1, 1),
                       extra={} if local is None else {"local": local})


E = torch.eye(3)
BACKBONE = FakeTextBackbone({"a photo of a a.": E[0], "a photo of a b.": E[1]})


def test_mcm_matches_hand_computed_softmax():
    # image 0 equals class a: cos = (1, 0) -> MCM = e / (e + 1); image 1 is orthogonal to both: MCM = 1/2
    bank = bank_of(torch.stack([E[0], E[2]]))
    scores = MCM().fit(BACKBONE, classnames=["a", "b"]).score(bank)
    np.testing.assert_allclose(scores["MCM"], [math.e / (math.e + 1), 0.5], rtol=1e-6)
    assert MCM().fit(BACKBONE, classnames=["a", "b"]).predict(bank_of(torch.stack([E[1], E[0]]))).tolist() == [1, 0]


def test_mcm_temperature_sharpens():
    bank = bank_of(torch.stack([E[0]]))
    cold = MCM(temperature=0.1).fit(BACKBONE, classnames=["a", "b"]).score(bank)["MCM"][0]
    np.testing.assert_allclose(cold, 1 / (1 + math.exp(-10)), rtol=1e-6)


def test_glmcm_adds_lambda_times_best_local_mcm():
    # global feature orthogonal (MCM 1/2); one of two local features equals class b -> local MCM e/(e+1)
    local = torch.stack([torch.stack([E[2], E[1]])])
    patches = torch.stack([torch.stack([E[2], E[2]])])  # final-layer tokens: orthogonal -> local MCM 1/2
    bank = bank_of(torch.stack([E[2]]), patches=patches, local=local)
    scores = GLMCM(lam=0.5).fit(BACKBONE, classnames=["a", "b"]).score(bank)
    np.testing.assert_allclose(scores["GL-MCM"], [0.5 + 0.5 * math.e / (math.e + 1)], rtol=1e-6)
    np.testing.assert_allclose(scores["MCM"], [0.5], rtol=1e-6)
    # the ordinary patch tokens stay selectable
    on_patches = GLMCM(lam=0.5, local_tokens="patches").fit(BACKBONE, classnames=["a", "b"]).score(bank)
    np.testing.assert_allclose(on_patches["GL-MCM"], [0.5 + 0.5 * 0.5], rtol=1e-6)
    # a bank without the named tokens reports no GL-MCM; a wrong name is refused
    assert "GL-MCM" not in GLMCM().fit(BACKBONE, classnames=["a", "b"]).score(bank_of(torch.stack([E[2]]), patches))
    with pytest.raises(ValueError, match="local_tokens='value'"):
        GLMCM(local_tokens="value").fit(BACKBONE, classnames=["a", "b"])


def test_prompt_ensemble_averages_templates():
    vecs = {"a photo of a a.": E[0], "a drawing of a a.": E[2], "a photo of a b.": E[1], "a drawing of a b.": E[1]}
    method = MCM(templates=("a photo of a {}.", "a drawing of a {}.")).fit(FakeTextBackbone(vecs),
                                                                           classnames=["a", "b"])
    torch.testing.assert_close(method.text_[0], F.normalize(E[0] + E[2], dim=0))


def test_unfitted_and_bad_options():
    with pytest.raises(NotFittedError, match="not fitted"):
        MCM().score(bank_of(torch.stack([E[0]])))
    with pytest.raises(ValueError, match="template"):
        MCM(templates=("no placeholder",)).fit(None, classnames=["a"])
    with pytest.raises(ValueError, match="unknown method 'Nope'"):
        build_method("Nope")


def test_registry_presets_are_parameters_not_renamed_instances():
    ablation = build_method("CLIP-OS w/o PUC", seed=3)
    assert type(ablation).__name__ == "CLIPOS" and ablation.puc_k == 1 and ablation.seed == 3
    assert ablation.beta == build_method("CLIP-OS").beta and build_method("CLIP-OS").puc_k == 3  # only its switch
    assert build_method("CLIP-OS w/o PUC", puc_k=5).puc_k == 5  # options win over the preset
    assert build_method("GL-MCM", lam=0.25).gl_lambda == 0.25


def test_text_embeddings_are_cached_by_the_backbone(tiny_backbone):
    before = len(tiny_backbone._text_cache)
    MCM().fit(tiny_backbone, classnames=["zebra", "yak"])
    after_first = len(tiny_backbone._text_cache)
    MCM().fit(tiny_backbone, classnames=["zebra", "yak"])
    assert after_first == before + 2 and len(tiny_backbone._text_cache) == after_first


def test_public_api_names_resolve_lazily_without_shadowing_subpackages():
    import clipos_lab

    assert clipos_lab.build_method is build_method
    assert clipos_lab.run_benchmark.__module__ == "clipos_lab.evaluation.runner"
    for name in clipos_lab.__all__:
        assert getattr(clipos_lab, name) is not None
    import clipos_lab.methods as package

    assert clipos_lab.methods is package  # the subpackage, not a function of the same name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        clipos_lab.nope  # noqa: B018

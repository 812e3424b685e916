import math

import pytest
import torch
import torch.nn.functional as F

from clipos_lab.clipos.synthesis import Outliers
from clipos_lab.features import FeatureBank
from clipos_lab.methods.cosine import CosineMethod
from clipos_lab.viz import diagnosis as D

E = torch.eye(3)


def bank(features, labels):
    n = len(features)
    return FeatureBank(torch.stack(features), None, None, torch.tensor(labels), [str(i) for i in range(n)],
                       ["a", "b"], (1, 1))


def fitted_with_unknown():
    """Two ID classes (e0, e1) and an unknown class at e2, scale 10: answers are known by hand."""
    m = CosineMethod()
    m.text_, m.classnames_, m.scale_ = E.clone(), ["a", "b"], 10.0
    return m


def test_unknown_absorption_counts_id_images_classified_unknown():
    ids = bank([E[0], E[0], E[2]], [0, 0, 1])  # the class-b image sits on the unknown prompt
    out = D.unknown_absorption(fitted_with_unknown(), ids, {"ood": bank([E[2]], [0])})
    assert out["id_to_unknown"] == pytest.approx(1 / 3)
    assert out["worst_class_to_unknown"] == pytest.approx(1.0)
    assert out["acc"] == pytest.approx(2 / 3)  # over the ID classes only, its ID argmax is a tie -> class a
    p_on_prompt = math.exp(10) / (math.exp(10) + 2)
    assert out["p_unknown_ood"] == pytest.approx(p_on_prompt, rel=1e-5)
    assert out["p_unknown_id"] == pytest.approx((2 / (math.exp(10) + 2) + p_on_prompt) / 3, rel=1e-5)


def test_outlier_geometry_against_the_shots():
    shots = bank([E[0], E[1]], [0, 1])
    mid = F.normalize(E[0] + E[1], dim=0)
    outliers = Outliers(torch.stack([mid, E[0]]), torch.tensor([0, 0]), torch.tensor([1, 1]),
                        torch.tensor([0.5, 0.95]), torch.tensor([0, 0]), torch.tensor([1, 1]))
    out = D.outlier_geometry(outliers, shots, bank([E[0], mid], [0, 1]))
    assert out["outlier_to_shot"] == pytest.approx((1 / math.sqrt(2) + 1) / 2, rel=1e-5)
    assert out["outlier_to_shot_max"] == pytest.approx(1.0)
    assert out["shot_to_other_class"] == pytest.approx(0.0, abs=1e-6)
    assert out["lam_extreme"] == pytest.approx(0.5)
    assert out["id_nearest_is_outlier"] == pytest.approx(0.5)  # the image between the classes, not the one on a shot


def test_training_health_flags_non_finite_losses():
    history = [{"loss": 2.0, "loss_id": 1.5, "loss_outlier": 5.0}, {"loss": 1.0, "loss_id": 0.5, "loss_outlier": 4.0}]
    out = D.training_health(history)
    assert out["finite"] and out["loss_id_first"] == 1.5 and out["loss_id_last"] == 0.5 and out["steps"] == 2
    assert not D.training_health(history + [{"loss": float("nan"), "loss_id": float("nan")}])["finite"]
    with pytest.raises(ValueError, match="empty history"):
        D.training_health([])

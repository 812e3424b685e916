"""Pocket v2's defect world: drawn products with visible defects and exact masks, as anomaly categories."""

import numpy as np
import pytest

from clipos_lab.anomaly.data import AnomalySpec, shipped_spec
from clipos_lab.anomaly.drawn import drawn_category, product_drawing
from clipos_lab.data import DataError
from clipos_lab.pocket.pack import DrawingsPack
from clipos_lab.pocket.products2 import MIN_DEFECT_CHANGE, render_drawn_product
from clipos_lab.pocket.world2 import STATES


@pytest.fixture(scope="module")
def pack():
    return DrawingsPack()


def test_products_are_pure_functions_and_defects_show_where_their_mask_says(pack):
    record = product_drawing(pack, "hat")
    good, none = render_drawn_product(pack, record, 3, 7)
    again, _ = render_drawn_product(pack, record, 3, 7)
    assert np.array_equal(good, again) and not none.any()
    for state in STATES:
        image, mask = render_drawn_product(pack, record, 3, 7, state)
        assert mask.any() and mask.dtype == bool
        # the same pose as the good picture (same stream), changed visibly inside the mask only
        change = np.abs(image.astype(float) - good.astype(float)).mean(-1)
        assert change[mask].mean() >= MIN_DEFECT_CHANGE - 1
        assert change[~mask].max() <= 1


def test_normal_pictures_vary_a_little_and_train_and_test_never_share_a_picture(pack):
    category = drawn_category("balloon", n_train=4, n_good=4, n_per_defect=1, seed=2)
    train = [np.asarray(category.train[i][0]) for i in range(4)]
    test = [np.asarray(category.test[i][0]) for i in range(4)]
    assert all(not np.array_equal(a, b) for a in train for b in test)
    assert np.abs(train[0].astype(float) - train[1].astype(float)).mean() < 25  # same part, small pose changes
    assert category.test.classnames == ["good", *STATES] and category.test.has_masks
    assert category.train.record is category.test.record and category.train.record["split"] == "eval"


def test_shipped_defect_world_specs_build_and_keep_validation_apart():
    test = AnomalySpec.from_yaml(shipped_spec("drawings-anomaly")).categories()
    val = AnomalySpec.from_yaml(shipped_spec("drawings-anomaly-validation")).categories()
    assert [c.name for c in test] == [c.name for c in val] and len(test) == 8
    for a, b in zip(test, val):
        assert a.test.record["split"] == "eval" and b.test.record["split"] == "val"
        assert len(a.test) == 40 + 4 * 15 and len(a.train) == 16


@pytest.mark.parametrize("data, words", [
    ({"type": "drawings", "products": ["zebra"]}, "no drawing of class 'zebra'"),
    ({"type": "drawings", "products": ["hat"], "defects": ["bite"]}, "bad defects ['bite']"),
    ({"type": "drawings"}, "`products` must be a list of class nouns"),
    ({"type": "drawings", "products": ["hat"], "colour": "red"}, "unknown keys ['colour']"),
])
def test_bad_defect_world_specs_say_what_to_do(data, words):
    with pytest.raises(DataError) as err:
        spec = AnomalySpec("bad", data)
        spec._check_keys()
        spec.categories()
    assert words in str(err.value)

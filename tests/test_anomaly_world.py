"""The pocket defect world: every defect type is visible on every product colour."""

from __future__ import annotations

import numpy as np
import pytest

from clipos_lab.pocket import products as P


@pytest.mark.parametrize("shape", list(P.PRODUCT_STYLES))
def test_every_defect_changes_its_masked_pixels_visibly(shape):
    """The rule: a defect's paint is MIN_PAINT_CONTRAST levels from its product; so every masked pixel changes by
    at least half of it (in the channel that changes most), the median masked pixel by all of it. Before the rule
    a scratch on the white product changed its median pixel by 3 levels."""
    for defect in P.DEFECTS:
        for index in range(6):
            normal, empty, _ = P.render_product(11, index, shape)
            broken, mask, product = P.render_product(11, index, shape, defect)
            assert not empty.any() and mask.sum() == product.defect_area > 0
            change = np.abs(broken.astype(int) - normal.astype(int)).max(-1)
            assert change[mask].min() >= P.MIN_PAINT_CONTRAST / 2, (shape, defect, index)
            assert np.median(change[mask]) >= P.MIN_PAINT_CONTRAST, (shape, defect, index)
            assert not change[~mask].any()  # and nothing outside the mask


def test_a_style_with_an_invisible_defect_is_refused():
    colour = np.array([250.0, 250, 250])
    assert np.abs(P.defect_paint("scratch", colour, colour * 0.5, colour * 0.2) - colour).max() >= 100
    with pytest.raises(ValueError, match="stain paint .* within 100 grey levels"):
        P.defect_paint("stain", colour, colour * 0.5, colour - 20)

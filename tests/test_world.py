import numpy as np
import pytest
import yaml

from clipos_lab.data import default_benchmark_path
from clipos_lab.pocket import world as W


def test_same_seed_same_image_and_scene():
    a, sa = W.World(64).render(3, 17)
    b, sb = W.World(64).render(3, 17)
    assert np.array_equal(a, b) and sa == sb
    c, _ = W.World(64).render(4, 17)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("shape", W.SHAPES)
def test_every_shape_renders_inside_its_box(shape):
    img, scene, cover = W.World(64).render(0, 1, shape=shape, return_mask=True)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    (obj,) = scene.objects
    assert obj.shape == shape and scene.shape == shape
    x0, y0, x1, y1 = obj.box
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    inside = cover[y0:y1, x0:x1].sum()
    assert cover.sum() > 30 and inside / cover.sum() > 0.95  # the box holds the drawn object
    # the object's colour is really on the image where the object is
    ys, xs = np.nonzero(cover > 0.99)
    assert np.abs(img[ys, xs].astype(int) - np.array(W.COLOURS[obj.colour])).mean() < 3


def test_background_and_clutter_scenes():
    _, bg, cover = W.World(64).render(0, 2, kind="background", return_mask=True)
    assert bg.objects == () and bg.shape is None and cover.sum() == 0
    _, clutter = W.World(64).render(0, 2, kind="clutter")
    assert 3 <= len(clutter.objects) <= 5


def test_captions_state_only_what_was_drawn():
    rng = np.random.default_rng(0)
    world = W.World(64)
    for i in range(200):
        kind = ("object", "background", "clutter")[i % 3]
        _, scene = world.render(1, i, kind=kind)
        text, constraints = W.caption(scene, rng)
        assert W.matches(constraints, scene)
        attrs = scene.attributes()
        if "shape" in constraints:
            assert f" {attrs['shape']}" in text
        if "colour" in constraints:
            assert attrs["colour"] in text
        assert W.BACKGROUNDS[scene.background] in text or "background" not in constraints


def test_matches_is_multi_positive():
    _, star = W.World(64).render(0, 0, shape="star")
    assert W.matches({"shape": "star"}, star)
    assert not W.matches({"shape": "circle"}, star)
    assert W.matches({"scene": "object", "colour": star.objects[0].colour}, star)


def test_default_benchmark_splits_are_disjoint():
    spec = yaml.safe_load(default_benchmark_path().read_text())
    id_shapes = set(spec["id"]["shapes"])
    near = set(spec["ood"]["near-ood"]["shapes"])
    assert id_shapes and near and not id_shapes & near
    assert not id_shapes & set(spec["ood"]["clutter"]["shapes"])
    assert spec["ood"]["textures"]["kind"] == "background"
    assert id_shapes | near == set(W.SHAPES)


def test_bad_world_arguments():
    with pytest.raises(ValueError, match="unknown shapes"):
        W.World(64, shapes=["blob"])
    with pytest.raises(ValueError, match="too small"):
        W.World(8)
    with pytest.raises(ValueError, match="unknown scene kind"):
        W.World(64).render(0, 0, kind="party")


# digests of sample pictures per WORLD_VERSION: a drawn pixel that changes without a version bump fails here
PICTURE_DIGESTS = {"3": "84e975f4b7fe38a7e942160668018041f5369206392c38ebd6d4227142d606c2"}


def picture_digest() -> str:
    import hashlib

    from clipos_lab.pocket.products import PRODUCT_STYLES, render_product
    from clipos_lab.pocket.world import World

    digest = hashlib.sha256()
    world = World()
    for index in range(4):
        for kind in ("object", "background"):
            digest.update(np.asarray(world.image(7, index, kind=kind)).tobytes())
    for shape in list(PRODUCT_STYLES)[:3]:
        for defect in (None, "scratch", "stain"):
            image, mask, _ = render_product(11, 2, shape, defect)
            digest.update(np.ascontiguousarray(image).tobytes() + np.ascontiguousarray(mask).tobytes())
    return digest.hexdigest()


def test_the_world_version_changes_with_its_pictures():
    from clipos_lab.data.datasets import world_version
    from clipos_lab.pocket.world import WORLD_VERSION

    assert world_version() == WORLD_VERSION
    assert PICTURE_DIGESTS.get(WORLD_VERSION) == picture_digest(), (
        "the pocket world's pictures changed: bump WORLD_VERSION in clipos_lab/pocket/world.py and record the "
        "new digest here (cached features of the old pictures must not be reused)")

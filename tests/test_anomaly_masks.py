"""Masks read like their images (EXIF, any defect value, torchvision's resize), and folders that would go wrong:
a test folder of good images only, a corrupt test image, bad JSON in ``anomaly --options``."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from clipos_lab.anomaly.data import AnomalySpec, mvtec_category
from clipos_lab.anomaly.masks import EmptyMaskWarning, fit_mask, read_mask
from clipos_lab.data.errors import DataError


def _save(path, array_or_image, exif_orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    if exif_orientation is None:
        img.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(path, exif=exif)
    return path


def _tree(root, *, test_types=("crack",), mask_value=255, size=(16, 16)):
    """An MVTec-style category ``widget``: 3 good training images, 2 good test images, 2 per defect type."""
    cat = root / "widget"
    rng = np.random.default_rng(0)
    picture = lambda: rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)  # noqa: E731
    for i in range(3):
        _save(cat / "train" / "good" / f"{i:03d}.png", picture())
    for i in range(2):
        _save(cat / "test" / "good" / f"{i:03d}.png", picture())
    for t in test_types:
        for i in range(2):
            _save(cat / "test" / t / f"{i:03d}.png", picture())
            m = np.zeros((size[1], size[0]), dtype=np.uint8)
            m[4:8, 4:8] = mask_value
            _save(cat / "ground_truth" / t / f"{i:03d}_mask.png", m)
    return cat


def test_masks_follow_the_exif_orientation_of_their_image(tmp_path):
    cat = _tree(tmp_path)
    stored = np.zeros((8, 16, 3), dtype=np.uint8)  # stored 16 wide x 8 tall, shown upright as 8 x 16 (rotate 90)
    _save(cat / "test" / "crack" / "000.png", stored, exif_orientation=6)
    upright = np.zeros((16, 8), dtype=np.uint8)
    upright[0:3, :] = 255  # drawn on the upright view: the top rows
    _save(cat / "ground_truth" / "crack" / "000_mask.png", upright)
    test = mvtec_category(tmp_path, "widget").test
    i = [s.id for s in test.samples].index("crack/000.png")
    assert test.load(i).size == (8, 16)  # the image is used upright
    mask = test.mask(i)
    assert mask.shape == (16, 8) and mask[0:3].all() and not mask[3:].any()
    _save(cat / "ground_truth" / "crack" / "000_mask.png", np.full((8, 16), 255, dtype=np.uint8))  # stored view
    with pytest.raises(DataError, match=r"000_mask.png is 16x8 but its image .* is 8x16 as shown .*EXIF"):
        mvtec_category(tmp_path, "widget").test.mask(i)
    # a mask that carries its own orientation tag is turned upright too
    _save(cat / "ground_truth" / "crack" / "000_mask.png", np.rot90(upright, 1).copy(), exif_orientation=6)
    assert np.array_equal(mvtec_category(tmp_path, "widget").test.mask(i), upright > 0)


@pytest.mark.parametrize("value", [1, 100, 255])
def test_masks_with_any_defect_value_load(tmp_path, value):
    _tree(tmp_path, mask_value=value)
    test = mvtec_category(tmp_path, "widget").test
    masks = test.masks(16)
    assert masks.sum() == 2 * 16 and masks[2, 4:8, 4:8].all()


def test_colour_and_empty_masks(tmp_path):
    red = np.zeros((16, 16, 3), dtype=np.uint8)
    red[4:8, 4:8] = (255, 0, 0)  # reads as grey 76 < 127 when converted to L: an empty mask before
    path = _save(tmp_path / "m.png", red)
    assert read_mask(path).sum() == 16
    empty = _save(tmp_path / "empty.png", np.zeros((16, 16), dtype=np.uint8))
    with pytest.warns(EmptyMaskWarning, match="empty.png marks no defect pixel"):
        assert not read_mask(empty, "img.png").any()


@pytest.mark.parametrize("shape", [(37, 101), (101, 37), (45, 64), (64, 64), (30, 31)])
def test_masks_are_resized_exactly_as_torchvision_resizes_images(shape):
    from torchvision import transforms as T

    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) > 0.5
    reference = T.Compose([T.Resize(16, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(16)])
    want = np.asarray(reference(Image.fromarray(mask.astype(np.uint8) * 255))) > 127
    assert np.array_equal(fit_mask(mask, 16), want)


def test_a_test_folder_of_good_images_only_is_an_error_not_a_silent_gap(tmp_path):
    _tree(tmp_path, test_types=())
    with pytest.raises(DataError, match=r"widget/test holds no defective images"):
        mvtec_category(tmp_path, "widget")
    spec = AnomalySpec("w", {"type": "world", "products": ["circle"], "n_per_defect": 0})
    with pytest.raises(DataError, match="no defective image"):
        spec.categories()


def test_a_corrupt_test_image_is_a_counted_skip(tmp_path, monkeypatch, pocket_backbone):
    from clipos_lab.anomaly import run_anomaly
    from clipos_lab.anomaly.runner import SkippedImageWarning

    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    cat = _tree(tmp_path / "data", test_types=("crack", "dent"))
    (cat / "test" / "dent" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (cat / "train" / "good" / "002.png").write_bytes(b"broken")
    spec = tmp_path / "mine.yaml"
    spec.write_text(yaml.safe_dump({"name": "mine", "data": {"type": "mvtec", "root": "data"}}))
    with pytest.warns(SkippedImageWarning, match="widget: 2 unreadable images skipped"):
        result = run_anomaly(spec, pocket_backbone, methods=["patch-memory", "mutual"], shots=[0, 2], seeds=[1],
                             progress=False, out_dir=tmp_path / "out")
    assert sorted((s["split"], s["id"]) for s in result.skipped) == [("test", "dent/001.png"),
                                                                     ("train", "good/002.png")]
    assert len(result.categories["widget"].test) == 5
    assert {r["defect"] for r in result.rows} == {"all", "crack", "dent"}
    import json
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n_skipped"] == 2


def test_bad_options_json_names_the_option(tmp_path, capsys):
    from clipos_lab.cli import main

    assert main(["anomaly", "world-anomaly", "--options", "{mutual: 1"]) != 0
    err = capsys.readouterr().err
    assert "--options is not valid JSON" in err and "Traceback" not in err
    assert main(["anomaly", "world-anomaly", "--options", '{"mutual": 3}']) != 0
    assert "--options must be a JSON object" in capsys.readouterr().err

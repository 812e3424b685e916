"""Tests for clipos_lab.data: image decoding, datasets, few-shot manifests and benchmark specs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from clipos_lab import data as D
from clipos_lab.data import (
    BenchmarkSpec,
    DataError,
    FolderDataset,
    ImageLoadError,
    TorchvisionDataset,
    WorldDataset,
)


def _noise(size=(16, 12), seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def _make_folder(root, counts, size=(8, 8)):
    """An ImageFolder with ``counts[class]`` noise PNGs per class."""
    for c, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            _noise(size, seed=100 * c + j).save(root / cls / f"img{j}.png")
    return root


# ----------------------------------------------------------------------------------------------------------------
# load_image


def test_load_grayscale_and_la(tmp_path):
    Image.new("L", (3, 2), 77).save(tmp_path / "g.png")
    Image.new("LA", (3, 2), (77, 0)).save(tmp_path / "la.png")
    g = D.load_image(tmp_path / "g.png")
    assert g.mode == "RGB" and g.size == (3, 2) and g.getpixel((0, 0)) == (77, 77, 77)
    assert D.load_image(tmp_path / "la.png").getpixel((0, 0)) == (255, 255, 255)


def test_load_rgba_composites_on_white(tmp_path):
    img = Image.new("RGBA", (2, 1), (255, 0, 0, 128))
    img.putpixel((1, 0), (0, 0, 255, 0))
    img.save(tmp_path / "a.png")
    out = D.load_image(tmp_path / "a.png")
    r, g, b = out.getpixel((0, 0))
    assert r == 255 and abs(g - 127) <= 1 and abs(b - 127) <= 1
    assert out.getpixel((1, 0)) == (255, 255, 255)


def test_load_palette_with_and_without_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 10, 200, 30])
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "t.png", transparency=0)
    img.save(tmp_path / "p.png")
    t = D.load_image(tmp_path / "t.png")
    assert t.getpixel((0, 0)) == (255, 255, 255) and t.getpixel((1, 0)) == (10, 200, 30)
    assert D.load_image(tmp_path / "p.png").getpixel((0, 0)) == (0, 0, 0)


def test_load_cmyk(tmp_path):
    Image.new("CMYK", (4, 4), (255, 0, 0, 0)).save(tmp_path / "c.jpg", quality=95)
    out = D.load_image(tmp_path / "c.jpg")
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out, dtype=int) - [0, 255, 255]).max() <= 3


def test_load_16bit_png_scales_by_full_range(tmp_path):
    a = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "16.png")
    out = np.asarray(D.load_image(tmp_path / "16.png"))
    assert out[0, :, 0].tolist() == [0, 100, 255] and (out[..., 0] == out[..., 2]).all()


def test_load_32bit_int_and_float_tiff(tmp_path):
    Image.fromarray(np.array([[0, 257 * 50]], dtype=np.int32)).save(tmp_path / "i.tif")
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    assert np.asarray(D.load_image(tmp_path / "i.tif"))[0, :, 0].tolist() == [0, 50]
    assert np.asarray(D.load_image(tmp_path / "f.tif"))[0, :, 0].tolist() == [0, 128, 255]


def test_load_tiny_and_large(tmp_path):
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "tiny.png")
    Image.new("RGB", (3000, 3000), (9, 9, 9)).save(tmp_path / "large.png")
    assert D.load_image(tmp_path / "tiny.png").size == (1, 1)
    assert D.load_image(tmp_path / "large.png").size == (3000, 3000)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match=r"cannot read image .*bomb\.png: .*PIL\.Image\.MAX_IMAGE_PIXELS = 1000"):
        D.load_image(tmp_path / "bomb.png")


def test_corrupt_and_truncated_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError, match=f"cannot read image {re.escape(str(bad))}: .*corrupt") as err:
        D.load_image(bad)
    assert err.value.path == str(bad)

    good = tmp_path / "good.png"
    _noise((64, 64)).save(good)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match=f"cannot read image {re.escape(str(trunc))}: .*truncated"):
        D.load_image(trunc)
    with pytest.raises(ImageLoadError, match="missing.png: no such file"):
        D.load_image(tmp_path / "missing.png")


# ----------------------------------------------------------------------------------------------------------------
# FolderDataset


def test_folder_dataset_layout(tmp_path):
    root = _make_folder(tmp_path / "ds", {"b_cls": 2, "a_cls": 3})
    (root / "a_cls" / "notes.txt").write_text("not an image")
    (root / "a_cls" / ".hidden.png").write_bytes(b"junk")
    _noise().save(root / "a_cls" / "UPPER.JPG")
    (root / "a_cls" / "nested").mkdir()
    _noise().save(root / "a_cls" / "nested" / "deep.webp")
    ds = FolderDataset(root)
    assert ds.name == "ds" and ds.classnames == ["a_cls", "b_cls"]
    assert ds.labels.tolist() == [0] * 5 + [1] * 2
    assert "a_cls/UPPER.JPG" in [s.id for s in ds.samples] and "a_cls/nested/deep.webp" in [s.id for s in ds.samples]
    img, label = ds[0]
    assert img.mode == "RGB" and label == 0


def test_folder_classnames_files(tmp_path):
    root = _make_folder(tmp_path / "ds", {"n01": 1, "n02": 1})
    (root / "classnames.txt").write_text("# folder pretty name\nn01 goldfish\n\nn02 great white shark\n")
    assert FolderDataset(root).classnames == ["goldfish", "great white shark"]
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"n02": "shark"}))
    assert FolderDataset(root, classnames_file=names).classnames == ["n01", "shark"]
    names.write_text(json.dumps({"n03": "typo"}))
    with pytest.raises(DataError, match=r"names folders that are not in .*\['n03'\]"):
        FolderDataset(root, classnames_file=names)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match=f"dataset folder {re.escape(str(tmp_path / 'nope'))} does not exist"):
        FolderDataset(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    _noise().save(tmp_path / "flat" / "x.png")
    with pytest.raises(DataError, match="no class folders in .*flat: expected the layout root/<class>/<image files>"):
        FolderDataset(tmp_path / "flat")
    root = _make_folder(tmp_path / "ds", {"cat": 2})
    (root / "dog").mkdir()
    with pytest.raises(DataError, match=f"empty class 'dog' at {re.escape(str(root / 'dog'))}: add images or "
                                        f"remove the folder"):
        FolderDataset(root)


def test_fingerprint_changes_when_a_file_is_rewritten(tmp_path):
    root = _make_folder(tmp_path / "ds", {"a": 2, "b": 1})
    before = FolderDataset(root).fingerprint()
    assert before[0].startswith("a/img0.png|")
    _noise((20, 20), seed=99).save(root / "a" / "img1.png")
    after = FolderDataset(root).fingerprint()
    assert after[1] != before[1] and after[0] == before[0] and after[2] == before[2]


# ----------------------------------------------------------------------------------------------------------------
# WorldDataset and write_folder


def test_world_dataset_is_deterministic_and_labelled():
    a = WorldDataset(shapes=["circle", "star"], n_per_class=3, seed=5, image_size=32)
    b = WorldDataset(shapes=["circle", "star"], n_per_class=3, seed=5, image_size=32)
    assert a.classnames == ["circle", "star"] and a.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert a.samples[3].id == "star/00000"
    assert np.array_equal(np.asarray(a.load(4)), np.asarray(b.load(4)))
    assert a.scene(4).shape == "star" and a.load(4).size == (32, 32)
    other_seed = WorldDataset(shapes=["circle", "star"], n_per_class=3, seed=6, image_size=32)
    assert not np.array_equal(np.asarray(a.load(4)), np.asarray(other_seed.load(4)))
    assert a.fingerprint() == b.fingerprint() != other_seed.fingerprint()
    # an image does not depend on the other classes or on n_per_class
    solo = WorldDataset(shapes=["star"], n_per_class=2, seed=5, image_size=32)
    assert np.array_equal(np.asarray(a.load(4)), np.asarray(solo.load(1)))


def test_world_background_and_clutter():
    bg = WorldDataset(kind="background", n_per_class=4, seed=1, image_size=32)
    assert bg.classnames == ["background"] and len(bg) == 4 and set(bg.labels) == {0}
    assert bg.scene(0).objects == ()
    clutter = WorldDataset(kind="clutter", n_per_class=2, seed=1, image_size=32)
    assert clutter.classnames == ["clutter"] and len(clutter.scene(0).objects) >= 3


def test_world_errors():
    with pytest.raises(DataError, match=r"bad world shapes \['circle', 'blob'\]: .*known shapes \['circle'"):
        WorldDataset(shapes=["circle", "blob"])
    with pytest.raises(DataError, match=r"unknown world kind 'scene'; choose from \['object', 'background'"):
        WorldDataset(kind="scene")


def test_write_folder_round_trip(tmp_path):
    world = WorldDataset(shapes=["triangle", "circle", "star"], n_per_class=2, seed=3, image_size=32)
    root = D.write_folder(world, tmp_path / "out")
    back = FolderDataset(root)
    assert back.classnames == world.classnames
    assert back.labels.tolist() == world.labels.tolist()
    assert np.array_equal(np.asarray(back.load(5)), np.asarray(world.load(5)))
    with pytest.raises(DataError, match="write_folder: .*out is not empty; choose a new folder"):
        D.write_folder(world, root)


def test_subset_keeps_loader_and_classes():
    world = WorldDataset(shapes=["circle", "star"], n_per_class=3, seed=0, image_size=32)
    sub = world.subset([4, 1], name="two")
    assert isinstance(sub, WorldDataset) and sub.name == "two" and sub.classnames == world.classnames
    assert [s.id for s in sub.samples] == ["star/00001", "circle/00001"]
    assert np.array_equal(np.asarray(sub.load(0)), np.asarray(world.load(4)))
    assert sub.fingerprint() == [world.fingerprint()[4], world.fingerprint()[1]]
    with pytest.raises(DataError, match=r"duplicate sample ids \['circle/00001'\]"):
        world.subset([1, 1])


# ----------------------------------------------------------------------------------------------------------------
# torchvision


def test_torchvision_missing_data_never_downloads(tmp_path):
    msg = (f"dataset 'cifar10' not found at {tmp_path}: download it with torchvision.datasets.CIFAR10("
           f"'{tmp_path}', train=False, download=True) on a machine with internet, or point `root` at an "
           f"existing copy")
    with pytest.raises(DataError, match=re.escape(msg)):
        TorchvisionDataset("cifar10", tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match=r"unknown torchvision dataset 'imagenet'; known: \['cifar10', 'cifar100', "
                                        r"'dtd', 'places365'\]"):
        TorchvisionDataset("imagenet", tmp_path)
    with pytest.raises(DataError, match=r"unknown split 'test' for places365; choose from \['train-standard', 'val'\]"):
        TorchvisionDataset("places365", tmp_path, split="test")


def test_torchvision_dtd_from_a_local_copy(tmp_path):
    """DTD has no checksums on its files, so a two-image fake of its layout exercises the real wrapper."""
    data = tmp_path / "dtd" / "dtd"
    for cls in ("banded", "zig_zagged"):
        (data / "images" / cls).mkdir(parents=True)
        _noise(seed=len(cls)).save(data / "images" / cls / f"{cls}_0001.jpg")
    (data / "labels").mkdir()
    (data / "labels" / "test1.txt").write_text("banded/banded_0001.jpg\nzig_zagged/zig_zagged_0001.jpg\n")
    ds = D.build_dataset({"type": "torchvision", "name": "dtd", "root": "."}, tmp_path, name="textures")
    assert ds.name == "textures" and ds.classnames == ["banded", "zig zagged"]
    assert [s.id for s in ds.samples] == ["dtd/test/000000", "dtd/test/000001"] and ds.labels.tolist() == [0, 1]
    assert ds[1][0].size == (16, 12) and ds.fingerprint()[0].startswith("dtd/test/000000|")


# ----------------------------------------------------------------------------------------------------------------
# few-shot and manifests


def test_few_shot_determinism_and_errors():
    world = WorldDataset(shapes=["circle", "square", "star"], n_per_class=20, seed=0, image_size=32)
    sub, manifest = D.few_shot(world, shots=2, seed=7)
    again, manifest_again = D.few_shot(world, shots=2, seed=7)
    assert manifest == manifest_again and len(sub) == 6 and sub.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert manifest[0]["class"] == "circle" and manifest[0]["id"].startswith("circle/")
    picks = {tuple(m["id"] for m in D.few_shot(world, 2, seed)[1]) for seed in range(5)}
    assert len(picks) > 1
    with pytest.raises(DataError, match=r"shots must be a whole number >= 1, got 0"):
        D.few_shot(world, shots=0, seed=0)
    small = world.subset([0, 20, 21, 40, 41])
    with pytest.raises(DataError, match="class 'circle' has 1 images but shots=2"):
        D.few_shot(small, shots=2, seed=0)


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_manifest_round_trip_and_replay(tmp_path, suffix):
    world = WorldDataset(shapes=["circle", "star"], n_per_class=5, seed=0, image_size=32)
    sub, manifest = D.few_shot(world, shots=2, seed=1)
    path = D.write_manifest(manifest, tmp_path / f"shots{suffix}")
    assert D.read_manifest(path) == manifest
    replayed = D.replay_manifest(world, path)
    assert [s.id for s in replayed.samples] == [s.id for s in sub.samples]
    assert replayed.labels.tolist() == sub.labels.tolist()
    with pytest.raises(DataError, match="manifest id 'star/00099' is not in dataset"):
        D.replay_manifest(world, [{"class": "star", "label": 1, "id": "star/00099"}])
    with pytest.raises(DataError, match="manifest id 'star/00001' has label 0 but dataset .* says 1"):
        D.replay_manifest(world, [{"class": "star", "label": 0, "id": "star/00001"}])
    with pytest.raises(DataError, match=r"manifest .*shots\.txt: use a \.json or \.csv file name"):
        D.write_manifest(manifest, tmp_path / "shots.txt")


# ----------------------------------------------------------------------------------------------------------------
# benchmark specs


def test_default_benchmark():
    spec = BenchmarkSpec.from_yaml(D.default_benchmark_path())
    spec.validate()
    ident, train = spec.id_dataset(), spec.id_train_dataset()
    assert ident.classnames == list(D.ID_SHAPES) == train.classnames and len(ident) == 360
    assert train.seed == ident.seed + 1000
    ood = spec.ood_datasets()
    assert list(ood) == ["near-ood", "textures", "clutter"]
    assert ood["near-ood"].classnames == list(D.NEAR_OOD_SHAPES) and len(ood["near-ood"]) == 180
    assert len(ood["textures"]) == len(ood["clutter"]) == 180 and ood["textures"].name == "textures"


def test_benchmark_yaml_with_relative_folder_roots(tmp_path, monkeypatch):
    bench = tmp_path / "bench"
    _make_folder(bench / "data" / "id", {"cat": 2, "dog": 2})
    _make_folder(bench / "data" / "train", {"cat": 1, "dog": 1})
    _make_folder(bench / "data" / "ood", {"x": 3})
    (bench / "spec.yaml").write_text(
        "name: pets\n"
        "id: {type: folder, root: data/id}\n"
        "id_train: {type: folder, root: data/train}\n"
        "ood:\n  other: {type: folder, root: data/ood}\n")
    monkeypatch.chdir(tmp_path)
    spec = BenchmarkSpec.from_yaml("bench/spec.yaml")
    spec.validate()
    assert spec.id_dataset().root == bench.resolve() / "data" / "id"
    assert len(spec.id_train_dataset()) == 2 and len(spec.ood_datasets()["other"]) == 3


def test_benchmark_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown dataset type 'foo'; known types: folder, torchvision, world"):
        D.build_dataset({"type": "foo"}, tmp_path)
    with pytest.raises(DataError, match=r"unknown torchvision dataset 'svhn'; known: \['cifar10'"):
        D.build_dataset({"type": "torchvision", "name": "svhn", "root": "."}, tmp_path)
    spec = BenchmarkSpec.from_dict({
        "id": {"type": "folder", "root": "missing"},
        "ood": {"a": {"type": "world", "kind": "background", "n": 3}, "b": {"type": "bogus"}},
    }, tmp_path)
    expected = ("benchmark 'benchmark' ({0}) is invalid:\n"
                "  - id: dataset folder {1} does not exist: point `root` at a folder of class folders\n"
                "  - id_train: the ID set is a folder dataset, so few-shot images need an explicit `id_train` entry")
    with pytest.raises(DataError, match=re.escape(expected.format(tmp_path, tmp_path / "missing"))) as err:
        spec.validate()
    assert "ood 'b': unknown dataset type 'bogus'" in str(err.value)
    with pytest.raises(DataError, match="needs at least one OOD set"):
        BenchmarkSpec.from_dict({"id": {"type": "world"}, "ood": {}})
    dup = tmp_path / "dup.yaml"
    dup.write_text("id: {type: world}\nood:\n  a: {type: world, seed: 1}\n  a: {type: world, seed: 2}\n")
    with pytest.raises(DataError, match=r"cannot parse benchmark .*dup\.yaml: duplicate key 'a' at line 4"):
        BenchmarkSpec.from_yaml(dup)
    monkeypatch.delenv("CLIPOS_NO_SUCH_VAR", raising=False)
    with pytest.raises(DataError, match=r"path '\$CLIPOS_NO_SUCH_VAR/x' uses an environment variable that is not set"):
        D.build_dataset({"type": "folder", "root": "$CLIPOS_NO_SUCH_VAR/x"}, tmp_path)
    with pytest.raises(DataError, match=r"`n` \(total images\) is for kinds background and clutter"):
        D.build_dataset({"type": "world", "n": 5}, tmp_path)


def test_benchmark_env_and_home_expansion(tmp_path, monkeypatch):
    _make_folder(tmp_path / "data", {"a": 1})
    monkeypatch.setenv("CLIPOS_DATA", str(tmp_path))
    assert len(D.build_dataset({"type": "folder", "root": "$CLIPOS_DATA/data"}, "/")) == 1
    monkeypatch.setenv("HOME", str(tmp_path))
    assert D.build_dataset({"type": "folder", "root": "~/data"}, "/").root == tmp_path / "data"


def test_paper_specs_fail_with_where_and_how_to_get_the_data(tmp_path, monkeypatch):
    from clipos_lab.data import BenchmarkSpec, default_benchmark_path

    monkeypatch.setenv("HOME", str(tmp_path))  # no datasets under this home
    for name in ("paper-cifar10", "paper-cifar100", "paper-imagenet100"):
        spec = BenchmarkSpec.from_yaml(default_benchmark_path().parent / f"{name}.yaml")
        with pytest.raises(DataError) as err:
            spec.validate()
        message = str(err.value)
        assert f"{tmp_path}/data/ood/iSUN does not exist" in message
        assert "How to get it: the iSUN OOD test set" in message
        assert "download=True" in message or "image-net.org" in message

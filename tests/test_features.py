from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CountingBackbone, make_folder
from PIL import Image

from clipos_lab.data import FolderDataset, WorldDataset
from clipos_lab.features import (
    CacheWarning,
    FeatureBank,
    SkippedImageWarning,
    cache_key,
)


def test_encode_shapes_dtypes_and_labels(tiny_backbone, tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", size=40))
    bank = FeatureBank.encode(ds, tiny_backbone, batch_size=4, cache=False, progress=False)
    assert len(bank) == 6 and bank.global_.shape == (6, 16)
    assert bank.patches.shape == (6, 16, 16) and bank.patches.dtype == torch.float16
    assert bank.surgery.shape == (6, 16, 16)
    assert bank.local.shape == (6, 16, 16) and bank.local.dtype == torch.float16
    assert bank.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert bank.classnames == ["cat", "dog"] and bank.grid == (4, 4)
    # the stored features equal a direct forward (up to float16 storage of patches)
    direct = tiny_backbone.encode_images(torch.stack([tiny_backbone.preprocess(ds.load(i)) for i in range(6)]))
    torch.testing.assert_close(bank.global_, direct.global_, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bank.patches.float(), direct.patches, atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(bank.local.float(), direct.local, atol=2e-2, rtol=1e-2)


def test_second_encode_loads_from_cache_without_calling_the_model(tiny_backbone, tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", size=40))
    counting = CountingBackbone(tiny_backbone)
    first = FeatureBank.encode(ds, counting, batch_size=4, cache=tmp_path / "cache", progress=False)
    calls = counting.calls
    assert calls == 2
    second = FeatureBank.encode(ds, counting, batch_size=4, cache=tmp_path / "cache", progress=False)
    assert counting.calls == calls
    torch.testing.assert_close(first.global_, second.global_)
    torch.testing.assert_close(first.local, second.local)  # the local features are stored like the others
    assert second.ids == first.ids


def test_truncated_cache_is_reported_and_rebuilt(tiny_backbone, tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", size=40))
    bank = FeatureBank.encode(ds, tiny_backbone, cache=tmp_path / "cache", progress=False)
    path = Path(bank.meta["cache_path"])
    (path / "patches.bin").write_bytes((path / "patches.bin").read_bytes()[:300])
    counting = CountingBackbone(tiny_backbone)
    with pytest.warns(CacheWarning, match="unreadable"):
        rebuilt = FeatureBank.encode(ds, counting, cache=tmp_path / "cache", progress=False)
    assert counting.calls > 0
    torch.testing.assert_close(rebuilt.global_, bank.global_)
    assert FeatureBank.load(path).ids == bank.ids  # the rebuilt file is whole again


def test_changing_one_image_changes_the_key(tiny_backbone, tmp_path):
    root = make_folder(tmp_path / "data", size=40)
    key = cache_key(FolderDataset(root), tiny_backbone, True, torch.float16)
    Image.fromarray(np.zeros((50, 50, 3), dtype=np.uint8)).save(root / "dog" / "1.png")
    assert cache_key(FolderDataset(root), tiny_backbone, True, torch.float16) != key
    assert cache_key(FolderDataset(root), tiny_backbone, False, torch.float16) != \
        cache_key(FolderDataset(root), tiny_backbone, True, torch.float16)


def test_corrupt_image_is_skipped_with_a_warning_and_counted(tiny_backbone, tmp_path):
    root = make_folder(tmp_path / "data", size=40)
    (root / "cat" / "broken.png").write_bytes(b"not a png at all")
    ds = FolderDataset(root)
    with pytest.warns(SkippedImageWarning, match=r"broken\.png"):
        bank = FeatureBank.encode(ds, tiny_backbone, cache=False, progress=False)
    assert len(bank) == 6 and bank.meta["n_skipped"] == 1
    assert "broken.png" in bank.meta["skipped"][0]["id"]


def test_cache_dir_from_environment(tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "envcache"))
    ds = WorldDataset(n_per_class=1, shapes=("circle", "star"), image_size=32)
    bank = FeatureBank.encode(ds, tiny_backbone, progress=False)
    assert bank.meta["cache_path"].startswith(str(tmp_path / "envcache"))


def test_subset_and_select_ids(tiny_backbone, tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", size=40))
    bank = FeatureBank.encode(ds, tiny_backbone, cache=False, progress=False)
    picked = bank.select_ids([bank.ids[4], bank.ids[1]])
    assert picked.ids == [bank.ids[4], bank.ids[1]] and picked.labels.tolist() == [1, 0]
    torch.testing.assert_close(picked.patches[0], bank.patches[4])
    torch.testing.assert_close(picked.local[0], bank.local[4])
    with pytest.raises(KeyError, match="not in this bank"):
        bank.select_ids(["nope"])

"""The streaming FeatureBank: rows written as they are encoded, resumable, locked, checksummed, generic kinds."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_folder

from clipos_lab.data import FolderDataset
from clipos_lab.features import CacheWarning, FeatureBank, SkippedImageWarning


@dataclass
class StubFeatures:
    """Like backbone.ImageFeatures plus one more token kind, to check that every kind is stored."""

    global_: torch.Tensor
    patches: torch.Tensor
    surgery: torch.Tensor | None
    local: torch.Tensor
    grid: tuple[int, int]


class StubBackbone:
    """Features that are a fixed function of the pixels; counts calls and rows; can stop after some calls."""

    name, weights_id, surgery_blocks, grid = "stub", "stub:0", 1, (2, 2)
    device = torch.device("cpu")

    def __init__(self, stop_after: int | None = None, log: str | None = None, delay: float = 0.0):
        self.calls, self.rows, self.stop_after, self.log, self.delay = 0, 0, stop_after, log, delay

    def preprocess(self, image):
        return torch.from_numpy(np.asarray(image.resize((4, 4)), dtype=np.float32) / 255).permute(2, 0, 1)

    def preprocess_id(self):
        return "stub-4px"

    def encode_images(self, images, surgery=True):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt("interrupted on purpose")
        self.calls += 1
        self.rows += len(images)
        if self.log:
            with open(self.log, "a") as fh:
                fh.write(f"{len(images)}\n")
        time.sleep(self.delay)
        flat = images.reshape(len(images), -1)  # 48 values
        patches = flat[:, :32].reshape(-1, 4, 8)
        return StubFeatures(flat[:, :8], patches, patches * 2 if surgery else None, patches + 1, (2, 2))


def _mapped_file(address: int) -> str:
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= address < hi:
            return parts[-1] if len(parts) >= 6 else ""
    return ""


def test_every_token_kind_is_stored_and_memory_mapped(tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", n=5, size=12))
    bank = FeatureBank.encode(ds, StubBackbone(), batch_size=3, cache=tmp_path / "c", progress=False)
    assert set(bank.tensors()) == {"global", "patches", "surgery", "local"}
    torch.testing.assert_close(bank.local.float(), bank.patches.float() + 1, atol=1e-2, rtol=1e-2)
    assert bank.global_.dtype == torch.float32 and bank.local.dtype == torch.float16
    if os.path.exists("/proc/self/maps"):  # the finished bank is a map of the files, not a copy
        assert _mapped_file(bank.patches.data_ptr()).endswith("patches.bin")
    again = FeatureBank.load(bank.meta["cache_path"])
    assert again.ids == bank.ids and torch.equal(again.local, bank.local)


def test_only_requested_rows_are_encoded_and_later_requests_reuse_them(tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", n=5, size=12))
    stub = StubBackbone()
    part = FeatureBank.encode(ds, stub, batch_size=8, cache=tmp_path / "c", progress=False, indices=[7, 1, 3])
    assert stub.rows == 3 and part.ids == [ds.samples[i].id for i in (7, 1, 3)]
    more = FeatureBank.encode(ds, stub, batch_size=8, cache=tmp_path / "c", progress=False, indices=[3, 4])
    assert stub.rows == 4  # row 3 came from the cache
    whole = FeatureBank.encode(ds, stub, batch_size=8, cache=tmp_path / "c", progress=False)
    assert stub.rows == 10
    torch.testing.assert_close(whole.select_ids(more.ids).patches, more.patches)


def test_an_interrupted_encode_resumes_from_what_it_wrote(tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", n=5, size=12))
    with pytest.raises(KeyboardInterrupt):
        FeatureBank.encode(ds, StubBackbone(stop_after=2), batch_size=3, cache=tmp_path / "c", progress=False)
    resumed = StubBackbone()
    bank = FeatureBank.encode(ds, resumed, batch_size=3, cache=tmp_path / "c", progress=False)
    assert resumed.rows == 10 - 2 * 3  # only the rows after the interruption
    fresh = FeatureBank.encode(ds, StubBackbone(), batch_size=3, cache=False, progress=False)
    for name, t in fresh.tensors().items():
        assert torch.equal(bank.tensors()[name], t), name


def test_a_corrupted_but_parsable_row_is_detected_and_re_encoded(tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", n=5, size=12))
    bank = FeatureBank.encode(ds, StubBackbone(), batch_size=4, cache=tmp_path / "c", progress=False)
    expected = bank.patches.clone()
    path = Path(bank.meta["cache_path"]) / "patches.bin"
    data = bytearray(path.read_bytes())
    row_bytes = len(data) // 10
    data[6 * row_bytes + 5] ^= 0xFF  # one flipped byte in row 6: same size, still parses
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        FeatureBank.load(path.parent)
    stub = StubBackbone()
    with pytest.warns(CacheWarning, match="checksum"):
        rebuilt = FeatureBank.encode(ds, stub, batch_size=4, cache=tmp_path / "c", progress=False)
    assert stub.rows == 1 and torch.equal(rebuilt.patches, expected)


def test_skipped_images_are_recorded_also_when_loaded_from_cache(tmp_path):
    root = make_folder(tmp_path / "data", n=5, size=12)
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    ds = FolderDataset(root)
    with pytest.warns(SkippedImageWarning, match="broken"):
        first = FeatureBank.encode(ds, StubBackbone(), batch_size=4, cache=tmp_path / "c", progress=False)
    stub = StubBackbone()
    second = FeatureBank.encode(ds, stub, batch_size=4, cache=tmp_path / "c", progress=False)
    assert stub.calls == 0 and len(second) == 10
    assert [s["id"] for s in second.skipped] == [s["id"] for s in first.skipped] == ["cat/broken.png"]


def _encode_in_child(root, cache, log):
    torch.set_num_threads(1)
    bank = FeatureBank.encode(FolderDataset(root), StubBackbone(log=log, delay=0.05), batch_size=2, cache=cache,
                              progress=False)
    np.save(Path(log).with_suffix(f".{os.getpid()}.npy"), bank.patches.float().numpy())


def test_two_processes_encoding_the_same_data_neither_corrupt_nor_duplicate(tmp_path):
    root = make_folder(tmp_path / "data", n=5, size=12)
    log = tmp_path / "rows.log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_encode_in_child, args=(root, tmp_path / "c", str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sum(int(x) for x in log.read_text().split()) == 10  # every image encoded exactly once
    outs = [np.load(f) for f in tmp_path.glob("rows.*.npy")]
    assert len(outs) == 2 and np.array_equal(outs[0], outs[1])
    reference = FeatureBank.encode(FolderDataset(root), StubBackbone(), cache=False, progress=False)
    assert np.array_equal(outs[0], reference.patches.float().numpy())


def test_workers_give_the_same_bank(tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", n=5, size=12))
    plain = FeatureBank.encode(ds, StubBackbone(), batch_size=3, cache=False, progress=False)
    workers = FeatureBank.encode(ds, StubBackbone(), batch_size=3, cache=False, progress=False, num_workers=2)
    assert workers.ids == plain.ids and torch.equal(workers.patches, plain.patches)


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, torch
    from PIL import Image
    from clipos_lab.data.datasets import ImageDataset, Sample
    from clipos_lab.features import FeatureBank
    torch.set_num_threads(1)

    class Blank(ImageDataset):
        def _load_sample(self, sample):
            return Image.new("RGB", (4, 4), (int(sample.id) % 255, 0, 0))
        def _fingerprint_sample(self, sample):
            return sample.id

    class Big:  # 16 x 512 float16 patch and surgery tokens: 32 KB per image, as a ViT gives
        name, weights_id, surgery_blocks, grid, device = "big", "big:0", 1, (4, 4), torch.device("cpu")
        def preprocess(self, image):
            return torch.full((3, 4, 4), float(image.getpixel((0, 0))[0]))
        def preprocess_id(self):
            return "big"
        def encode_images(self, images, surgery=True):
            from clipos_lab.backbone import ImageFeatures
            b = len(images)
            t = images.reshape(b, -1)[:, :1].expand(b, 16 * 512).reshape(b, 16, 512).contiguous()
            return ImageFeatures(t[:, 0].clone(), t.clone(), t + 1, (4, 4))

    peaks = []
    for n in (int(a) for a in sys.argv[2:]):
        ds = Blank(f"blank{n}", ["x"], [Sample(str(i), 0) for i in range(n)])
        FeatureBank.encode(ds, Big(), batch_size=64, cache=sys.argv[1], progress=False)
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(peaks))
""")


def test_streaming_encode_does_not_grow_in_memory_with_n(tmp_path):
    """Peak RSS after encoding 256 images, then 4096 (a 128 MB bank): the old in-memory encode grew ~280 MB."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "c"), "256", "4096"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr[-2000:]
    small, large = json.loads(out.stdout.strip().splitlines()[-1])
    assert large - small < 40, f"peak RSS grew {large - small:.0f} MB from 256 to 4096 images"


@pytest.mark.parametrize("value", [2, 255])
def test_a_corrupted_state_byte_is_re_encoded_or_reported_never_dropped(tmp_path, value):
    ds = FolderDataset(make_folder(tmp_path / "data", n=5, size=12))
    bank = FeatureBank.encode(ds, StubBackbone(), batch_size=4, cache=tmp_path / "c", progress=False)
    state = Path(bank.meta["cache_path"]) / "state.u8"
    data = bytearray(state.read_bytes())
    data[3] = value  # "unreadable" with no recorded error, or no state at all
    state.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="rows in doubt"):
        FeatureBank.load(state.parent)
    stub = StubBackbone()
    with pytest.warns(CacheWarning, match="re-encoding"):
        again = FeatureBank.encode(ds, stub, batch_size=4, cache=tmp_path / "c", progress=False)
    assert stub.rows == 1 and again.ids == bank.ids and torch.equal(again.patches, bank.patches)


def _crc_of_row(path: Path, row: int, row_bytes: int) -> int:
    import zlib

    return zlib.crc32(path.read_bytes()[row * row_bytes: (row + 1) * row_bytes])


def test_cached_non_finite_features_are_rebuilt_with_a_warning_and_model_nan_stops(tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", n=5, size=12))
    bank = FeatureBank.encode(ds, StubBackbone(), batch_size=4, cache=tmp_path / "c", progress=False)
    expected = bank.global_.clone()
    folder = Path(bank.meta["cache_path"])
    meta = json.loads((folder / "meta.json").read_text())
    # NaN written into row 2 of the global features with a checksum that matches it (e.g. an older writer)
    glob = np.memmap(folder / "global.bin", dtype=np.float32, mode="r+", shape=(10, 8))
    glob[2, 0] = np.nan
    glob.flush()
    del glob
    crc = np.memmap(folder / "crc.u32", dtype=np.uint32, mode="r+", shape=(10, len(meta["kinds"])))
    crc[2, list(meta["kinds"]).index("global")] = _crc_of_row(folder / "global.bin", 2, 32)
    crc.flush()
    del crc
    stub = StubBackbone()
    with pytest.warns(CacheWarning, match="NaN or inf"):
        again = FeatureBank.encode(ds, stub, batch_size=4, cache=tmp_path / "c", progress=False)
    assert stub.rows == 1 and torch.equal(again.global_, expected)

    class NanBackbone(StubBackbone):
        name = "nan-stub"

        def encode_images(self, images, surgery=True):
            feats = super().encode_images(images, surgery)
            feats.global_[0, 0] = float("nan")
            return feats

    from clipos_lab.data import DataError

    with pytest.raises(DataError, match=r"NaN or inf global features .* dataset 'data'"):
        FeatureBank.encode(ds, NanBackbone(), batch_size=4, cache=tmp_path / "c", progress=False)


_COUNT_READS = """
import os, sys
from clipos_lab.features import FeatureBank
calls = []
real = os.pread
os.pread = lambda fd, n, offset: calls.append(n) or real(fd, n, offset)
bank = FeatureBank.load(sys.argv[1])
print(len(bank), len(calls))
"""


def _rows_read_by_a_new_process(folder: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", _COUNT_READS, str(folder)], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    return int(out[1])


def test_opening_an_unchanged_store_reads_no_rows_and_a_changed_one_is_checked_once(tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", n=5, size=12))
    bank = FeatureBank.encode(ds, StubBackbone(), batch_size=4, cache=tmp_path / "c", progress=False)
    folder = Path(bank.meta["cache_path"])
    assert _rows_read_by_a_new_process(folder) == 0  # rows were checked when written: O(1) to open
    (folder / "local.bin").write_bytes((folder / "local.bin").read_bytes())  # rewritten by someone else
    assert _rows_read_by_a_new_process(folder) == 10 * 4  # every row of every kind, once
    assert _rows_read_by_a_new_process(folder) == 0


def test_a_drawn_bank_reads_a_token_kind_only_when_it_is_used(tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "data", n=5, size=12))
    FeatureBank.encode(ds, StubBackbone(), batch_size=4, cache=tmp_path / "c", progress=False)
    drawn = FeatureBank.encode(ds, StubBackbone(), batch_size=4, cache=tmp_path / "c", progress=False,
                               indices=[7, 1, 3])
    assert drawn.loaded_kinds() == [] and set(drawn.kind_names()) == {"global", "patches", "surgery", "local"}
    moved = drawn.to("cpu").subset([2, 0])
    assert moved.global_.shape == (2, 8) and moved.loaded_kinds() == ["global"]
    assert torch.equal(moved.local, drawn.local[[2, 0]])
    assert "patches" not in moved.loaded_kinds()
    assert set(drawn.loaded_kinds()) == {"global", "local"}  # read once, through the bank they were drawn into


def test_anomaly_tokens_live_in_the_checksummed_store(tiny_backbone, tmp_path):
    """Intermediate layers are extra kinds of the one FeatureStore: a negated cached layer is caught and rebuilt."""
    from clipos_lab.anomaly import encode_tokens

    ds = FolderDataset(make_folder(tmp_path / "data", n=2, size=12))
    first = encode_tokens(ds, tiny_backbone, (1, -1), cache=tmp_path / "c")
    expected = {k: first.tokens(k).clone() for k in (1, 2)}
    torch.testing.assert_close(first.tokens(-1), FeatureBank.encode(ds, tiny_backbone, cache=False,
                                                                    progress=False).patches.float())
    folder = Path(first.meta["cache_path"])
    assert {"layer1.bin", "patches.bin"} <= {p.name for p in folder.iterdir()}
    layer = np.memmap(folder / "layer1.bin", dtype=np.float16, mode="r+")
    layer[:] = -layer  # every cached number negated: same size, still parses
    layer.flush()
    del layer
    with pytest.warns(CacheWarning, match="checksum"):
        again = encode_tokens(ds, tiny_backbone, (1, -1), cache=tmp_path / "c")
    for k, tokens in expected.items():
        assert torch.equal(again.tokens(k), tokens), k

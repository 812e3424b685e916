"""The paper protocols: every missing dataset says what it is and how to get it; class-name files are whole."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec, DataError, ListDataset
from clipos_lab.evaluation.runner import run_benchmark
from clipos_lab.resources import ASSETS

SPECS = {  # spec -> for each entry, words its missing-data message must contain
    "paper-imagenet1k": {"id": ["ImageNet-1k", "image-net.org"], "id_train": ["train set"],
                         "ood 'inaturalist'": ["iNaturalist", "large_scale_ood"], "ood 'sun'": ["SUN", "unpack"],
                         "ood 'places'": ["Places", "unpack"], "ood 'textures'": ["Describable Textures", "DTD"]},
    "openood-imagenet1k": {"id": ["OpenOOD", "download.py"], "ood 'ssb-hard'": ["SSB-hard", "download"],
                           "ood 'ninco'": ["NINCO"], "ood 'inaturalist'": ["iNaturalist"],
                           "ood 'textures'": ["Textures"], "ood 'openimage-o'": ["OpenImage-O", "Open Images"]},
    "paper-imagenet100": {"id": ["ImageNet-100 list", "image-net.org"], "ood 'lsun-crop'": ["LSUN"]},
    "paper-cifar10": {"id": ["CIFAR10", "download=True"], "ood 'textures'": ["DTD"]},
    "paper-cifar100": {"id": ["CIFAR100", "download=True"]},
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_missing_dataset_names_itself_and_how_to_get_it(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/data/... does not exist there
    spec = BenchmarkSpec.from_yaml(ASSETS / "benchmarks" / f"{name}.yaml")
    with pytest.raises(DataError) as info:
        spec.validate()
    message = str(info.value)
    for entry, words in SPECS[name].items():
        line = next((ln for ln in message.splitlines() if ln.strip().startswith(f"- {entry}:")), None)
        assert line is not None, f"{name}: no problem reported for {entry}"
        for word in words:
            assert word in line, f"{name} {entry}: {word!r} missing from {line!r}"


def test_class_name_files_are_whole_and_consistent():
    def read(name):
        rows = [ln.split(maxsplit=1) for ln in (ASSETS / "classnames" / name).read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
        return [r[0] for r in rows], [r[1] for r in rows]

    wnids, names = read("imagenet1k.txt")
    assert len(wnids) == 1000 == len(set(wnids)) and wnids == sorted(wnids)
    assert (wnids[0], names[0]) == ("n01440764", "tench") and names[-1] == "toilet paper"
    sub, sub_names = read("imagenet100.txt")
    assert len(sub) == 100 == len(set(sub)) and set(sub) <= set(wnids)
    assert all(dict(zip(wnids, names))[w] == n for w, n in zip(sub, sub_names))
    for name, n in (("cifar10.txt", 10), ("cifar100.txt", 100)):
        keys, pretty = read(name)
        assert len(keys) == n == len(set(pretty)) and keys == sorted(keys)
        assert all(k.replace("_", " ") == p for k, p in zip(keys, pretty))
    for path in (ASSETS / "classnames").glob("*.txt"):
        assert "github.com" in path.read_text().split("\n\n")[0][:600], f"{path.name} must name its source"


def test_list_entries_and_both_fpr95_conventions(tiny_backbone, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "img" / "a").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "img" / "a" / f"{i}.png")
    (tmp_path / "id.txt").write_text("".join(f"a/{i}.png {i % 2}\n" for i in range(4)))
    (tmp_path / "ood.txt").write_text("a/4.png 0\na/5.png 0\n")
    (tmp_path / "names.txt").write_text("n1 cat\nn2 dog\n")
    (tmp_path / "bad.txt").write_text("../outside.png 0\n")
    with pytest.raises(DataError, match="inside"):
        ListDataset(tmp_path / "img", tmp_path / "bad.txt")
    spec = BenchmarkSpec.from_dict({
        "name": "lists", "metrics": ["AUROC", "FPR95", "FPR95_OOD_POS"],
        "id": {"type": "list", "root": "img", "list": "id.txt", "classnames_file": "names.txt"},
        "id_train": {"type": "list", "root": "img", "list": "id.txt", "classnames_file": "names.txt"},
        "ood": {"other": {"type": "list", "root": "img", "list": "ood.txt"}}}, base_dir=tmp_path)
    assert spec.id_dataset().classnames == ["cat", "dog"] and spec.id_dataset().labels.tolist() == [0, 1, 0, 1]
    result = run_benchmark(spec, tiny_backbone, methods=["MCM", "CoOp"], shots=(1,), seeds=(1,),
                           prompt=PromptConfig(epochs=1, progress=False), cache=tmp_path / "cache", progress=False)
    assert {r["metric"] for r in result.rows} == {"AUROC", "FPR95", "FPR95_OOD_POS", "ACC"}
    with pytest.raises(DataError, match="metrics"):
        BenchmarkSpec.from_dict({"name": "x", "metrics": ["FPR99"], "id": {"type": "world"},
                                 "ood": {"o": {"type": "world"}}})

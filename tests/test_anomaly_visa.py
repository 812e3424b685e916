"""VisA: its split file and folders load, a run reports every metric; without the data, a message how to get it."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from clipos_lab.anomaly.data import AnomalySpec
from clipos_lab.anomaly.visa import visa_category
from clipos_lab.data.errors import DataError
from clipos_lab.resources import BENCHMARKS


def _visa_tree(root, objects=("candle", "pcb1")):
    """A VisA-shaped folder: JPEG images under <object>/Data/Images, label-valued masks, split_csv/1cls.csv."""
    rng = np.random.default_rng(0)
    lines = ["object,split,label,image,mask"]
    for obj in objects:
        base = rng.integers(60, 200, (24, 32, 3)).astype(np.uint8)
        for i in range(6):
            rel = f"{obj}/Data/Images/Normal/{i:04d}.JPG"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(base + rng.integers(-5, 5, base.shape), 0, 255).astype(np.uint8)).save(root / rel)
            lines.append(f"{obj},{'train' if i < 3 else 'test'},normal,{rel},")
        for i in range(3):
            rel, mrel = f"{obj}/Data/Images/Anomaly/{i:03d}.JPG", f"{obj}/Data/Masks/Anomaly/{i:03d}.png"
            img = base.copy()
            img[8:16, 8:16] = 255 - img[8:16, 8:16]
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / mrel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / rel)
            mask = np.zeros((24, 32), dtype=np.uint8)
            mask[8:16, 8:12], mask[8:16, 12:16] = 1, 2  # VisA's masks hold label values, not 255
            Image.fromarray(mask).save(root / mrel)
            lines.append(f"{obj},test,anomaly,{rel},{mrel}")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(lines) + "\n")
    return root


def test_visa_category_follows_the_split_file(tmp_path):
    _visa_tree(tmp_path)
    cat = visa_category(tmp_path, "candle")
    assert len(cat.train) == 3 and set(cat.train.labels) == {0}
    assert cat.test.classnames == ["good", "anomaly"] and cat.test.labels.tolist() == [0, 0, 0, 1, 1, 1]
    mask = cat.test.mask(3)
    assert mask.shape == (24, 32) and mask.sum() == 64 and mask[8:16, 8:16].all()  # both label values
    with pytest.raises(DataError, match="'bottle' is not in the split file; it lists \\['candle', 'pcb1'\\]"):
        visa_category(tmp_path, "bottle")
    (tmp_path / "pcb1" / "Data" / "Images" / "Anomaly" / "001.JPG").unlink()
    with pytest.raises(DataError, match="1 files the VisA split file lists are missing, .*001.JPG"):
        visa_category(tmp_path, "pcb1")


def test_paper_visa_without_the_data_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    from clipos_lab.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))  # ~/data/visa does not exist there
    assert main(["anomaly", "paper-visa"]) != 0
    err = capsys.readouterr().err
    assert "VisA root" in err and "does not exist. How to get it" in err and "spot-diff" in err
    assert "Traceback" not in err
    (tmp_path / "data" / "visa").mkdir(parents=True)
    assert main(["anomaly", "paper-visa"]) != 0
    assert "split file" in capsys.readouterr().err


def test_paper_visa_runs_on_a_visa_shaped_folder(tmp_path, monkeypatch, capsys):
    from clipos_lab.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    _visa_tree(tmp_path / "data" / "visa")
    spec = yaml.safe_load((BENCHMARKS / "paper-visa.yaml").read_text())
    spec["data"]["categories"] = ["candle", "pcb1"]  # the folder made here holds two of the twelve objects
    (tmp_path / "visa.yaml").write_text(yaml.safe_dump(spec))
    assert AnomalySpec.from_yaml(tmp_path / "visa.yaml").data["root"] == "~/data/visa"
    out = tmp_path / "out"
    assert main(["anomaly", str(tmp_path / "visa.yaml"), "--methods", "patch-memory,musc", "--shots", "0,1",
                 "--seeds", "1", "--out", str(out), "--no-progress"]) == 0
    import pandas as pd

    rows = pd.read_csv(out / "results.csv")
    assert set(rows["metric"]) == {"image_AUROC", "image_F1max", "pixel_AUROC", "AUPRO", "pixel_F1max"}
    assert set(rows["category"]) == {"candle", "pcb1", "mean"} and set(rows["method"]) == {"patch-memory", "musc"}
    assert rows["value"].notna().all()

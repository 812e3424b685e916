"""Bad inputs and faults of issue 23 (items 11-14): each test failed before its fix.

11 a folder link back up lists no image twice; 12 ``--overwrite`` keeps files no run wrote; 13 a full disk or a
file-size limit names the path, the losing run of two into one new folder keeps its results, a fractional or NaN
sweep timeout is refused when the file is read; 14 hostile sweep files are refused before anything is expanded.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_folder

from clipos_lab import cli, commands
from clipos_lab.data import FolderDataset, UnreadableFolderWarning
from clipos_lab.files import write_json
from clipos_lab.runfolder import RunFolder
from clipos_lab.sweep.spec import MAX_CELLS, MAX_SWEEP_BYTES, load_sweep

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------ 11. a folder link back up


def test_11_a_link_back_up_lists_no_image_twice_or_under_another_label(tmp_path):
    root = make_folder(tmp_path / "t", classes=("a", "b"), n=2, size=16)
    os.symlink("..", root / "a" / "up")  # ln -s .. t/a/up: the dataset root, seen from class a
    with pytest.warns(UnreadableFolderWarning, match="up"):
        ds = FolderDataset(root)
    assert len(ds) == 4, [s.id for s in ds.samples]  # 2 + 2, nothing through the link
    assert sorted(s.id for s in ds.samples if s.label == 0) == ["a/0.png", "a/1.png"]
    assert any("up" in p for p in ds.unreadable_folders)


def test_11_a_link_into_another_class_is_reported_not_relabelled(tmp_path):
    root = make_folder(tmp_path / "t", classes=("a", "b"), n=2, size=16)
    os.symlink(root / "b", root / "a" / "other")
    with pytest.warns(UnreadableFolderWarning, match="another class"):
        ds = FolderDataset(root)
    assert [s.id for s in ds.samples if s.label == 0] == ["a/0.png", "a/1.png"]


# ------------------------------------------------------------------------ 12. --overwrite keeps user files


def test_12_overwrite_keeps_files_no_run_wrote_inside_run_subfolders(tmp_path):
    target = tmp_path / "out"
    first = RunFolder(target, ["results.csv", "prompts", "manifests"])
    (first.path / "prompts").mkdir()
    (first.path / "prompts" / "CoOp-1-1.safetensors").write_bytes(b"old prompts")
    (first.path / "results.csv").write_text("old")
    first.commit()
    (target / "prompts" / "README.txt").write_text("my notes")
    (target / "manifests").mkdir()
    (target / "manifests" / "my-selection.json").write_text("{}")
    second = RunFolder(target, ["results.csv", "prompts", "manifests"], overwrite=True)
    (second.path / "results.csv").write_text("new")
    second.commit()
    assert (target / "results.csv").read_text() == "new"
    assert not (target / "prompts" / "CoOp-1-1.safetensors").exists()  # the earlier run's file went
    assert (target / "prompts" / "README.txt").read_text() == "my notes"  # the user's stayed
    assert (target / "manifests" / "my-selection.json").read_text() == "{}"


# ------------------------------------------------------------------------ 13. unclear errors


def test_13_a_full_disk_names_the_file_being_written(tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")  # what write() raises: no file name in it

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as err:
        write_json({"a": 1}, tmp_path / "metrics.json")
    assert str(tmp_path / "metrics.json") in str(err.value) and "No space left" in str(err.value)
    assert not list(tmp_path.iterdir())  # no temporary left behind


def test_13_a_full_disk_at_the_top_names_the_output_folder(monkeypatch, capsys):
    def fail(args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(commands, "cmd_splits", fail)
    assert cli.main(["splits", "--out", "somewhere/specs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "No space left on device" in err and "somewhere/specs" in err, err
    assert "Traceback" not in err


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the file-size limit is then an EFBIG error, not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


def test_13_a_file_size_limit_names_the_file(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    out = tmp_path / "specs"
    proc = subprocess.run([sys.executable, "-m", "clipos_lab", "splits", "--out", str(out), "--n", "2"],
                          capture_output=True, text=True, env=env, preexec_fn=_limit_file_size, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "File too large" in lines[0] and str(out) in lines[0], lines[0]


def test_13_the_losing_run_of_two_into_one_new_folder_keeps_its_results(tmp_path):
    target = tmp_path / "out"
    a = RunFolder(target, ["results.csv"])
    b = RunFolder(target, ["results.csv"])  # both started while the folder did not exist
    (a.path / "results.csv").write_text("a")
    (b.path / "results.csv").write_text("b")
    a.commit()
    with pytest.raises(FileExistsError) as err:
        try:
            b.commit()
        except BaseException:
            b.discard()  # what every runner does when its run fails
            raise
    assert (target / "results.csv").read_text() == "a"
    kept = b.kept
    assert kept is not None and str(kept) in str(err.value)
    assert (kept / "results.csv").read_text() == "b" and (kept / "run.json").is_file()
    assert not kept.name.startswith(".")  # visible, and no later run removes it


def _sweep(tmp_path, text: str) -> Path:
    (tmp_path / "nb.ipynb").write_text("{}")
    path = tmp_path / "sweep.yaml"
    path.write_text("notebook: nb.ipynb\n" + text)
    return path


@pytest.mark.parametrize("value", ["1.5", ".nan", ".inf", "0.25", "-3", "true"])
def test_13_a_fractional_or_nan_sweep_timeout_is_refused_when_read(tmp_path, value):
    with pytest.raises(ValueError, match="timeout"):
        load_sweep(_sweep(tmp_path, f"grid:\n  SEEDS: [1, 2]\ntimeout: {value}\n"))


def test_13_a_whole_timeout_written_as_a_float_is_an_int(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, "grid:\n  SEEDS: [1, 2]\ntimeout: 1800.0\n"))
    assert sweep.timeout == 1800 and isinstance(sweep.timeout, int)


# ------------------------------------------------------------------------ 14. hostile sweep files

def _bomb(levels: int = 9) -> list[str]:
    """``levels`` YAML lists, each ten aliases of the one before: the last one expands to 10 ** levels strings."""
    lines = ['&l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"&l{k} [{', '.join([f'*l{k - 1}'] * 10)}]" for k in range(1, levels)]
    return lines


def _bomb_sweep(tmp_path, where: str) -> Path:
    if where == "grid":  # every level is a value of one grid axis
        text = "grid:\n  SEEDS: [1, 2]\n  X:\n" + "".join(f"    - {line}\n" for line in _bomb())
    else:  # every level is a fixed parameter
        text = ("parameters:\n" + "".join(f"  P{k}: {line}\n" for k, line in enumerate(_bomb()))
                + "grid:\n  SEEDS: [1, 2]\n")
    return _sweep(tmp_path, text)


@pytest.mark.parametrize("where", ["grid", "parameters"])
def test_14_a_yaml_alias_bomb_is_refused_quickly(tmp_path, where):
    path = _bomb_sweep(tmp_path, where)
    start = time.monotonic()
    with pytest.raises(ValueError, match="aliases|too large|values"):
        load_sweep(path)
    assert time.monotonic() - start < 5


def test_14_a_grid_of_a_billion_cells_is_refused_before_it_is_built(tmp_path):
    values = "[" + ", ".join(str(i) for i in range(1000)) + "]"
    path = _sweep(tmp_path, f"grid:\n  A: {values}\n  B: {values}\n  C: {values}\n")
    start = time.monotonic()
    with pytest.raises(ValueError, match=f"10{{9}}|1000000000 cells|{MAX_CELLS}"):
        load_sweep(path)
    assert time.monotonic() - start < 5


def test_14_a_huge_sweep_file_is_refused_before_parsing(tmp_path):
    path = _sweep(tmp_path, "grid:\n  SEEDS: [1]\n# " + "x" * MAX_SWEEP_BYTES + "\n")
    with pytest.raises(ValueError, match="bytes"):
        load_sweep(path)


def test_14_the_cli_prints_one_line_for_a_bomb(tmp_path, capsys):
    assert cli.main(["sweep", str(_bomb_sweep(tmp_path, "parameters"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err and str(tmp_path / "sweep.yaml") in err, err


def test_14_an_ordinary_sweep_still_loads(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, "parameters:\n  EPOCHS: 3\ngrid:\n  SHOTS: [1, 2]\n  SEEDS: [1, 2, 3]\n"))
    assert len(sweep.cells()) == 6 and math.isclose(sweep.parameters["EPOCHS"], 3)
    json.dumps(sweep.cells())

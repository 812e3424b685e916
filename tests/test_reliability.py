"""Bad inputs and faults across the command line, run folders, names, caches and specs: nothing lost, nothing
outside its folder, no raw tracebacks (the promises of docs/reliability.md).

All use the tiny random model or no model at all, so the file runs in seconds. ``benchmarks/bad_inputs.py`` runs
the same kinds of inputs through the command line and counts the outcomes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import make_folder
from PIL import Image

from clipos_lab import cli, commands
from clipos_lab.clipos.prompts import PromptConfig
from clipos_lab.data import BenchmarkSpec, DataError, FolderDataset, UnreadableFolderWarning, WorldDataset, load_image
from clipos_lab.evaluation import job, runner
from clipos_lab.evaluation.runner import OverlapWarning, run_benchmark
from clipos_lab.evaluation.suite import run_suite
from clipos_lab.features import FeatureBank
from clipos_lab.files import UnsafeNameError, check_name, describe_os_error, ensure_writable_dir, save_safetensors
from clipos_lab.runfolder import RUN_MANIFEST, RunFolder

SPEC = {
    "name": "rel-world",
    "id": {"type": "world", "kind": "object", "shapes": ["circle", "star"], "n_per_class": 3, "seed": 1,
           "image_size": 32},
    "ood": {"textures": {"type": "world", "kind": "background", "n": 3, "seed": 2, "image_size": 32}},
}


def tiny_args(tiny_files) -> list[str]:
    config, checkpoint = tiny_files
    return ["--config", str(config), "--checkpoint", str(checkpoint), "--no-progress"]


def bench(backbone, tmp_path, out, spec=SPEC, seeds=(1,), **kwargs):
    return run_benchmark(BenchmarkSpec.from_dict(spec, base_dir=tmp_path), backbone, methods=["MCM", "CoOp"],
                         shots=(1,), seeds=seeds, prompt=PromptConfig(epochs=1, progress=False), out_dir=out,
                         cache=tmp_path / "cache", progress=False, **kwargs)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])


# --------------------------------------------------------------------------------------- 1. splits


def test_splits_never_rewrite_the_shipped_specs(tmp_path, monkeypatch, capsys):
    from clipos_lab.resources import ASSETS

    repo = Path(cli.__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    from clipos_lab.commands import SPLITS_OUT

    assert cli.build_parser().parse_args(["splits"]).out is None  # each world's default below
    for folder in SPLITS_OUT.values():
        default_out = (repo / folder).resolve()
        assert not default_out.is_relative_to(ASSETS.resolve())
        assert not default_out.is_relative_to((repo / "assets").resolve())
    out = tmp_path / "splits"
    assert cli.main(["splits", "--out", str(out), "--n", "2", "--seed", "7"]) == 0
    before = snapshot(out)
    assert cli.main(["splits", "--out", str(out), "--n", "2", "--seed", "8"]) == 2  # not asked: refused
    one_error_line(capsys.readouterr().err, "--overwrite", str(out))
    assert snapshot(out) == before
    assert cli.main(["splits", "--out", str(out), "--n", "2", "--seed", "8", "--overwrite"]) == 0
    assert snapshot(out) != before


# ---------------------------------------------------------------------------------- 2. run folders


def test_a_second_run_is_refused_and_overwrite_replaces_the_whole_earlier_run(tiny_backbone, tmp_path):
    out = tmp_path / "out"
    bench(tiny_backbone, tmp_path, out, seeds=(1, 2))
    (out / "notes.txt").write_text("mine")  # not the run's: must survive everything below
    first = snapshot(out)
    assert {"manifests/shots1-seed2.json", "prompts/CoOp-shots1-seed2.safetensors", RUN_MANIFEST} <= set(first)
    listed = {f["path"] for f in json.loads((out / RUN_MANIFEST).read_text())["files"]}
    assert listed == set(first) - {RUN_MANIFEST, "notes.txt"}
    other = {**SPEC, "name": "other", "id": {**SPEC["id"], "seed": 9}}
    with pytest.raises(FileExistsError, match="overwrite"):
        bench(tiny_backbone, tmp_path, out, spec=other, seeds=(3,))
    assert snapshot(out) == first
    bench(tiny_backbone, tmp_path, out, spec=other, seeds=(3,), overwrite=True)
    second = snapshot(out)
    listed = {f["path"] for f in json.loads((out / RUN_MANIFEST).read_text())["files"]}
    assert set(second) == listed | {RUN_MANIFEST, "notes.txt"}  # nothing of the first run is left beside it
    assert "manifests/shots1-seed1.json" not in second and "prompts/CoOp-shots1-seed3.safetensors" in second
    assert second["notes.txt"] == b"mine"
    assert json.loads(second["metrics.json"])["benchmark"] == "other"
    assert not list(tmp_path.glob(".out.staging-*"))


def test_a_run_killed_midway_leaves_the_earlier_run_untouched(tiny_backbone, tmp_path, monkeypatch):
    out = tmp_path / "out"
    bench(tiny_backbone, tmp_path, out)
    first = snapshot(out)

    def killed(*args, **kwargs):  # after manifests and prompts were written, before the tables
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "write_outputs", killed)  # where a run assembles its tables
    with pytest.raises(KeyboardInterrupt):
        bench(tiny_backbone, tmp_path, out, seeds=(5,), overwrite=True)
    assert snapshot(out) == first
    assert not list(tmp_path.glob(".out.staging-*"))
    # a SIGKILL leaves its staging folder: the next run into the same target removes it once its process is gone
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".out.staging-{int(dead.stdout)}-abc"
    leftover.mkdir()
    (leftover / "results.csv").write_text("half")
    monkeypatch.undo()
    bench(tiny_backbone, tmp_path, out, seeds=(5,), overwrite=True)
    assert not leftover.exists()


def test_run_folder_refuses_a_file_and_names_it(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        RunFolder(tmp_path / "f", ["results.csv"])
    fresh = RunFolder(tmp_path / "new", ["results.csv"])
    (fresh.path / "results.csv").write_text("a,b\n")
    fresh.commit({"k": 1})
    assert json.loads((tmp_path / "new" / RUN_MANIFEST).read_text())["files"][0]["path"] == "results.csv"


# ------------------------------------------------------------------------------------ 3. safe names


@pytest.mark.parametrize("name", ["../../escape", "..", ".", "a/b", "a\\b", "", " pad", "bell\x07", "x" * 200])
def test_unsafe_names_are_refused(name):
    with pytest.raises(UnsafeNameError):
        check_name(name, "OOD set name")


@pytest.mark.parametrize("name", ["textures", "near-ood", "world-split1", "Places 365", "iNaturalist_2021", "a.b"])
def test_ordinary_names_pass(name):
    assert check_name(name) == name


def test_spec_names_never_become_paths_outside_their_folder(tiny_backbone, tmp_path):
    bad_ood = {**SPEC, "ood": {"../../escape": SPEC["ood"]["textures"]}}
    with pytest.raises(DataError, match="OOD set name '../../escape'"):
        BenchmarkSpec.from_dict(bad_ood, base_dir=tmp_path)
    with pytest.raises(DataError, match="benchmark name"):
        BenchmarkSpec.from_dict({**SPEC, "name": "../../../x"}, base_dir=tmp_path)
    # a dataset named by code, not by a spec: the cache file name is checked too
    ds = WorldDataset("background", n_per_class=2, image_size=32, name="../../escape")
    cache = tmp_path / "a" / "b" / "cache"
    with pytest.raises(UnsafeNameError):
        FeatureBank.encode(ds, tiny_backbone, cache=cache, progress=False)
    # a suite of specs built directly (no YAML): its names are checked before any folder is made
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    spec.name = "../../../x"
    with pytest.raises(UnsafeNameError):
        run_suite([spec], tiny_backbone, out_dir=tmp_path / "suite", methods=["MCM"], cache=cache, progress=False)
    assert not (tmp_path / "suite").exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


# ------------------------------------------------------------------------------ 4. symlinks, 11. folders


def test_symlink_loops_and_dangling_links_are_counted_skips(tiny_backbone, tmp_path):
    root = make_folder(tmp_path / "data")
    os.symlink("l2.png", root / "cat" / "l1.png")
    os.symlink("l1.png", root / "cat" / "l2.png")
    os.symlink("nowhere.png", root / "dog" / "dangling.png")
    ds = FolderDataset(root)
    assert len(ds) == 9
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bank = FeatureBank.encode(ds, tiny_backbone, cache=tmp_path / "cache", progress=False)
    assert len(bank) == 6 and bank.meta["n_skipped"] == 3
    reasons = " ".join(s["error"] for s in bank.meta["skipped"])
    assert "loop of symbolic links" in reasons and "does not exist" in reasons
    assert sum("skipping unreadable image" in str(w.message) for w in caught) == 3


def test_unreadable_subfolders_are_reported(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data")
    (root / "cat" / "locked").mkdir()
    Image.new("RGB", (8, 8)).save(root / "cat" / "locked" / "x.png")
    real = os.scandir

    def scandir(path="."):  # what a folder without read permission does (tests may run as root)
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(UnreadableFolderWarning, match="locked.*Permission denied"):
        ds = FolderDataset(root)
    assert len(ds) == 6 and len(ds.unreadable_folders) == 1
    # a class folder that cannot be listed is an error naming it, not an "empty class"
    monkeypatch.setattr(os, "scandir", lambda path=".": (_ for _ in ()).throw(PermissionError(13, "Permission denied",
                                                                                               str(path))))
    with pytest.raises(DataError, match="cannot read class folder .*cat.*Permission denied"):
        FolderDataset(root)


def test_linked_folders_are_followed_once(tmp_path):
    root = make_folder(tmp_path / "data")
    extra = make_folder(tmp_path / "more", n=2) / "cat"
    os.symlink(extra, root / "cat" / "linked")
    os.symlink(".", root / "dog" / "loop")
    with pytest.warns(UnreadableFolderWarning, match="loop"):
        ds = FolderDataset(root)
    assert len(ds) == 8  # 3 + 3 of its own, 2 through the link; the loop adds nothing and is reported


# --------------------------------------------------------------------- 5. writability, top-level OSError


def test_an_unwritable_cache_fails_before_encoding_with_one_line(tiny_files, tmp_path, monkeypatch, capsys):
    (tmp_path / "f").write_text("not a folder")
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "f"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    calls = []
    from clipos_lab.features import FeatureStore

    monkeypatch.setattr(FeatureStore, "ensure", lambda self, *a: calls.append(a))
    assert cli.main(["encode", str(spec), *tiny_args(tiny_files)]) == 2
    one_error_line(capsys.readouterr().err, str(tmp_path / "f"))
    assert calls == []  # refused before any image was encoded
    with pytest.raises(OSError, match="cannot write to the output folder"):
        ensure_writable_dir(tmp_path / "f" / "sub", "output folder")


def test_every_oserror_at_the_top_is_one_line_naming_the_path(monkeypatch, capsys):
    def fail(args):
        raise PermissionError(13, "Permission denied", "/data/locked.yaml")

    monkeypatch.setattr(commands, "cmd_splits", fail)
    assert cli.main(["splits"]) == 2
    one_error_line(capsys.readouterr().err, "Permission denied", "/data/locked.yaml")
    assert describe_os_error(OSError(18, "Invalid cross-device link", "/x/a", None, "/y/b")) == \
        "Invalid cross-device link: /x/a: /y/b"


# --------------------------------------------------------------------------------------- 6. pocket train


@pytest.mark.parametrize("options, words", [('{"nope": 1}', "nope"), ('{"steps": "many"}', "steps"),
                                            ("[1, 2]", "JSON object"), ("{steps: 3}", "not valid JSON")])
def test_pocket_train_options_are_checked(tmp_path, capsys, options, words):
    assert cli.main(["pocket", "train", "--out", str(tmp_path / "run"), "--options", options, "--no-progress"]) == 2
    one_error_line(capsys.readouterr().err, words)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------- 7, 8, 9, 13. numbers checked where they are parsed


@pytest.mark.parametrize("argv, words", [
    (["benchmark", "--epochs", "0"], "--epochs must be at least 1"),
    (["benchmark", "--epochs", "-1"], "--epochs must be at least 1"),
    (["benchmark", "--shots", ""], "--shots is empty"),
    (["benchmark", "--seeds", ""], "--seeds is empty"),
    (["benchmark", "--seeds", "1,1"], "repeats [1]"),
    (["benchmark", "--shots", "1.5"], "--shots takes a whole number, got '1.5'"),
    (["benchmark", "--shots", "abc"], "--shots takes a whole number, got 'abc'"),
    (["benchmark", "--seeds", "-5"], "--seeds must be at least 0"),
    (["evaluate", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["encode", "x", "--batch-size", "-3"], "--batch-size must be at least 1"),
    (["encode", "x", "--surgery-blocks", "-1"], "--surgery-blocks must be at least 0"),
    (["pocket", "train", "--max-steps", "0"], "--max-steps must be at least 1"),
    (["splits", "--n", "0"], "--n must be at least 1"),
    (["splits", "--seed", "-1"], "--seed must be at least 0"),
    (["encode", "x", "--device", "gpu9"], "argument --device: device 'gpu9' is not a torch device"),
])
def test_numbers_are_checked_where_parsed_and_named(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


def test_the_library_refuses_what_the_command_line_refuses(tiny_backbone, tmp_path):
    with pytest.raises(ValueError, match="epochs=0"):
        PromptConfig(epochs=0)
    with pytest.raises(ValueError, match="epochs=-1"):
        PromptConfig(epochs=-1)
    spec = BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path)
    for kwargs, words in (({"seeds": ()}, "need at least one shots value and one seed"),
                          ({"shots": ()}, "need at least one shots value and one seed"),
                          ({"seeds": (1, 1)}, "repeats [1]"), ({"seeds": (-5,)}, ">= 0"),
                          ({"batch_size": 0}, "batch_size=0")):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            run_benchmark(spec, tiny_backbone, methods=["MCM", "CoOp"], cache=False, progress=False,
                          **{"shots": (1,), "seeds": (1,), **kwargs})


def test_epochs_zero_is_not_read_as_the_default(tiny_files, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("clipos_lab.evaluation.runner.run_benchmark", lambda *a, **k: seen.append(k) or 1 / 0)
    args = cli.build_parser().parse_args(["benchmark", "--epochs", "3", *tiny_args(tiny_files)])
    with pytest.raises(ZeroDivisionError):
        cli.cmd_benchmark(args)
    assert seen[0]["prompt"].epochs == 3 and seen[0]["shots"] == [1, 2] and seen[0]["seeds"] == [1, 2, 3]


def test_cuda_without_a_gpu_says_so(monkeypatch, capsys):
    from clipos_lab.backbone import Backbone, BackboneError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--device", "cuda"])
    assert "no CUDA GPU" in capsys.readouterr().err
    with pytest.raises(BackboneError, match="no CUDA GPU"):
        Backbone.load(device="cuda")


def test_nan_features_name_the_cache_file(tiny_backbone, tmp_path):
    # a cache whose bytes were changed is caught by its row checksums (tests/test_streaming.py); features that are
    # NaN when computed (broken weights): the runner refuses them, naming the set and the cache folder
    ds = WorldDataset("background", n_per_class=4, image_size=32, name="nan-set")
    bank = FeatureBank.encode(ds, tiny_backbone, cache=tmp_path / "cache", progress=False)
    path = Path(bank.meta["cache_path"])
    rebuilt = bank.subset(range(len(bank)))  # a writable copy of the memory-mapped bank
    rebuilt.meta["cache_path"] = str(path)
    rebuilt.global_[0, 0] = float("nan")
    banks = runner.Banks(rebuilt, rebuilt, {"other": rebuilt.subset([1, 2])}, ds)
    with pytest.raises(DataError, match=f"ID test has 1 of 4 .*{path}"):
        runner.check_banks(banks)


def test_an_ood_set_identical_to_the_id_set_warns(tiny_backbone, tmp_path):
    same = {**SPEC, "ood": {"copy": SPEC["id"], "textures": SPEC["ood"]["textures"]}}
    with pytest.warns(OverlapWarning, match="'copy' is identical to the ID test set"):
        runner.encode_banks(BenchmarkSpec.from_dict(same, base_dir=tmp_path), tiny_backbone,
                            cache=tmp_path / "cache", progress=False)
    with pytest.warns(OverlapWarning, match="few-shot pool are also ID test images"):
        runner.encode_banks(BenchmarkSpec.from_dict({**SPEC, "id_train": SPEC["id"]}, base_dir=tmp_path),
                            tiny_backbone, cache=tmp_path / "cache", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverlapWarning)
        runner.encode_banks(BenchmarkSpec.from_dict(SPEC, base_dir=tmp_path), tiny_backbone,
                            cache=tmp_path / "cache", progress=False)


# ---------------------------------------------------------------------------------------------- 14.


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 0, 0))
    img.paste((0, 0, 200), (0, 0, 10, 20))  # blue on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    img.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_image(tmp_path / "phone.jpg")
    assert loaded.size == (20, 40)
    top = np.asarray(loaded)[2, 10]
    assert top[2] > 150 and top[0] < 80  # the blue edge is now at the top, as a viewer shows it


def test_sweep_cleans_up_what_a_killed_cell_left(tmp_path, monkeypatch):
    import nbformat
    import papermill

    from clipos_lab.sweep import execute as E
    from clipos_lab.sweep.spec import load_sweep

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("OUTPUT_DIR = '.'", metadata={"tags": ["parameters"]})]
    nbformat.write(nb, str(tmp_path / "nb.ipynb"))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"notebook": "nb.ipynb", "output": str(tmp_path / "out"),
                                                         "grid": {"A": [1]}}))
    sweep = load_sweep(tmp_path / "sweep.yaml")
    folder = sweep.output / "runs" / "A-1"
    folder.mkdir(parents=True)
    stale = [folder / ".notebook.ipynb.k1ll3d.tmp", folder / ".status.json.x.tmp"]
    for p in stale:
        p.write_text("{half")

    def fake_execute(input_path, output_path, parameters, **kwargs):
        nbformat.write(nb, output_path)
        Path(parameters["OUTPUT_DIR"], "metrics.json").write_text('{"score": 1}')

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    record = E.RunRecord("A-1", folder, {"A": 1})
    E._execute(sweep, record, {"A": 1, "OUTPUT_DIR": str(folder)}, None)
    assert record.ok and not any(p.exists() for p in stale)
    assert not list(folder.glob(".*.tmp"))


def _metadata_keys(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        return list(json.loads(fh.read(n))["__metadata__"])


def test_safetensors_are_byte_reproducible(tiny_backbone, tmp_path):
    from clipos_lab.clipos.prompts import PromptLearner

    meta = {k: str(i) for i, k in enumerate("zqmbaxfk")}
    save_safetensors({"a": torch.ones(3)}, tmp_path / "x.safetensors", metadata=meta)
    assert _metadata_keys(tmp_path / "x.safetensors") == sorted(meta)
    learner = PromptLearner(tiny_backbone, ["cat", "dog"], n_ctx=2, unknown=True)
    learner.save(tmp_path / "p.safetensors", extra={"z": 1, "a": 2})
    assert _metadata_keys(tmp_path / "p.safetensors") == sorted(_metadata_keys(tmp_path / "p.safetensors"))
    assert PromptLearner.load(tmp_path / "p.safetensors", tiny_backbone).extra == {"a": 2, "z": 1}
    # (feature caches are store folders of raw arrays and JSON, written in a fixed order: see test_streaming.py)
    # and across processes (safetensors' own order changes with each process's hash seed)
    code = ("import sys, torch; from clipos_lab.files import save_safetensors; "
            "save_safetensors({'a': torch.ones(2)}, sys.argv[1], metadata={k: k for k in 'zqmbaxfkr'})")
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parents[1])}
    for name in ("one", "two"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True, env=env)
    assert (tmp_path / "one").read_bytes() == (tmp_path / "two").read_bytes()

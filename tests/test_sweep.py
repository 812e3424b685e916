"""Sweeps: a tiny notebook over a 2 x 2 grid (one cell fails, then is retried), resume, aggregation, bad files."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from clipos_lab import sweep as S
from clipos_lab.sweep import execute as E

PARAMETERS = """\
A = 0
B = "x"
OUTPUT_DIR = "."
COUNTER = ""
FAIL_ON = ""
FIXED_MARKER = ""
"""

COUNT = """\
import json, os
import clipos_lab  # the kernel starts in tmp_path, yet must import the package
with open(COUNTER, "a") as fh:
    fh.write(f"{A}-{B}\\n")
"""

MAYBE_FAIL = """\
if f"{A}-{B}" == FAIL_ON and not os.path.exists(FIXED_MARKER):
    raise RuntimeError(f"boom for A={A}")
"""

WRITE_METRICS = """\
with open(os.path.join(OUTPUT_DIR, "metrics.json"), "w") as fh:
    json.dump({"score": A + 0.5, "extra": {"n": len(B)}, "name": "not a number"}, fh)
"""


def _squash(markdown: str) -> str:
    """A Markdown table with the padding of its cells removed."""
    return re.sub(r" *\| *", " | ", markdown)


def write_notebook(path):
    """A four-cell papermill notebook: parameters, count the execution, fail on request, write metrics.json."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(COUNT), nbformat.v4.new_code_cell(MAYBE_FAIL),
                nbformat.v4.new_code_cell(WRITE_METRICS)]
    nbformat.write(nb, str(path))
    return path


def write_sweep(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_sweep_records_failure_aggregates_and_resumes(tmp_path):
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    write_notebook(nb_dir / "tiny.ipynb")
    counter, marker = tmp_path / "counter.txt", tmp_path / "fixed"
    sweep_file = write_sweep(nb_dir / "sweep.yaml", {
        "notebook": "tiny.ipynb",
        "output": str(tmp_path / "out"),
        "parameters": {"COUNTER": str(counter), "FAIL_ON": "2-boom", "FIXED_MARKER": str(marker)},
        "grid": {"A": [1, 2], "B": ["x", "boom"]},
        "timeout": 120,
    })
    out = tmp_path / "out"

    result = S.run_sweep(sweep_file, log=False)
    slugs = [r.slug for r in result.runs]
    assert slugs == ["A-1__B-x", "A-1__B-boom", "A-2__B-x", "A-2__B-boom"]
    assert [r.slug for r in result.failed] == ["A-2__B-boom"]
    assert counter.read_text().split() == ["1-x", "1-boom", "2-x", "2-boom"]

    status = json.loads((out / "runs" / "A-2__B-boom" / "status.json").read_text())
    assert status["status"] == "failed" and "RuntimeError: boom for A=2" in status["error"]
    assert status["parameters"]["A"] == 2 and status["cell"] == {"A": 2, "B": "boom"}
    assert (out / "runs" / "A-2__B-boom" / "notebook.ipynb").exists()  # the failed notebook is kept
    ok_status = json.loads((out / "runs" / "A-1__B-x" / "status.json").read_text())
    assert ok_status["status"] == "ok"
    assert ok_status["parameters"]["OUTPUT_DIR"] == str(out / "runs" / "A-1__B-x")

    with open(out / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["run"] for r in rows] == ["A-1__B-x", "A-1__B-boom", "A-2__B-x"]
    assert [float(r["score"]) for r in rows] == [1.5, 1.5, 2.5] and rows[1]["extra/n"] == "4"
    assert "name" not in rows[0]  # only numbers are aggregated

    md = (out / "sweep.md").read_text()
    assert md.strip() == str(result)
    assert "| A-2__B-boom | failed |" in _squash(md) and "boom for A=2" in md
    index = (out / "index.html").read_text()
    for slug in slugs:
        assert f'href="runs/{slug}/notebook.html"' in index
        assert (out / "runs" / slug / "notebook.html").exists()
    assert "failed" in index
    assert not list(out.rglob("*.tmp"))  # every write went through atomic_path and was renamed

    # resume: the three finished cells are skipped, the failed one runs again (and now succeeds)
    kept = {s: (out / "runs" / s / "notebook.ipynb").stat().st_mtime_ns for s in slugs[:3]}
    marker.write_text("fixed")
    again = S.run_sweep(sweep_file, log=False)
    assert counter.read_text().split() == ["1-x", "1-boom", "2-x", "2-boom", "2-boom"]
    assert {s: (out / "runs" / s / "notebook.ipynb").stat().st_mtime_ns for s in slugs[:3]} == kept
    assert [r.executed for r in again.runs] == [False, False, False, True]
    assert again.failed == [] and len(again.rows) == 4
    assert json.loads((out / "runs" / "A-2__B-boom" / "status.json").read_text())["status"] == "ok"
    assert "failed" not in (out / "sweep.md").read_text()


@pytest.fixture
def notebook(tmp_path):
    return write_notebook(tmp_path / "tiny.ipynb")


@pytest.mark.parametrize("data, key, words", [
    ({"notebook": "missing.ipynb", "grid": {"A": [1]}}, "notebook", "does not exist"),
    ({"notebook": "tiny.ipynb", "grid": {}}, "grid", "non-empty"),
    ({"notebook": "tiny.ipynb"}, "grid", "non-empty"),
    ({"notebook": "tiny.ipynb", "grid": {"A": 3}}, "grid.A", "list"),
    ({"notebook": "tiny.ipynb", "grid": {"A": []}}, "grid.A", "empty"),
    ({"notebook": "tiny.ipynb", "grid": {"A": [1, 1]}}, "grid.A", "duplicate"),
    ({"notebook": "tiny.ipynb", "grid": {"A": [1]}, "seeds": [1]}, "seeds", "unknown key"),
    ({"notebook": "tiny.ipynb", "grid": {"A": [1]}, "parameters": {"OUTPUT_DIR": "x"}}, "parameters", "OUTPUT_DIR"),
    ({"notebook": "tiny.ipynb", "grid": {"A": [1]}, "parameters": {"A": 2}}, "grid.A", "fixed parameter"),
    ({"notebook": "tiny.ipynb", "grid": {"A+B": [[1, 2], [3]]}}, "grid.A+B", "list of 2"),
    ({"notebook": "tiny.ipynb", "grid": {"not-a-name": [1]}}, "grid.not-a-name", "identifier"),
    ({"notebook": "tiny.ipynb", "grid": {"A": [1]}, "timeout": -1}, "timeout", "positive"),
])
def test_bad_sweep_files_name_file_and_key(tmp_path, monkeypatch, notebook, data, key, words):
    monkeypatch.chdir(tmp_path)  # the default output folder is relative to the current folder
    path = write_sweep(tmp_path / "bad.yaml", data)
    with pytest.raises(ValueError) as info:
        S.run_sweep(path, log=False)
    message = str(info.value)
    assert str(path) in message and repr(key) in message and words in message
    assert not (tmp_path / "outputs").exists()  # nothing runs before the whole file checks out


def test_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        S.load_sweep(path)


def test_cells_slugs_and_linked_axes(tmp_path, notebook):
    path = write_sweep(tmp_path / "s.yaml", {
        "notebook": "tiny.ipynb",
        "grid": {"MODEL+PRETRAINED": [["pocket", None], ["ViT-B-16", "openai"]], "SHOTS": ["1,2", "4"]}})
    sweep = S.load_sweep(path, out_dir=tmp_path / "o")
    assert sweep.output == (tmp_path / "o").resolve() and sweep.grid_names == ["MODEL", "PRETRAINED", "SHOTS"]
    cells = sweep.cells()
    assert cells[0] == {"MODEL": "pocket", "PRETRAINED": None, "SHOTS": "1,2"}
    assert S.cell_slugs(cells) == ["MODEL-pocket__PRETRAINED-None__SHOTS-1_2", "MODEL-pocket__PRETRAINED-None__SHOTS-4",
                                   "MODEL-ViT-B-16__PRETRAINED-openai__SHOTS-1_2",
                                   "MODEL-ViT-B-16__PRETRAINED-openai__SHOTS-4"]
    # values that differ only in unsafe characters still get their own folders, stably
    clash = S.cell_slugs([{"X": "a/b"}, {"X": "a b"}])
    assert len(set(clash)) == 2 and clash == S.cell_slugs([{"X": "a/b"}, {"X": "a b"}])
    assert all(s.startswith("X-a_b__") for s in clash)
    assert len(S.cell_slug({"X": "y" * 500})) <= 120


def test_metric_rows_formats():
    assert S.metric_rows({"table": [{"k": "a", "v": 1, "skip": [1]}, {"k": "b", "v": 2}]}) == [
        {"k": "a", "v": 1}, {"k": "b", "v": 2}]
    summary = [
        {"method": "MCM", "score": "mcm", "shots": 0, "ood": "Average", "metric": "AUROC", "mean": 0.9, "std": 0.0},
        {"method": "MCM", "score": "mcm", "shots": 0, "ood": "Far", "metric": "AUROC", "mean": 0.8, "std": 0.0},
        {"method": "MCM", "score": "mcm", "shots": 0, "ood": "ID", "metric": "ACC", "mean": 0.7, "std": 0.0},
        {"method": "CoOp", "score": "mcm", "shots": 2, "ood": "Average", "metric": "FPR95", "mean": 0.3, "std": 0.1},
    ]
    assert S.metric_rows({"summary": summary, "timings": {"total_s": 3}}) == [
        {"method": "MCM", "score": "mcm", "shots": 0, "AUROC": 0.9, "AUROC_std": 0.0, "ACC": 0.7, "ACC_std": 0.0},
        {"method": "CoOp", "score": "mcm", "shots": 2, "FPR95": 0.3, "FPR95_std": 0.1}]
    assert S.metric_rows({"a": 1, "b": {"c": 2.5, "d": "x"}, "e": True}) == [{"a": 1, "b/c": 2.5}]


def test_resume_needs_same_parameters_and_readable_metrics(tmp_path, notebook):
    folder = tmp_path / "run"
    folder.mkdir()
    params = {"EPOCHS": 10, "A": 1, "OUTPUT_DIR": str(folder)}
    (folder / "status.json").write_text(json.dumps(
        {"status": "ok", "parameters": params, "notebook": str(notebook), "seconds": 1.0}))
    (folder / "metrics.json").write_text('{"score": 1}')
    fresh = lambda: S.RunRecord("run", folder, {"A": 1})  # noqa: E731
    assert E._finished(fresh(), params, notebook)
    assert E._finished(fresh(), {**params, "OUTPUT_DIR": "/moved"}, notebook)  # moving the output folder is fine
    assert not E._finished(fresh(), {**params, "EPOCHS": 50}, notebook)  # a changed fixed parameter re-runs
    (folder / "metrics.json").write_text("{truncated")
    assert not E._finished(fresh(), params, notebook)


def test_the_kernel_imports_this_checkout(monkeypatch):
    root = str(Path(E.__file__).resolve().parents[2])
    monkeypatch.delenv("PYTHONPATH", raising=False)
    with E._package_on_kernel_path():
        assert os.environ["PYTHONPATH"] == root
    assert "PYTHONPATH" not in os.environ
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    with E._package_on_kernel_path():
        assert os.environ["PYTHONPATH"] == os.pathsep.join([root, "/elsewhere"])
    assert os.environ["PYTHONPATH"] == "/elsewhere"


def _results_csv(folder: Path, mcm: float, clipos: dict[int, float]) -> None:
    """A benchmark results.csv with zero-shot MCM and CLIP-OS draws (seed -> OOD-average AUROC)."""
    folder.mkdir(parents=True)
    rows = [dict(method="MCM", score="MCM", shots=0, seed=0, ood="Average", metric="AUROC", value=mcm)]
    rows += [dict(method="CLIP-OS", score="MCM", shots=1, seed=s, ood="Average", metric="AUROC", value=v)
             for s, v in clipos.items()]
    with open(folder / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_sweep_report_shows_the_spread_over_draws_per_grid_value(tmp_path):
    """Benchmarks (SPEC) and draws are pooled, other axes (EPOCHS) kept apart; each run's gain is against its
    own zero-shot MCM; a run without results.csv (another notebook) or that failed adds nothing."""
    from types import SimpleNamespace

    from clipos_lab.sweep.record import RunRecord
    from clipos_lab.sweep.report import SweepResult, draw_spread

    runs = []
    values = {("a", 2): (0.90, {1: 0.92, 2: 0.89}), ("b", 2): (0.80, {1: 0.83, 2: 0.84}),
              ("a", 9): (0.90, {1: 0.95, 2: 0.96}), ("b", 9): (0.80, {1: 0.70, 2: 0.85})}
    for (spec, epochs), (mcm, draws) in values.items():
        folder = tmp_path / f"{spec}-{epochs}"
        _results_csv(folder, mcm, draws)
        runs.append(RunRecord(folder.name, folder, {"SPEC": spec, "EPOCHS": epochs}, status="ok"))
    runs.append(RunRecord("failed", tmp_path / "nothing", {"SPEC": "c", "EPOCHS": 2}, status="failed"))
    result = SweepResult(SimpleNamespace(grid_names=["SPEC", "EPOCHS"]), runs)
    summary, text = draw_spread(result)
    by_epochs = summary.set_index("EPOCHS")
    assert list(summary["n_draws"]) == [4, 4]
    assert by_epochs.loc["2", "worst"] == pytest.approx(-0.01)
    assert by_epochs.loc["9", "worst"] == pytest.approx(-0.10)
    assert by_epochs.loc["9", "beats_baseline"] == pytest.approx(0.75)
    assert "EPOCHS" in text and "+1.50" in text  # the mean gain at 9 epochs: (5 + 6 - 10 + 5) / 4 points

    empty, text = draw_spread(SweepResult(SimpleNamespace(grid_names=["SPEC"]), runs[-1:]))
    assert empty.empty and text == ""

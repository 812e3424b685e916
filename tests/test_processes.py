"""``--executor processes``: a pool of worker processes on this machine writes the same files as a local run,
raises a cell's own error, names the option to change when a worker dies, and checks its options."""

from __future__ import annotations

import os

import pytest
from helpers import GRID_ANOMALY, files_of, grid_options, local_grid_run

from clipos_lab import threads
from clipos_lab.anomaly import run_anomaly
from clipos_lab.anomaly.data import AnomalySpec
from clipos_lab.cli import main
from clipos_lab.evaluation.executor import Cell, ProcessExecutor, make_executor
from clipos_lab.evaluation.suite import run_suite

ANOMALY = {"shots": [0, 2], "seeds": [1], "progress": False,
           "method_options": {m: {"layers": [-2, -1]} for m in ("patch-memory", "mutual")}}


@pytest.mark.slow
def test_a_suite_and_an_anomaly_run_on_two_processes_write_the_same_files_as_a_local_run(tiny_backbone, tmp_path):
    anomaly = {**ANOMALY, "cache": tmp_path / "cache"}
    specs, expected = local_grid_run(tiny_backbone, tmp_path, anomaly=anomaly)
    with make_executor("processes", processes=2) as executor:
        run_suite(specs, tiny_backbone, out_dir=tmp_path / "pool", cache=tmp_path / "cache", progress=False,
                  executor=executor, **grid_options())
        run_anomaly(AnomalySpec("tiny-anomaly", GRID_ANOMALY), tiny_backbone, out_dir=tmp_path / "anomaly-pool",
                    executor=executor, **anomaly)
    got = files_of(tmp_path / "pool")
    assert sorted(got) == sorted(expected) and any(name.startswith("split2/prompts/") for name in got)
    for name in expected:  # results, summaries, ranking, manifests and learned prompts, byte for byte
        assert got[name] == expected[name], name
    for name in ("results.csv", "summary.csv"):
        assert (tmp_path / "anomaly-pool" / name).read_bytes() == (tmp_path / "anomaly-local" / name).read_bytes()


@pytest.mark.slow
def test_a_sweep_on_two_processes_writes_the_table_of_a_local_one(tmp_path):
    from test_sweep import write_notebook, write_sweep

    from clipos_lab.sweep import run_sweep

    notebook = write_notebook(tmp_path / "nb.ipynb")
    sweeps = {where: write_sweep(tmp_path / f"{where}.yaml", {
        "notebook": str(notebook), "output": str(tmp_path / f"sweep-{where}"),
        "parameters": {"COUNTER": str(tmp_path / f"count-{where}.txt")}, "grid": {"A": [1, 2], "B": ["x", "yy"]}})
        for where in ("local", "pool")}
    run_sweep(sweeps["local"], log=False, render=False)
    with make_executor("processes", processes=2) as executor:
        run_sweep(sweeps["pool"], log=False, render=False, executor=executor)
    local_csv = (tmp_path / "sweep-local" / "sweep.csv").read_text()
    assert (tmp_path / "sweep-pool" / "sweep.csv").read_text() == local_csv and "2,yy" in local_csv.replace('"', '')
    assert sorted((tmp_path / "count-pool.txt").read_text().split()) == ["1-x", "1-yy", "2-x", "2-yy"]


def test_results_come_back_in_order_and_a_cells_error_is_raised_as_itself():
    with ProcessExecutor(processes=2) as executor:
        assert executor.run([Cell(pow, (2, k), f"2^{k}") for k in range(6)], progress=False) == [1, 2, 4, 8, 16, 32]
        with pytest.raises(ValueError, match="invalid literal"):
            executor.run([Cell(int, ("12",), "ok"), Cell(int, ("twelve",), "bad")], progress=False)
        assert executor.run([Cell(abs, (-3,), "again")], progress=False) == [3]  # the pool still works


def test_a_dead_worker_names_the_option_and_the_next_run_starts_a_new_pool():
    with ProcessExecutor(processes=1) as executor:
        with pytest.raises(RuntimeError, match="fewer --processes"):
            executor.run([Cell(os._exit, (3,), "dies")], progress=False)
        assert executor.run([Cell(max, (1, 5), "after")], progress=False) == [5]


def test_workers_share_the_cores():
    try:
        threads.share_cores(1)
        assert threads.all_cores() == 1 and threads.threads_for(1e15) in (1, threads.requested())
    finally:
        threads.share_cores(None)
    assert ProcessExecutor(processes=1).cores_each == threads.all_cores()
    with pytest.raises(ValueError, match="at least 1"):
        threads.share_cores(0)


def test_processes_options_are_checked(capsys):
    assert make_executor("processes").processes == threads.all_cores()
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="--processes"):
            ProcessExecutor(processes=bad)
    with pytest.raises(ValueError, match="--processes is an option of --executor processes"):
        make_executor("local", processes=2)
    with pytest.raises(ValueError, match="--address"):
        make_executor("processes", address="auto")
    with pytest.raises(SystemExit):
        main(["benchmark", "default", "--out", "x", "--executor", "processes", "--processes", "0"])
    assert "--processes must be at least 1" in capsys.readouterr().err
    for args in (["--processes", "2"], ["--executor", "processes", "--task-cpus", "2"]):
        assert main(["benchmark", "default", "--out", "x", *args]) == 2
    err = capsys.readouterr().err
    assert "--processes is an option of --executor processes" in err and "--task-cpus" in err
    assert "Traceback" not in err

"""Grids on Ray give the same files as local runs: a local Ray cluster, a two-node cluster on loopback, and a
worker killed mid-cell (Ray retries its cell; the results still match)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import GRID_ANOMALY, files_of, grid_options, local_grid_run

from clipos_lab.anomaly import run_anomaly
from clipos_lab.anomaly.data import AnomalySpec
from clipos_lab.backbone import Backbone
from clipos_lab.evaluation.executor import LocalExecutor, make_executor
from clipos_lab.evaluation.suite import run_suite

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

ANOMALY = {"data": GRID_ANOMALY}
GRID = grid_options()


RAY_ENV = {"RAY_AUTH_MODE": "disabled"}  # a test cluster on loopback needs no token


@pytest.fixture(autouse=True)
def ray_env(monkeypatch):
    for k, v in RAY_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def one_thread():
    """Ray tasks run with one intra-op thread (task_cpus=1); the local reference run does too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def local_run(tiny_backbone, tmp_path, one_thread):
    return local_grid_run(tiny_backbone, tmp_path)


def test_a_suite_and_a_sweep_on_a_local_ray_cluster_write_the_same_files(local_run, tiny_backbone, tmp_path):
    from test_sweep import write_notebook, write_sweep

    from clipos_lab.sweep import run_sweep

    specs, expected = local_run
    notebook = write_notebook(tmp_path / "nb.ipynb")
    sweeps = {}
    for where in ("local", "ray"):
        sweeps[where] = write_sweep(tmp_path / f"{where}.yaml", {
            "notebook": str(notebook), "output": str(tmp_path / f"sweep-{where}"),
            "parameters": {"COUNTER": str(tmp_path / f"count-{where}.txt")}, "grid": {"A": [1, 2], "B": ["x", "yy"]}})
    run_sweep(sweeps["local"], log=False, render=False)
    anomaly_spec = AnomalySpec("tiny-anomaly", ANOMALY["data"])
    anomaly = {"shots": [0, 2], "seeds": [1], "progress": False, "cache": tmp_path / "cache",
               "method_options": {m: {"layers": [-2, -1]} for m in ("patch-memory", "mutual")}}  # 2 blocks
    # a fresh backbone: its text cache holds no embedding computed in another batch (see docs/cluster.md)
    fresh = Backbone.load(**tiny_backbone.load_args)
    run_anomaly(anomaly_spec, fresh, out_dir=tmp_path / "anomaly-local", **anomaly)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        executor = make_executor("ray", task_cpus=1)
        run_suite(specs, tiny_backbone, out_dir=tmp_path / "ray", cache=tmp_path / "cache", progress=False,
                  executor=executor, **GRID)
        run_sweep(sweeps["ray"], log=False, render=False, executor=executor)
        run_anomaly(anomaly_spec, fresh, out_dir=tmp_path / "anomaly-ray", executor=executor, **anomaly)
    finally:
        ray.shutdown()
    got = files_of(tmp_path / "ray")
    assert sorted(got) == sorted(expected)
    for name in expected:  # results, summaries, manifests and learned prompts, byte for byte
        assert got[name] == expected[name], name
    local_csv = (tmp_path / "sweep-local" / "sweep.csv").read_text()
    assert (tmp_path / "sweep-ray" / "sweep.csv").read_text() == local_csv and "1,x" in local_csv.replace('"', '')
    assert sorted((tmp_path / "count-ray.txt").read_text().split()) == ["1-x", "1-yy", "2-x", "2-yy"]
    for name in ("results.csv", "summary.csv"):
        assert (tmp_path / "anomaly-ray" / name).read_bytes() == (tmp_path / "anomaly-local" / name).read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli(*args, env):
    ray_bin = Path(sys.executable).with_name("ray")
    return subprocess.run([str(ray_bin), *args], env=env, capture_output=True, text=True, timeout=300)


def test_two_nodes_on_loopback_and_a_killed_worker_give_the_same_results(local_run, tiny_backbone, tmp_path):
    psutil = pytest.importorskip("psutil")
    specs, expected = local_run
    env = {**os.environ, **RAY_ENV}
    port = _free_port()
    head_tmp, worker_tmp = Path("/tmp") / f"ray-h{port}", Path("/tmp") / f"ray-w{port}"  # short: socket paths
    started = _ray_cli("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                       "--include-dashboard=false", f"--temp-dir={head_tmp}", env=env)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        joined = _ray_cli("start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                          f"--temp-dir={worker_tmp}", env=env)
        assert joined.returncode == 0, joined.stderr[-2000:]
        killed: list[int] = []
        stop = threading.Event()

        def kill_one_busy_worker():  # the first worker seen running a cell dies mid-cell, once
            while not stop.is_set() and not killed:
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    cmd = " ".join(proc.info["cmdline"] or [])
                    if cmd.startswith("ray::_call"):
                        time.sleep(0.3)  # inside the cell
                        proc.kill()
                        killed.append(proc.info["pid"])
                        return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
        killer.start()
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        try:
            assert len(ray.nodes()) == 2
            run_suite(specs, tiny_backbone, out_dir=tmp_path / "cluster", cache=tmp_path / "cache",
                      progress=False, executor=make_executor("ray", task_cpus=1), **GRID)
        finally:
            stop.set()
            ray.shutdown()
        assert killed, "no worker was seen running a cell"
        got = files_of(tmp_path / "cluster")
        assert {k: v for k, v in got.items()} == expected
    finally:
        _ray_cli("stop", "--force", env=env)
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)


def test_executor_choice_is_checked():
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ValueError, match="executor 'dask'"):
        make_executor("dask")
    with pytest.raises(ValueError, match="--address"):
        make_executor("local", address="auto")
    with pytest.raises(ValueError, match="--task-cpus"):
        make_executor("ray", task_cpus=0)

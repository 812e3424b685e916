"""The wheel is a complete product: it ships the pocket model and every spec, and the offline default benchmark
runs from an empty folder outside the checkout with the package installed from the wheel (not editable): one
few-shot method, one shot, one seed, which touches every stage (encoding, the draw, prompt learning, scoring,
the tables and the run folder) in a fraction of the full run's time."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(out), str(ROOT)], check=True, cwd=out)
    (path,) = out.glob("clipos_lab-*.whl")
    return path


def test_wheel_contains_the_pocket_model_and_every_shipped_spec(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("pocket-vit.safetensors", "pocket-vit.safetensors.sha256", "pocket-vit.json"):
        assert f"clipos_lab/assets/pocket/{f}" in names
    for f in ("pocket-clipn.safetensors", "pocket-clipn.safetensors.sha256"):  # CLIPN's no tower for the pocket model
        assert f"clipos_lab/assets/clipn/{f}" in names
    assert "clipos_lab/clipn/encoder.py" in names
    shipped = [p.relative_to(ROOT / "assets").as_posix() for p in (ROOT / "assets").rglob("*.yaml")]
    assert shipped and all(f"clipos_lab/assets/{s}" in names for s in shipped)


def test_installed_wheel_runs_the_default_benchmark_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                    str(wheel)], check=True)
    work = tmp_path / "empty"
    work.mkdir()
    # the wheel's copy comes first on the path; the dependencies come from this environment
    env = {**os.environ, "PYTHONPATH": str(site), "CLIPOS_CACHE_DIR": str(tmp_path / "cache"),
           "CLIPOS_OUTPUT_ROOT": str(work)}
    where = subprocess.run([sys.executable, "-c", "import clipos_lab.resources as r; print(r.ASSETS)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where) == site / "clipos_lab" / "assets"
    run = subprocess.run([sys.executable, "-m", "clipos_lab", "benchmark", "default", "--out", "run",
                          "--methods", "CLIP-OS", "--shots", "1", "--seeds", "1", "--no-progress"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "CLIP-OS" in run.stdout and (work / "run" / "results.csv").is_file()
    assert (work / "run" / "prompts" / "CLIP-OS-shots1-seed1.safetensors").is_file()
    assert not (ROOT / "run").exists()

"""The notebooks: structure checks (fast), then a papermill run of each with notebooks/params/ci.yaml.

Every notebook runs on its default model, pocket v2, and so on the drawings world; two run again with
``MODEL="pocket"`` alone changed, on v1 and its shapes world, so v1 stays one parameter away and working. Runs
start from a scratch working directory that is neither the repository nor notebooks/, with OUTPUT_DIR in a
temporary folder, which proves that notebooks resolve every path through the package. Each run must write its
metrics.json; the benchmark notebook's numbers are checked too. The default parameters are exercised by
``pytest --nbmake notebooks/`` (see notebooks/README.md).
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
CI_PARAMS = NB_DIR / "params" / "ci.yaml"
EXPECTED = ["01_quickstart", "02_relevance_maps", "03_synthetic_outliers_umap", "04_prompt_learning_and_scores",
            "05_benchmark", "06_saying_no", "07_anomaly_maps"]
COMMON = {"MODEL": "pocket2", "PRETRAINED": "", "CHECKPOINT": "", "INTERACTIVE": "auto", "PROGRESS": "auto"}
TYPES = {"str": str, "int": int, "float": float, "bool": bool}
# NAME: type = literal  # help   (papermill reads type and help from exactly this shape; no "=" in the help)
PARAM_LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*): (?P<type>str|int|float|bool) = (?P<value>[^#]+?)  # "
                        r"(?P<help>[^=]+)$")

V1 = {"MODEL": "pocket"}  # the one parameter that gives v1: its model, world and specs

pytestmark = pytest.mark.notebooks


def _read(path: Path):
    return nbformat.read(str(path), as_version=4)


def _parameters_cell(nb):
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def _parameters(path: Path) -> dict:
    """name -> (type name, default value) of a notebook's parameters cell."""
    out = {}
    for line in _parameters_cell(_read(path))[0].source.splitlines():
        m = PARAM_LINE.match(line)
        if m:
            out[m["name"]] = (m["type"], ast.literal_eval(m["value"]))
    return out


def test_the_numbered_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_python3_kernel(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a code cell has outputs"
            assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"
        assert "ExecuteTime" not in cell.metadata and "execution" not in cell.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_typed_and_commented_parameters_cell(path):
    cells = _parameters_cell(_read(path))
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters', expected exactly one"
    assert cells[0].cell_type == "code"
    source = cells[0].source
    statements = ast.parse(source).body
    assert statements and all(isinstance(s, ast.AnnAssign) for s in statements), \
        f"{path.name}: every statement of the parameters cell must be an annotated assignment"
    lines = [ln for ln in source.splitlines() if ln.strip()]
    assert len(lines) == len(statements), f"{path.name}: one parameter per line"
    for line in lines:
        m = PARAM_LINE.match(line)
        assert m, f"{path.name}: parameter line not of the form 'NAME: type = value  # help': {line!r}"
        value = ast.literal_eval(m["value"])
        assert type(value) is TYPES[m["type"]], f"{path.name}: {m['name']} default {value!r} is not a {m['type']}"
    params = _parameters(path)
    for name, default in COMMON.items():
        assert params[name][1] == default, f"{path.name}: {name} should default to {default!r}"
    assert params["OUTPUT_DIR"] == ("str", f"outputs/{path.stem}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_with_type_and_help(path):
    import papermill

    inferred = papermill.inspect_notebook(str(path))
    params = _parameters(path)
    assert set(inferred) == set(params)
    for name, info in inferred.items():
        assert info["inferred_type_name"] == params[name][0]
        assert info["help"], f"{path.name}: {name} has no help text for papermill --help-notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_path_depends_on_the_working_directory(path):
    code = "\n".join(c.source for c in _read(path).cells if c.cell_type == "code")
    for pattern in ("os.getcwd", "Path.cwd", "os.chdir", "__file__", "../", "Path(\"", "open(\"", "open('"):
        assert pattern not in code, f"{path.name}: uses {pattern!r}; resolve paths through clipos_lab.paths"
    assert "paths.output_dir(OUTPUT_DIR)" in code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_imported_name_is_used(path):
    cells = [c.source for c in _read(path).cells if c.cell_type == "code"]
    imported = []
    for cell in cells:
        for node in ast.walk(ast.parse(cell)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                imported += [(a.asname or a.name).split(".")[0] for a in node.names]
    used = {n.id for cell in cells for n in ast.walk(ast.parse(cell)) if isinstance(n, ast.Name)}
    assert not [n for n in imported if n not in used], f"{path.name} imports names it never uses"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_display_mode_comes_from_setup(path):
    code = "\n".join(c.source for c in _read(path).cells if c.cell_type == "code")
    assert "mode = notebook.setup(INTERACTIVE, PROGRESS)" in code
    body = code.split("mode = notebook.setup(INTERACTIVE, PROGRESS)", 1)[1]
    # after setup, only the resolved mode decides: "auto" is never compared by hand
    assert "INTERACTIVE" not in body and "PROGRESS" not in body, f"{path.name}: use mode.interactive / mode.progress"


def test_ci_params_are_parameters_of_the_notebooks():
    ci = yaml.safe_load(CI_PARAMS.read_text())
    known = set().union(*(_parameters(p) for p in NOTEBOOKS))
    assert set(ci) <= known, f"ci.yaml names unknown parameters: {sorted(set(ci) - known)}"
    assert "OUTPUT_DIR" not in ci  # each run gets its own folder
    example = yaml.safe_load((NB_DIR / "params" / "vitb16-openai.yaml").read_text())
    assert set(example) <= set(_parameters(NB_DIR / "05_benchmark.ipynb"))
    assert example["MODEL"] == "ViT-B-16" and example["PRETRAINED"] == "openai"


def test_outputs_are_stripped_by_git_attributes():
    attributes = (ROOT / ".gitattributes").read_text().splitlines()
    assert "*.ipynb filter=nbstripout" in attributes
    assert "*.ipynb diff=ipynb" in attributes


# ------------------------------------------------------------------------------------------- papermill runs
@pytest.fixture
def kernel_env(monkeypatch):
    """The kernel papermill starts inherits this environment: the package importable, nothing online."""
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")


def _run(path: Path, tmp_path: Path, extra: dict | None = None) -> tuple[Path, dict]:
    import papermill

    params = yaml.safe_load(CI_PARAMS.read_text())
    out = tmp_path / "out"
    params["OUTPUT_DIR"] = str(out)
    params.update(extra or {})
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    papermill.execute_notebook(str(path), str(tmp_path / f"{path.stem}.out.ipynb"), parameters=params,
                               cwd=str(elsewhere), kernel_name="python3", progress_bar=False, log_output=False,
                               execution_timeout=900)
    assert list(elsewhere.iterdir()) == [], "the notebook wrote into its working directory"
    metrics_path = out / "metrics.json"
    assert metrics_path.is_file(), f"{path.name} did not write metrics.json"
    metrics = json.loads(metrics_path.read_text())
    assert metrics["notebook"] == path.stem
    assert any(out.glob("*.png")), f"{path.name} wrote no figure"
    assert metrics["model"] == ("pocket-vit" if params.get("MODEL") == "pocket" else "pocket2-vit")
    return out, metrics


BENCHMARK = {"pocket-vit": "world-default", "pocket2-vit": "drawings-default"}  # each model's default benchmark
DEFECTS = {"pocket-vit": {"stain", "bite", "scratch", "hole"},
           "pocket2-vit": {"stained", "scratched", "torn", "punctured"}}


def _check(stem: str, metrics: dict) -> None:
    """What a run of ``stem`` claims, on whichever model (and so world) it ran."""
    model = metrics["model"]
    assert metrics["seconds"]["total"] > 0
    if "benchmark" in metrics and stem != "03_synthetic_outliers_umap":
        assert metrics["benchmark"] == BENCHMARK[model], "the default spec must be the model's world's"
    if stem == "01_quickstart":
        example = metrics["relevance_example"]  # chosen by where its patches land: the ground truth was found
        assert example["n_images"] == 1 and "on the object" in example["chosen_by"]
        assert 0.0 <= example["chance_in_box"] < 1.0 and 0.0 <= example["mask_in_box"] <= 1.0
    if stem == "02_relevance_maps":
        assert metrics["discrepancy_localisation"]["n_images"] > 0  # objects found in (nearly) every shot
        assert 0.0 < metrics["discrepancy_localisation"]["chance_in_box"] < 1.0
    if stem == "03_synthetic_outliers_umap":
        assert metrics["benchmark"] == BENCHMARK[model]
        d = metrics["distance_to_ood"]
        assert set(d["nn_cos"]) == {"outliers", "id", "relevant"}
        assert all(-1.0 <= v <= 1.0 for v in d["nn_cos"].values())
        # the failing-vs-good draw, with the old options and the defaults: v1's seeds on v1, two by rule on v2
        seeds, spec = ([119, 118], "world-split1-validation") if model == "pocket-vit" else \
            ([1, 2], "drawings-split1-validation")
        compared = metrics["compared_draws"]
        assert metrics["compared_spec"] == spec
        assert len(compared) == 2 and all([r["seed"] for r in rows] == seeds for rows in compared.values())
        assert all(-1.0 <= r["gain_unknown"] <= 1.0 and 0.0 <= r["acc"] <= 1.0 for rows in compared.values()
                   for r in rows)
        assert all(0.0 <= r["mask_in_box"] <= 1.0 for rows in compared.values() for r in rows)
    if stem == "04_prompt_learning_and_scores":
        assert {"CoOp", "LoCoOp", "CLIP-OS"} <= set(metrics["methods"])
        assert "1-p(unknown)" in metrics["methods"]["CLIP-OS"]["scores"]
    if stem == "06_saying_no":
        assert {"ATD", "CTW", "MCM", "zero-shot MCM"} == set(metrics["scores"])
        # CLIPN's yes branch is zero-shot MCM: the same numbers
        assert metrics["scores"]["MCM"]["Average"]["AUROC"] == metrics["scores"]["zero-shot MCM"]["Average"]["AUROC"]
        assert all(0.0 <= r["AUROC"] <= 1.0 for rows in metrics["scores"].values() for r in rows.values())
    if stem == "07_anomaly_maps":
        assert metrics["spec"] == {"pocket-vit": "world-anomaly", "pocket2-vit": "drawings-anomaly"}[model]
        assert metrics["product"] == "star"
        assert set(metrics["per_method"]) == {"patch-memory", "mutual", "state-prompts"}
        for row in metrics["per_method"].values():
            assert all(0.0 <= v <= 1.0 for v in row.values()) and "pixel_AUROC" in row
        assert 0.5 < metrics["grid_oracle"]["pixel_AUROC"] <= 1.0
        assert DEFECTS[model] <= set(metrics["per_defect"]["image_AUROC"][0])


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem != "05_benchmark"], ids=lambda p: p.stem)
def test_notebook_runs_with_ci_params(path, tmp_path, kernel_env):
    """The default: pocket v2 on the drawings world (06 on v1 until v2's no tower is shipped)."""
    _, metrics = _run(path, tmp_path)
    _check(path.stem, metrics)


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["01_quickstart", "03_synthetic_outliers_umap"])
def test_v1_is_one_parameter_away(stem, tmp_path, kernel_env):
    """MODEL="pocket" alone gives v1: its model, its shapes world, its specs and its chosen draws (01 reads the
    default spec of the model's world; 03 has v1's validation split and seeds 119 / 118)."""
    _, metrics = _run(NB_DIR / f"{stem}.ipynb", tmp_path, V1)
    assert metrics["model"] == "pocket-vit"
    _check(stem, metrics)


@pytest.mark.slow
def test_benchmark_notebook_runs_with_ci_params(tmp_path, kernel_env):
    out, metrics = _run(NB_DIR / "05_benchmark.ipynb", tmp_path)
    ci = yaml.safe_load(CI_PARAMS.read_text())
    methods = [m.strip() for m in ci["METHODS"].split(",")]
    assert metrics["model"] == "pocket2-vit" and metrics["benchmark"] == "drawings-default"
    assert set(metrics["per_method"]) == set(methods)
    for method, row in metrics["per_method"].items():
        for key in ("AUROC", "FPR95", "ACC"):
            assert 0.0 <= row[key] <= 1.0, f"{method} {key} = {row[key]}"
    assert metrics["summary"] and {r["method"] for r in metrics["summary"]} == set(methods)
    bad = [r for r in metrics["summary"] if not 0.0 <= r["mean"] <= 1.0]
    assert not bad, bad[:3]
    assert metrics["reference"] is None  # the drawings spec is not a paper protocol
    for name in ("results.csv", "summary.csv", "summary.md", "draw_gains.png"):
        assert (out / name).is_file()
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["method"] for r in rows} == set(methods)
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    # what the notebook shows is the runner's table of these results, not numbers of its own
    from clipos_lab.evaluation import tables as T

    typed = [{**r, "shots": int(r["shots"]), "seed": int(r["seed"]), "value": float(r["value"])} for r in rows]
    recomputed = {(r["method"], r["score"], r["shots"], r["metric"]): r["mean"] for r in T.summarise(typed)
                  if r["ood"] == "Average"}
    shown = {(r["method"], r["score"], int(r["shots"]), r["metric"]): r["mean"] for r in metrics["summary"]
             if r.get("ood", "Average") == "Average"}
    assert shown and all(recomputed[k] == pytest.approx(v, abs=1e-12) for k, v in shown.items())


@pytest.mark.parametrize("path", sorted((NB_DIR / "params").glob("sweep-*.yaml")), ids=lambda p: p.name)
def test_shipped_sweeps_name_only_notebook_parameters_and_existing_specs(path):
    from clipos_lab.notebook.paths import resolve_input
    from clipos_lab.sweep import load_sweep

    sweep = load_sweep(path)
    known = _parameters(sweep.notebook)
    assert set(sweep.parameters) | set(sweep.grid_names) <= set(known), f"{path.name} names unknown parameters"
    for cell in sweep.cells():
        spec = {**sweep.parameters, **cell}.get("SPEC", "default")
        assert spec == "default" or resolve_input(spec).is_file(), f"{path.name}: {spec} does not exist"

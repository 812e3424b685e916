"""Try bad inputs and faults on the command line and count what happens (issue 15's table).

    python benchmarks/bad_inputs.py [--checkout DIR] [--only NAME ...]

Every case runs ``python -m clipos_lab ...`` in a fresh process (so a raw traceback is seen as one), in a scratch
folder with its own ``CLIPOS_CACHE_DIR``, with the pocket architecture and seeded random weights on 32-pixel
pocket-world images (speed only: no detection number is read). Each outcome is one of

* clear error: exit code 2, exactly one ``error:`` line on stderr, no traceback;
* counted skip: exit code 0 and the skipped images / folders are counted in the output;
* handled: exit code 0 and the case's own check passes (e.g. a warning that names the file);
* raw traceback, silent wrong result, data lost: what must not happen.

``--checkout DIR`` runs the same cases against another copy of the package (e.g. ``git archive`` of an older
commit); cases that use options added since are marked ``needs_new`` and left out there.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["--random-weights", "--no-progress"]
TINY = {
    "name": "tiny",
    "id": {"type": "world", "kind": "object", "shapes": ["circle", "star"], "n_per_class": 3, "seed": 1,
           "image_size": 32},
    "ood": {"textures": {"type": "world", "kind": "background", "n": 3, "seed": 2, "image_size": 32}},
}


@dataclass
class Case:
    name: str
    group: str
    argv: list[str]
    expect: str  # "error", "skip" or "ok"
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, subprocess.CompletedProcess], str | None] | None = None  # None, "silent" or "lost"
    env: dict = field(default_factory=dict)
    needs_new: bool = False
    kill_when: tuple[str, ...] = ()  # SIGKILL the run once one of these globs matches (a crash mid-way)


def yaml_dump(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def images(folder: Path, n: int = 3) -> Path:
    from PIL import Image

    for k, cls in enumerate(("cat", "dog")):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (40 * i, 90 * k, 120)).save(folder / cls / f"{i}.png")
    return folder


# ----------------------------------------------------------------------------------------------- set-ups

def spec_file(file="spec.yaml", **changes):
    def setup(s: Path):
        (s / file).parent.mkdir(parents=True, exist_ok=True)
        (s / file).write_text(yaml_dump({**TINY, **changes}))
    return setup


def shipped_split_copies(s: Path):
    src = ROOT / "assets" / "benchmarks" / "world-splits"
    shutil.copytree(src, s / "assets" / "benchmarks" / "world-splits")
    (s / "before.sha").write_text(digest(s / "assets"))


def unchanged(folder: str):
    def check(s: Path, proc):
        return None if digest(s / folder) == (s / "before.sha").read_text() else "lost"
    return check


def earlier_run(extra_args=()):
    def setup(s: Path):
        spec_file()(s)
        spec_file("other.yaml", name="other", id={**TINY["id"], "seed": 9})(s)
        run(s, ["benchmark", "spec.yaml", "--methods", "MCM,CoOp", "--shots", "1", "--seeds", "1", "--epochs", "1",
                "--out", "out", *MODEL, *extra_args])
        (s / "before.sha").write_text(digest(s / "out"))
    return setup


def splits_written(s: Path):
    run(s, ["splits", "--out", "mysplits", "--n", "2", "--seed", "1"])
    (s / "before.sha").write_text(digest(s / "mysplits"))


def symlink_loop(s: Path):
    images(s / "t")
    os.symlink("l2.png", s / "t" / "cat" / "l1.png")
    os.symlink("l1.png", s / "t" / "cat" / "l2.png")


def dangling(s: Path):
    images(s / "t")
    os.symlink("gone.png", s / "t" / "dog" / "gone-link.png")


def folder_loop(s: Path):
    images(s / "t")
    os.symlink(".", s / "t" / "dog" / "again")


def a_file(name):
    def setup(s: Path):
        spec_file()(s)
        (s / name).write_text("I am a file")
        images(s / "t")
    return setup


def nan_cache(s: Path):
    """Encode, then put a NaN into the cached global features (the file still parses)."""
    spec_file()(s)
    run(s, ["encode", "spec.yaml", *MODEL])
    code = textwrap.dedent("""
        import sys, glob
        from safetensors import safe_open
        from safetensors.torch import save_file
        path = sorted(glob.glob(sys.argv[1] + "/textures-*.safetensors"))[0]
        with safe_open(path, framework="pt") as fh:
            meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
        tensors["global"][0, 0] = float("nan")
        save_file(tensors, path, metadata=meta)
        open(sys.argv[1] + "/../nan_path.txt", "w").write(path)
    """)
    subprocess.run([sys.executable, "-c", code, str(s / "cache")], check=True)


def link_back_up(s: Path):
    images(s / "t")
    os.symlink("..", s / "t" / "cat" / "up")  # the dataset root, seen from class cat


def earlier_run_with_user_files(s: Path):
    earlier_run()(s)
    (s / "out" / "prompts" / "README.txt").write_text("my notes")
    (s / "out" / "manifests" / "my-selection.json").write_text("{}")


def sweep_file(text: str):
    def setup(s: Path):
        (s / "nb.ipynb").write_text("{}")
        (s / "sweep.yaml").write_text("notebook: nb.ipynb\n" + text)
    return setup


ALIAS_BOMB = "".join(f"  P{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 10) if k else ', '.join(['x'] * 10)}]\n"
                     for k in range(9))  # P8 expands to 10^9 strings


# ------------------------------------------------------------------------------------------------ checks

def nothing_outside(s: Path, proc):
    """The cases' names point at ``<scratch>/escape*`` or ``<scratch>/work/x``: neither may exist."""
    escaped = [p for p in s.parent.rglob("*") if p.name.startswith("escape")] + [s / "x"]
    return "lost" if any(p.exists() for p in escaped) else None


def names_in_stderr(*words):
    def check(s: Path, proc):
        return None if all(w in proc.stderr for w in words) else "silent"
    return check


def nan_named(s: Path, proc):
    path = (s / "nan_path.txt").read_text()
    return None if path in proc.stderr else "silent"


def user_files_kept(s: Path, proc):
    out = s / "out"
    kept = (out / "prompts" / "README.txt").is_file() and (out / "manifests" / "my-selection.json").is_file()
    return None if kept else "lost"


def images_listed(n: int):
    def check(s: Path, proc):
        return None if f": {n} images," in proc.stdout else "silent"
    return check


def out_unchanged(s: Path, proc):
    return None if digest(s / "out") == (s / "before.sha").read_text() else "lost"


# ------------------------------------------------------------------------------------------------- cases

def cases() -> list[Case]:
    bench = ["benchmark", "spec.yaml", "--out", "o", "--methods", "MCM", *MODEL]  # quick when nothing stops it
    coop = ["--methods", "CoOp", "--epochs", "1"]
    return [
        # lost data, or writes outside their folder
        Case("splits, default --out, run from a checkout", "lost", ["splits", "--seed", "7"], "ok",
             shipped_split_copies, unchanged("assets")),
        Case("splits again into the same folder, other seed", "lost",
             ["splits", "--out", "mysplits", "--n", "2", "--seed", "8"], "error", splits_written,
             unchanged("mysplits")),
        Case("benchmark into an earlier run's folder, other spec", "lost",
             ["benchmark", "other.yaml", "--methods", "MCM,CoOp", "--shots", "1", "--seeds", "2", "--epochs", "1",
              "--out", "out", *MODEL], "error", earlier_run(), out_unchanged),
        Case("benchmark --overwrite killed mid-training (SIGKILL)", "lost",
             ["benchmark", "other.yaml", "--methods", "CoOp", "--shots", "1", "--seeds", "7", "--epochs", "100000",
              "--out", "out", "--overwrite", *MODEL], "killed", earlier_run(), out_unchanged,
             kill_when=("out/manifests/shots1-seed7.json", ".out.staging-*/manifests/shots1-seed7.json")),
        Case("OOD set named ../../escape", "lost", bench, "error",
             spec_file(ood={"../../escape": TINY["ood"]["textures"]}), nothing_outside),
        Case("benchmark named ../../../x (a suite folder)", "lost", ["evaluate", "suite", "--out", "a/b/o", *MODEL],
             "error", spec_file("suite/a.yaml", name="../../../x"),
             nothing_outside),
        Case("benchmark named a/b", "lost", bench, "error", spec_file(name="a/b"), nothing_outside),
        Case("dataset entry named a/../../escape", "lost", bench, "error",
             spec_file(ood={"t": {**TINY["ood"]["textures"], "name": "a/../../escape"}}), nothing_outside),
        # raw tracebacks
        Case("symlink loop in an image folder", "traceback", ["encode", "t", *MODEL], "skip", symlink_loop),
        Case("dangling symlink in an image folder", "traceback", ["encode", "t", *MODEL], "skip", dangling),
        Case("CLIPOS_CACHE_DIR is a file", "traceback", ["encode", "spec.yaml", *MODEL], "error", a_file("f"),
             names_in_stderr("f"), env={"CLIPOS_CACHE_DIR": "f"}),
        Case("--cache-dir below a file", "traceback", ["encode", "t", "--cache-dir", "f/sub", *MODEL], "error",
             a_file("f"), names_in_stderr("f/sub")),
        Case("benchmark --out is a file", "traceback", ["evaluate", "spec.yaml", "--out", "f", *MODEL], "error",
             a_file("f"), names_in_stderr("f")),
        Case("benchmark --out below a file", "traceback", ["evaluate", "spec.yaml", "--out", "f/o", *MODEL],
             "error", a_file("f"), names_in_stderr("f")),
        Case("pocket train, unknown option", "traceback", ["pocket", "train", "--out", "r", "--options",
                                                           '{"nope": 1}'], "error", check=names_in_stderr("nope")),
        Case("pocket train, options not an object", "traceback", ["pocket", "train", "--out", "r", "--options",
                                                                  "[1]"], "error"),
        Case("pocket train, option of the wrong type", "traceback",
             ["pocket", "train", "--out", "r", "--options", '{"steps": "many"}'], "error",
             check=names_in_stderr("steps")),
        Case("pocket train, options not JSON", "traceback", ["pocket", "train", "--out", "r", "--options", "{x"],
             "error"),
        # silent wrong results
        Case("--epochs 0", "silent", [*bench, *coop[:2], "--epochs", "0"], "error", spec_file()),
        Case("--epochs -1", "silent", [*bench, *coop[:2], "--epochs", "-1"], "error", spec_file()),
        Case("--shots '' with CoOp", "silent", [*bench, *coop, "--shots", ""], "error", spec_file()),
        Case("--seeds '' with CoOp", "silent", [*bench, *coop, "--seeds", ""], "error", spec_file()),
        Case("--seeds 1,1", "silent", [*bench, *coop, "--seeds", "1,1"], "error", spec_file()),
        Case("--shots 1,1", "silent", [*bench, *coop, "--shots", "1,1"], "error", spec_file()),
        Case("linked sub-folder looping back", "silent", ["encode", "t", *MODEL], "skip", folder_loop),
        Case("OOD set identical to the ID set", "silent", ["evaluate", "spec.yaml", "--out", "o", *MODEL], "ok",
             spec_file(ood={"copy": TINY["id"]}), names_in_stderr("identical")),
        Case("cached features with a NaN", "silent", ["evaluate", "spec.yaml", "--out", "o", *MODEL], "ok",
             nan_cache, nan_named),
        # unclear errors and unchecked values
        Case("--shots 1.5", "unclear", [*bench, "--shots", "1.5"], "error", spec_file(), names_in_stderr("--shots")),
        Case("--shots abc", "unclear", [*bench, "--shots", "abc"], "error", spec_file(), names_in_stderr("--shots")),
        Case("--seeds -5", "unclear", [*bench, *coop, "--seeds", "-5"], "error", spec_file(),
             names_in_stderr("--seeds")),
        Case("--epochs abc", "unclear", [*bench, "--epochs", "abc"], "error", spec_file(), names_in_stderr("--epochs")),
        Case("encode --batch-size 0", "unclear", ["encode", "t", "--batch-size", "0", *MODEL], "error",
             lambda s: images(s / "t"), names_in_stderr("--batch-size")),
        Case("encode --batch-size -2", "unclear", ["encode", "t", "--batch-size", "-2", *MODEL], "error",
             lambda s: images(s / "t"), names_in_stderr("--batch-size")),
        Case("benchmark --batch-size 0", "unclear", [*bench, "--batch-size", "0"], "error", spec_file(),
             names_in_stderr("--batch-size"), needs_new=True),
        Case("--surgery-blocks -1", "unclear", ["encode", "t", "--surgery-blocks", "-1", *MODEL], "error",
             lambda s: images(s / "t"), names_in_stderr("surgery")),
        Case("--device cuda without a GPU", "unclear", ["encode", "t", "--device", "cuda", *MODEL], "error",
             lambda s: images(s / "t"), names_in_stderr("GPU")),
        Case("--device nonsense", "unclear", ["encode", "t", "--device", "gpu9", *MODEL], "error",
             lambda s: images(s / "t"), names_in_stderr("gpu9")),
        Case("pocket train --max-steps 0", "unclear", ["pocket", "train", "--out", "r", "--max-steps", "0"],
             "error", check=names_in_stderr("--max-steps")),
        Case("splits --n 0", "unclear", ["splits", "--out", "x", "--n", "0"], "error",
             check=names_in_stderr("--n")),
        Case("splits --n-id 12", "unclear", ["splits", "--out", "x", "--n-id", "12"], "error"),
        Case("splits --seed -1", "unclear", ["splits", "--out", "x", "--seed", "-1"], "error",
             check=names_in_stderr("--seed")),
        # inputs that were already handled (kept so a regression shows)
        Case("benchmark spec that does not exist", "handled", ["benchmark", "missing.yaml", *MODEL], "error"),
        Case("spec YAML that does not parse", "handled", bench, "error",
             lambda s: (s / "spec.yaml").write_text("name: [unclosed")),
        Case("encode a folder that does not exist", "handled", ["encode", "nowhere", *MODEL], "error"),
        Case("--checkpoint that does not exist", "handled", ["evaluate", "spec.yaml", "--checkpoint", "none.pt"],
             "error", spec_file()),
        Case("--methods Nope", "handled", [*bench, "--methods", "Nope"], "error", spec_file()),
        Case("sweep file that does not exist", "handled", ["sweep", "missing.yaml"], "error"),
        Case("encode . (a folder without a name of its own)", "handled", ["encode", ".", *MODEL], "ok",
             lambda s: images(s)),
        # issue 23
        Case("linked sub-folder back up to the dataset root (ln -s .. t/cat/up)", "silent", ["encode", "t", *MODEL],
             "skip", link_back_up, images_listed(6)),
        Case("benchmark --overwrite with user files in prompts/ and manifests/", "lost",
             ["benchmark", "other.yaml", "--methods", "MCM,CoOp", "--shots", "1", "--seeds", "2", "--epochs", "1",
              "--out", "out", "--overwrite", *MODEL], "ok", earlier_run_with_user_files, user_files_kept,
             needs_new=True),
        Case("sweep timeout 1.5", "unclear", ["sweep", "sweep.yaml"], "error",
             sweep_file("grid:\n  SEEDS: [1, 2]\ntimeout: 1.5\n"), names_in_stderr("timeout")),
        Case("sweep timeout .nan", "unclear", ["sweep", "sweep.yaml"], "error",
             sweep_file("grid:\n  SEEDS: [1, 2]\ntimeout: .nan\n"), names_in_stderr("timeout")),
        Case("sweep with a YAML alias bomb in parameters", "traceback", ["sweep", "sweep.yaml"], "error",
             sweep_file("parameters:\n" + ALIAS_BOMB + "grid:\n  SEEDS: [1]\n"), names_in_stderr("aliases")),
        Case("sweep grid of 1000 x 1000 x 1000 cells", "traceback", ["sweep", "sweep.yaml"], "error",
             sweep_file("grid:\n" + "".join(f"  {a}: [{', '.join(map(str, range(1000)))}]\n" for a in "ABC")),
             names_in_stderr("cells")),
    ]


# --------------------------------------------------------------------------------------------- running

PACKAGE = ROOT


def run(s: Path, argv: list[str], env: dict | None = None, kill_when: tuple[str, ...] = ()):
    env = {**os.environ, "PYTHONPATH": str(PACKAGE), "CLIPOS_CACHE_DIR": str(s / "cache"),
           "PYTHONWARNINGS": "default", **(env or {})}
    env = {k: str(s / v) if k == "CLIPOS_CACHE_DIR" and not os.path.isabs(v) else v for k, v in env.items()}
    if not kill_when:
        return subprocess.run([sys.executable, "-m", "clipos_lab", *argv], cwd=s, env=env, capture_output=True,
                              text=True)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "clipos_lab", *argv], cwd=s, env=env, stdout=out, stderr=err,
                                text=True)
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            if any(next(s.glob(g), None) for g in kill_when):  # it has started writing: kill it now
                time.sleep(0.5)
                break
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())


def outcome(case: Case, s: Path, proc) -> str:
    text = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    if "Traceback" in text:
        return "raw traceback"
    verdict = case.check(s, proc) if case.check else None
    if verdict == "lost":
        return "data lost"
    if case.expect == "killed":
        return "handled" if verdict is None else "silent wrong result"
    if case.expect == "error":
        errors = [line for line in text.splitlines() if "error:" in line]
        if proc.returncode == 0:
            return "silent wrong result"
        return "clear error" if len(errors) == 1 and verdict is None else "unclear error"
    if proc.returncode != 0 or verdict is not None:
        return "silent wrong result" if proc.returncode == 0 else "unclear error"
    if case.expect == "skip":
        counted = any(w in proc.stdout for w in (" 1 skipped", " 2 skipped", " 3 skipped", "not read"))
        return "counted skip" if counted else "silent wrong result"
    return "handled"


def main() -> None:
    global PACKAGE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", default=str(ROOT), help="folder holding the clipos_lab package to test")
    parser.add_argument("--only", nargs="*", default=None, help="run only cases whose name contains one of these")
    parser.add_argument("--json", default=None, help="also write the outcomes here")
    args = parser.parse_args()
    PACKAGE = Path(args.checkout).resolve()
    is_new = PACKAGE == ROOT
    rows = []
    for case in cases():
        if args.only and not any(o in case.name for o in args.only):
            continue
        if case.needs_new and not is_new:
            continue
        with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp:
            s = Path(tmp) / "work"
            s.mkdir()
            if case.setup:
                case.setup(s)
            argv = case.argv if is_new else [a for a in case.argv if a != "--overwrite"]  # older: no such option
            proc = run(s, argv, case.env, kill_when=case.kill_when)
            result = outcome(case, s, proc)
        last = (proc.stderr.strip().splitlines() or [""])[-1][:150]
        rows.append({"case": case.name, "group": case.group, "outcome": result, "rc": proc.returncode,
                     "stderr_last_line": last})
        print(f"{result:20s} rc={proc.returncode:<3} {case.name}: {last}", flush=True)
    counts = collections.Counter(r["outcome"] for r in rows)
    print(f"\n{len(rows)} inputs tried with the package in {PACKAGE}")
    for key in ("clear error", "counted skip", "handled", "unclear error", "raw traceback", "silent wrong result",
                "data lost"):
        print(f"  {key:20s} {counts.get(key, 0)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"package": str(PACKAGE), "rows": rows, "counts": counts}, indent=1))


if __name__ == "__main__":
    main()

"""Environment for `pytest --nbmake notebooks/`: the kernels nbmake starts inherit it.

nbmake runs each notebook with its folder as the working directory, so the kernel can import the package only
when it is installed (`make setup` does `pip install -e .`) or on PYTHONPATH; this adds the repository root to
be safe. UMAP's numba code is compiled once into a shared cache, and no model hub is contacted.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
os.environ["PYTHONPATH"] = os.pathsep.join(_paths)
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "clipos_lab_numba"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CLIPOS_INTERACTIVE", "0")  # INTERACTIVE="auto" stays static even if pytest runs in a Lab kernel

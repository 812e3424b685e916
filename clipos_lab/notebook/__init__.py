"""Notebook plumbing: the shared setup cell and display mode (setup: ``Mode``, ``progress_bar``), ipywidgets
explorers with static fallbacks (widgets), pandas tables for cells (tables), published numbers to show beside ours
(reference), and paths that do not depend on the kernel's folder (paths).

Notebooks start with ``mode = notebook.setup(INTERACTIVE, PROGRESS)``; ``INTERACTIVE = "auto"`` means widgets and
plotly in a live front end and static figures under papermill / nbmake.
"""

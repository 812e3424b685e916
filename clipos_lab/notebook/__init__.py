"""Notebook plumbing: the shared setup cell (setup), ipywidgets explorers with static fallbacks (widgets),
published numbers to show beside ours (reference), and paths that do not depend on the kernel's folder (paths).
"""

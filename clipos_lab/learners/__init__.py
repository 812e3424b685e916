"""Newer few-shot prompt learners on cached features: FA (forced prompts) and GalLoP (global + local prompts).

Each module holds the method's losses and scores as pure tensor functions plus its training loop; the
classes in :mod:`clipos_lab.methods` wrap them.
"""

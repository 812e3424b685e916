"""Evaluation: OOD scores from similarities (scores), metrics over ID / OOD scores (metrics), the benchmark
runner over methods x shots x seeds (runner), and every table as a pandas DataFrame (tables)."""

"""Prefect flows: wiring only (no maths, no I/O, no torch)."""

"""Decide stage: the winner selection (decision.py) and the degradation analysis with its upload gates."""

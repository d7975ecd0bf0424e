"""Decide stage: the gate decision and the degradation checks."""

"""Publish stage: the analysis report, model cards and the upload."""

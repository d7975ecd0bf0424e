"""Publish stage: upload, model cards and the report."""

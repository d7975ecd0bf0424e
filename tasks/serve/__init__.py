"""Serve stage: serving a published model."""

"""Serve stage: an OpenAI-compatible server for a chosen GGUF."""

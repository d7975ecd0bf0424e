"""Data stage: the SFT dataset, PII scrubbing and the base model."""

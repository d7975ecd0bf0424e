"""Data stage: the SFT dataset, its PII scrubbing, and the base model with its bundled resources."""

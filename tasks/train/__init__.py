"""Train stage: the SFT/DPO training of a variant and its outputs."""

"""Training the generator: SFT (``sft``), model loading (``models``), and DPO (``dpo``, the RLIP step)."""

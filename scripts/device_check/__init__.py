"""scripts/device-check: one prepared check of the product on a CUDA GPU (see that script)."""

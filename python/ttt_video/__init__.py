"""TTT-Video in plain PyTorch: the DiT with bidirectional TTT layers, the VAE, T5, the sampler."""

__version__ = "0.1.0"

"""The CogVideoX 3-D causal VAE decoder (spec 7): diffusers folders and SAT `3d-vae.pt` checkpoints."""

from .config import COGVIDEOX_5B_VAE_CONFIG, VAEConfig, VAEConfigError
from .decoder import Decoder3D, decoded_frame_count, latent_windows
from .keys import diffusers_to_sat_key, sat_to_diffusers_key
from .model import CogVideoXVAE, VAEWeightsError

__all__ = [
    "COGVIDEOX_5B_VAE_CONFIG",
    "CogVideoXVAE",
    "Decoder3D",
    "VAEConfig",
    "VAEConfigError",
    "VAEWeightsError",
    "decoded_frame_count",
    "diffusers_to_sat_key",
    "latent_windows",
    "sat_to_diffusers_key",
]

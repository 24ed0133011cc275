"""The CogVideoX 3-D causal VAE (spec 7): encoder and decoder, diffusers folders and SAT `3d-vae.pt`."""

from .config import COGVIDEOX_5B_VAE_CONFIG, VAEConfig, VAEConfigError
from .conv import VAEConv2d, VAEConv3d, set_fast_cpu_convolutions
from .decoder import Decoder3D, decoded_frame_count, latent_windows
from .encoder import DEFAULT_ENCODE_WINDOW, Encoder3D, encoded_frame_count, frame_windows
from .keys import diffusers_to_sat_key, sat_to_diffusers_key
from .model import CogVideoXVAE
from .moments import sample_from_moments, split_moments
from .weights import VAEWeightsError

__all__ = [
    "COGVIDEOX_5B_VAE_CONFIG",
    "DEFAULT_ENCODE_WINDOW",
    "CogVideoXVAE",
    "Decoder3D",
    "Encoder3D",
    "VAEConfig",
    "VAEConfigError",
    "VAEConv2d",
    "VAEConv3d",
    "VAEWeightsError",
    "decoded_frame_count",
    "diffusers_to_sat_key",
    "encoded_frame_count",
    "frame_windows",
    "latent_windows",
    "sample_from_moments",
    "sat_to_diffusers_key",
    "set_fast_cpu_convolutions",
    "split_moments",
]

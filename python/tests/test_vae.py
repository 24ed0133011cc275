"""CogVideoX VAE decoder: frame counts, windows and caches, latent scale, diffusers and SAT loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from vae_helpers import WEIGHTS, PerFrameGroupNorm, edited_folder

from ttt_video.demo.tiny_parts import TINY_VAE_CONFIG, diffusers_vae_parameter_shapes, make_tiny_vae
from ttt_video.vae import (
    COGVIDEOX_5B_VAE_CONFIG,
    CogVideoXVAE,
    Decoder3D,
    VAEConfig,
    VAEConfigError,
    VAEWeightsError,
    decoded_frame_count,
    diffusers_to_sat_key,
    latent_windows,
    sat_to_diffusers_key,
)
from ttt_video.vae import layers as vae_layers
from ttt_video.vae.layers import CausalConv3d, SpatialNorm3D
from ttt_video.weights.errors import WeightsMissingError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny VAE runs thousands of small ops: extra threads only add contention on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_vae(tmp_path_factory.mktemp("tiny") / "vae", seed=0)


@pytest.fixture(scope="module")
def vae(vae_dir: Path) -> CogVideoXVAE:
    return CogVideoXVAE.from_pretrained(vae_dir, dtype=torch.float32)


def latents(frames: int, h: int = 2, w: int = 3, batch: int = 1, seed: int = 0) -> Tensor:
    return torch.randn(batch, 16, frames, h, w, generator=torch.Generator().manual_seed(seed))


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------ windows and frames


def test_latent_windows_follow_the_reference() -> None:
    assert latent_windows(13) == [(0, 3), (3, 5), (5, 7), (7, 9), (9, 11), (11, 13)]
    assert latent_windows(1) == [(0, 1)]
    assert latent_windows(3) == [(0, 3)]
    assert latent_windows(4) == [(0, 2), (2, 4)]
    assert latent_windows(13, window=13) == [(0, 13)]
    assert latent_windows(13, window=100) == [(0, 13)]
    with pytest.raises(ValueError):
        latent_windows(0)


@pytest.mark.parametrize(
    ("latent", "pixel"), [(1, 1), (13, 49), (37, 145), (73, 289), (121, 481), (253, 1009)]
)
def test_frame_count_formula(latent: int, pixel: int) -> None:
    assert decoded_frame_count(latent) == pixel == 4 * (latent - 1) + 1
    # One pass over everything yields the same count (odd-frame rules of Upsample3D).
    assert decoded_frame_count(latent, window=latent) == pixel


@pytest.mark.parametrize(
    ("latent", "pixel", "grid"), [(13, 49, (2, 3)), (37, 145, (2, 3)), (253, 1009, (2, 2))]
)
def test_decode_frame_counts_and_shape(
    vae: CogVideoXVAE, latent: int, pixel: int, grid: tuple[int, int]
) -> None:
    h, w = grid
    frames = vae.decode(latents(latent, h, w))
    assert frames.shape == (1, 3, pixel, 8 * h, 8 * w)
    assert vae.num_frames(latent) == pixel


def test_output_range_batch_and_dtype(vae: CogVideoXVAE) -> None:
    z = latents(5, batch=2)
    frames = vae.decode(z)
    assert frames.shape == (2, 3, 17, 16, 24)
    assert frames.dtype == torch.float32
    assert frames.min() >= -1.0 and frames.max() <= 1.0
    raw = vae.decode(z, clamp=False)
    assert torch.equal(raw.clamp(-1, 1), frames)
    assert raw.std() > 0.1  # not a constant image
    # The batch elements are decoded independently.
    torch.testing.assert_close(vae.decode(z[1:], clamp=False), raw[1:], atol=1e-5, rtol=1e-5)


def test_stream_equals_whole_decode(vae: CogVideoXVAE) -> None:
    z = latents(13)
    stream = vae.decode_stream(z)
    first = next(stream)
    assert torch.is_grad_enabled(), "decode_stream must not leak no_grad to its consumer"
    chunks = [first, *stream]
    assert [c.shape[2] for c in chunks] == [9, 8, 8, 8, 8, 8]
    assert torch.equal(torch.cat(chunks, dim=2), vae.decode(z))


def test_decode_stream_validates_eagerly(vae: CogVideoXVAE) -> None:
    with pytest.raises(ValueError, match="16 latent channels"):
        vae.decode_stream(torch.zeros(1, 13, 16, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, C, T, h, w\)"):
        vae.decode(torch.zeros(16, 13, 2, 2))


def test_earlier_frames_do_not_depend_on_later_latents(vae: CogVideoXVAE) -> None:
    """Causality across windows: a prefix of whole windows decodes to the same frames alone."""
    z = latents(13)
    full = vae.decode(z, clamp=False)
    prefix = vae.decode(z[:, :, :5], clamp=False)  # windows [0, 3), [3, 5) -> 9 + 8 frames
    assert torch.equal(prefix, full[:, :, :17])
    changed = z.clone()
    changed[:, :, 9:] = torch.randn_like(changed[:, :, 9:])
    other = vae.decode(changed, clamp=False)
    assert torch.equal(other[:, :, :33], full[:, :, :33])  # windows up to latent frame 9
    assert not torch.allclose(other[:, :, 33:], full[:, :, 33:])


def test_windowed_decode_equals_one_pass_except_for_groupnorm(vae_dir: Path) -> None:
    """The caches make windows equivalent to one pass; only GroupNorm's per-window statistics differ.

    Spec 7.2: GroupNorm statistics are computed per window, so windowed and one-pass decoding differ by
    design. With the statistics made per frame (the only cross-frame operation besides the causal
    convolutions and the odd-frame up-sampling rules), the two must agree.
    """
    model = CogVideoXVAE.from_pretrained(vae_dir, dtype=torch.float32)
    z = latents(13)
    windowed, one_pass = model.decode(z, clamp=False), model.decode(z, window=13, clamp=False)
    assert windowed.shape == one_pass.shape
    assert not torch.allclose(windowed, one_pass, atol=1e-3), "per-window GroupNorm should make them differ"

    for module in model.modules():
        if isinstance(module, SpatialNorm3D):
            module.norm_layer = PerFrameGroupNorm(module.norm_layer)
    windowed, one_pass = model.decode(z, clamp=False), model.decode(z, window=13, clamp=False)
    torch.testing.assert_close(windowed, one_pass, atol=1e-5, rtol=1e-5)
    # Windows decoded without carrying the caches are not equivalent.
    independent = torch.cat([model.decoder(z[:, :, s:e]) for s, e in latent_windows(13)], dim=2)
    assert not torch.allclose(independent, one_pass, atol=1e-3)


def test_causal_conv_replicates_first_frame_and_uses_cache() -> None:
    conv = CausalConv3d(2, 3, kernel_size=3)
    x = torch.randn(1, 2, 4, 5, 5)
    padded = nn.functional.pad(torch.cat([x[:, :, :1], x[:, :, :1], x], 2), (1, 1, 1, 1, 0, 0))
    expected = nn.functional.conv3d(padded, conv.conv.weight, conv.conv.bias)
    torch.testing.assert_close(conv(x), expected)
    cache: dict = {}
    first, second = conv(x[:, :, :3], cache), conv(x[:, :, 3:], cache)
    torch.testing.assert_close(torch.cat([first, second], 2), expected)


def test_large_inputs_are_convolved_in_time_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    conv = CausalConv3d(3, 4, kernel_size=3)
    x = torch.randn(1, 3, 11, 6, 6)
    whole = conv(x)
    monkeypatch.setattr(vae_layers, "_MAX_CONV_INPUT_BYTES", 2000)
    torch.testing.assert_close(conv(x), whole)


# ------------------------------------------------------------------------------------- latent scale


def test_latent_scale_default_and_override(vae: CogVideoXVAE) -> None:
    assert vae.latent_scale == pytest.approx(0.7)  # scaling_factor of the folder's config.json
    z = latents(3)
    torch.testing.assert_close(vae.decode(z), vae.decode(z, latent_scale=0.7))
    torch.testing.assert_close(vae.decode(z, latent_scale=1.0), vae.decode(z * 0.7), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="latent_scale"):
        vae.decode(z, latent_scale=0.0)


def test_bf16_decode_runs(vae_dir: Path) -> None:
    model = CogVideoXVAE.from_pretrained(vae_dir, dtype=torch.bfloat16)
    frames = model.decode(latents(5))
    assert frames.dtype == torch.bfloat16 and frames.shape == (1, 3, 17, 16, 24)
    assert torch.isfinite(frames).all()


# ---------------------------------------------------------------------------------- loading: diffusers


@pytest.mark.parametrize("config", [TINY_VAE_CONFIG, COGVIDEOX_5B_VAE_CONFIG], ids=["tiny", "cogvideox-5b"])
def test_module_parameters_are_the_diffusers_decoder_keys(config: VAEConfig) -> None:
    with torch.device("meta"):
        decoder = Decoder3D(config)
    ours = {f"decoder.{k}": tuple(v.shape) for k, v in decoder.state_dict().items()}
    table = {k: v for k, v in diffusers_vae_parameter_shapes(config).items() if k.startswith("decoder.")}
    assert ours == table


def test_loads_bundle_root_and_reads_config(vae_dir: Path) -> None:
    model = CogVideoXVAE.from_pretrained(vae_dir.parent)  # a bundle holding vae/
    assert model.config == TINY_VAE_CONFIG
    assert model.dtype == torch.float32  # dtype=None keeps the stored dtype
    assert not any(p.requires_grad for p in model.parameters())


def test_encoder_keys_are_optional_and_ignored(vae_dir: Path, vae: CogVideoXVAE, tmp_path: Path) -> None:
    def edit(tensors: dict[str, Tensor]) -> None:
        for key in [k for k in tensors if not k.startswith("decoder.")]:
            del tensors[key]
        tensors["some_other_module.weight"] = torch.zeros(2)

    folder = edited_folder(vae_dir, tmp_path, edit)
    z = latents(3)
    torch.testing.assert_close(CogVideoXVAE.from_pretrained(folder).decode(z), vae.decode(z))


def test_missing_decoder_keys_are_listed(vae_dir: Path, tmp_path: Path) -> None:
    def edit(tensors: dict[str, Tensor]) -> None:
        del tensors["decoder.conv_out.conv.weight"]
        del tensors["decoder.up_blocks.3.resnets.0.conv_shortcut.bias"]

    with pytest.raises(VAEWeightsError) as error:
        CogVideoXVAE.from_pretrained(edited_folder(vae_dir, tmp_path, edit))
    message = str(error.value)
    assert "2 missing" in message
    assert "decoder.conv_out.conv.weight" in message
    assert "decoder.up_blocks.3.resnets.0.conv_shortcut.bias" in message


def test_misshapen_and_unexpected_decoder_keys_are_listed(vae_dir: Path, tmp_path: Path) -> None:
    def edit(tensors: dict[str, Tensor]) -> None:
        tensors["decoder.conv_in.conv.weight"] = torch.zeros(16, 16, 1, 3, 3)
        tensors["decoder.mid_block.resnets.2.conv1.conv.weight"] = torch.zeros(1)

    with pytest.raises(VAEWeightsError) as error:
        CogVideoXVAE.from_pretrained(edited_folder(vae_dir, tmp_path, edit))
    message = str(error.value)
    assert "decoder.conv_in.conv.weight (expected (16, 16, 3, 3, 3), found (16, 16, 1, 3, 3))" in message
    assert "1 unexpected: decoder.mid_block.resnets.2.conv1.conv.weight" in message


def test_config_that_does_not_match_the_weights(vae_dir: Path, tmp_path: Path) -> None:
    folder = copy_folder(vae_dir, tmp_path / "vae")
    config = json.loads((folder / "config.json").read_text())
    config["layers_per_block"] = 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(VAEWeightsError, match="layers_per_block=2"):
        CogVideoXVAE.from_pretrained(folder)


def test_config_validation_messages() -> None:
    with pytest.raises(VAEConfigError, match="_class_name"):
        VAEConfig.from_dict({"_class_name": "AutoencoderKL"})
    with pytest.raises(VAEConfigError, match="norm_num_groups"):
        VAEConfig.from_dict(
            {"block_out_channels": [8, 12], "norm_num_groups": 8, "temporal_compression_ratio": 2}
        )
    with pytest.raises(VAEConfigError, match="temporal_compression_ratio"):
        VAEConfig.from_dict({"temporal_compression_ratio": 3})
    with pytest.raises(VAEConfigError, match="use_post_quant_conv"):
        VAEConfig.from_dict({"use_post_quant_conv": True})
    with pytest.raises(VAEConfigError, match="down_block_types must all be 'CogVideoXDownBlock3D'"):
        VAEConfig.from_dict({"down_block_types": ["DownEncoderBlock2D"] * 4})
    with pytest.raises(VAEConfigError, match="3 down_block_types for 4 block_out_channels"):
        VAEConfig.from_dict({"down_block_types": ["CogVideoXDownBlock3D"] * 3})
    with pytest.raises(VAEConfigError, match="use_quant_conv must be true or false"):
        VAEConfig.from_dict({"use_quant_conv": "yes"})
    assert VAEConfig.from_dict({}) == COGVIDEOX_5B_VAE_CONFIG


def test_pickle_files_are_refused(vae_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "vae"
    folder.mkdir()
    shutil.copy(vae_dir / "config.json", folder / "config.json")
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(WeightsMissingError, match="pickle files, which are never loaded"):
        CogVideoXVAE.from_pretrained(folder)


@pytest.mark.usefixtures("no_unpickling")
def test_from_pretrained_unpickles_nothing(vae_dir: Path) -> None:
    CogVideoXVAE.from_pretrained(vae_dir).decode(latents(3))


def test_tiny_vae_is_deterministic(tmp_path: Path) -> None:
    a = make_tiny_vae(tmp_path / "a", seed=3)
    b = make_tiny_vae(tmp_path / "b", seed=3)
    c = make_tiny_vae(tmp_path / "c", seed=4)
    for name in (WEIGHTS, "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / WEIGHTS).read_bytes() != (c / WEIGHTS).read_bytes()


# ---------------------------------------------------------------------------------------- loading: SAT


def test_sat_key_map_examples_from_the_spec() -> None:
    levels = 4
    pairs = {
        "encoder.down.1.block.2.conv1.conv.weight": "encoder.down_blocks.1.resnets.2.conv1.conv.weight",
        "encoder.down.0.downsample.conv.weight": "encoder.down_blocks.0.downsamplers.0.conv.weight",
        "encoder.mid.block_1.norm1.weight": "encoder.mid_block.resnets.0.norm1.weight",
        "decoder.mid.block_2.norm2.conv_y.conv.bias": "decoder.mid_block.resnets.1.norm2.conv_y.conv.bias",
        "decoder.up.0.block.0.nin_shortcut.weight": "decoder.up_blocks.3.resnets.0.conv_shortcut.weight",
        "decoder.up.3.block.1.norm1.norm_layer.weight": "decoder.up_blocks.0.resnets.1.norm1.norm_layer.weight",
        "decoder.up.1.upsample.conv.bias": "decoder.up_blocks.2.upsamplers.0.conv.bias",
        "decoder.norm_out.conv_b.conv.weight": "decoder.norm_out.conv_b.conv.weight",
        "decoder.conv_in.conv.weight": "decoder.conv_in.conv.weight",
    }
    for sat, diffusers in pairs.items():
        assert sat_to_diffusers_key(sat, levels) == diffusers
        assert diffusers_to_sat_key(diffusers, levels) == sat
    assert sat_to_diffusers_key("loss.discriminator.blocks.0.weight", levels) is None


def sat_checkpoint(vae_dir: Path, path: Path, extra: dict | None = None) -> Path:
    tensors = load_file(vae_dir / WEIGHTS)
    levels = len(TINY_VAE_CONFIG.block_out_channels)
    state: dict = {diffusers_to_sat_key(k, levels): v for k, v in tensors.items()}
    assert all(sat_to_diffusers_key(k, levels) in tensors for k in state)  # the inverse is exact
    state["loss.logvar"] = torch.zeros(())
    state["loss.discriminator.conv.weight"] = torch.zeros(4, 3, 3, 3)
    state.update(extra or {})
    torch.save({"state_dict": state}, path)
    return path


def test_sat_checkpoint_loads_to_the_same_module(vae_dir: Path, vae: CogVideoXVAE, tmp_path: Path) -> None:
    path = sat_checkpoint(vae_dir, tmp_path / "3d-vae.pt")
    sat_vae = CogVideoXVAE.from_sat_checkpoint(path, config=TINY_VAE_CONFIG)
    assert sat_vae.latent_scale == 1.0  # the reference's eval.vae_scale_factor
    for key, value in vae.state_dict().items():
        assert torch.equal(sat_vae.state_dict()[key], value), key
    z = latents(5)
    torch.testing.assert_close(sat_vae.decode(z, latent_scale=0.7), vae.decode(z), atol=0, rtol=0)
    # A config.json path works as well.
    from_json = CogVideoXVAE.from_sat_checkpoint(path, config=vae_dir / "config.json", latent_scale=0.7)
    torch.testing.assert_close(from_json.decode(z), vae.decode(z), atol=0, rtol=0)


def test_sat_checkpoint_with_the_wrong_config_lists_keys(vae_dir: Path, tmp_path: Path) -> None:
    path = sat_checkpoint(vae_dir, tmp_path / "3d-vae.pt")
    with pytest.raises(VAEWeightsError, match="missing"):
        CogVideoXVAE.from_sat_checkpoint(path)  # default: the CogVideoX-5b config


class NotATensor:
    pass


def test_sat_checkpoint_never_unpickles_code(vae_dir: Path, tmp_path: Path) -> None:
    path = sat_checkpoint(vae_dir, tmp_path / "3d-vae.pt", extra={"evil": NotATensor()})
    with pytest.raises(VAEWeightsError, match="tensors-only"):
        CogVideoXVAE.from_sat_checkpoint(path, config=TINY_VAE_CONFIG)

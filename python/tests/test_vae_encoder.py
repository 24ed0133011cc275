"""CogVideoX VAE encoder: windows and frame counts, loading, an independent float64 reference, caches,
the moments sampler, SAT checkpoints, and the oneDNN route for CPU convolutions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn
from vae_helpers import WEIGHTS, PerFrameGroupNorm, edited_folder

from ttt_video.demo.tiny_parts import TINY_VAE_CONFIG, diffusers_vae_parameter_shapes, make_tiny_vae
from ttt_video.vae import (
    COGVIDEOX_5B_VAE_CONFIG,
    CogVideoXVAE,
    Encoder3D,
    VAEConfig,
    VAEConfigError,
    VAEConv2d,
    VAEConv3d,
    VAEWeightsError,
    diffusers_to_sat_key,
    encoded_frame_count,
    frame_windows,
    sample_from_moments,
    split_moments,
)

BOTH = ("encoder", "decoder")


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_vae(tmp_path_factory.mktemp("tiny") / "vae", seed=0)


@pytest.fixture(scope="module")
def vae(vae_dir: Path) -> CogVideoXVAE:
    return CogVideoXVAE.from_pretrained(vae_dir, parts=("encoder",))


def clip(frames: int, h: int = 16, w: int = 24, batch: int = 1, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, h, w, generator=generator) * 2 - 1


def relative_error(a: Tensor, b: Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


# ------------------------------------------------------------------------------ windows and frames


def test_frame_windows() -> None:
    assert frame_windows(49) == [(0, 17), (17, 33), (33, 49)]
    assert frame_windows(145) == [(0, 17)] + [(s, s + 16) for s in range(17, 145, 16)]
    assert frame_windows(1) == [(0, 1)]
    assert frame_windows(17) == [(0, 17)]
    assert frame_windows(41) == [(0, 25), (25, 41)]
    assert frame_windows(49, window=8) == [(0, 9)] + [(s, s + 8) for s in range(9, 49, 8)]  # diffusers
    assert frame_windows(49, window=48) == [(0, 49)]  # the reference
    with pytest.raises(ValueError, match=r"4k\+1 frames .* Trim the clip to 45 frames, or extend it to 49"):
        frame_windows(48)
    with pytest.raises(ValueError, match="multiple of 4"):
        frame_windows(49, window=6)
    with pytest.raises(ValueError, match="positive number of frames"):
        frame_windows(0)


@pytest.mark.parametrize(("frames", "latent"), [(1, 1), (5, 2), (49, 13), (145, 37), (289, 73), (1009, 253)])
@pytest.mark.parametrize("window", [8, 16, 48])
def test_encoded_frame_count(frames: int, latent: int, window: int) -> None:
    assert encoded_frame_count(frames, window=window) == latent == (frames - 1) // 4 + 1


def test_encode_shapes_stream_and_batch(vae: CogVideoXVAE) -> None:
    x = clip(49, batch=2)
    moments = vae.encode(x)
    assert moments.shape == (2, 32, 13, 2, 3) and moments.dtype == torch.float32
    assert vae.num_latent_frames(49) == 13 and vae.num_latent_frames(145) == 37
    stream = vae.encode_stream(x)
    first = next(stream)
    assert torch.is_grad_enabled(), "encode_stream must not leak no_grad to its consumer"
    chunks = [first, *stream]
    assert [c.shape[2] for c in chunks] == [5, 4, 4]
    assert torch.equal(torch.cat(chunks, dim=2), moments)
    torch.testing.assert_close(vae.encode(x[1:]), moments[1:], atol=1e-5, rtol=1e-5)
    assert moments[:, :16].std() > 0.1  # not constant


def test_bad_inputs_are_refused(vae: CogVideoXVAE, vae_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"4k\+1"):
        vae.encode(clip(48))
    with pytest.raises(ValueError, match="divisible by 8"):
        vae.encode(clip(5, h=12))
    with pytest.raises(ValueError, match="3 channels"):
        vae.encode(torch.zeros(1, 5, 3, 16, 16))
    with pytest.raises(ValueError, match="float frames"):
        vae.encode(torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="parts=\\('decoder',\\)"):
        vae.decode(torch.zeros(1, 16, 3, 2, 2))
    decoder_only = CogVideoXVAE.from_pretrained(vae_dir)
    assert decoder_only.encoder is None
    with pytest.raises(RuntimeError, match="parts=\\('encoder',\\)"):
        decoder_only.encode(clip(5))
    with pytest.raises(ValueError, match="parts must be"):
        CogVideoXVAE.from_pretrained(vae_dir, parts=("vae",))


# ------------------------------------------------------------------------- an independent reference


def causal_conv(x: Tensor, sd: dict[str, Tensor], name: str) -> Tensor:
    """Whole-clip causal conv: k-1 copies of the clip's first frame in front, zero padding in space."""
    weight = sd[f"{name}.weight"]
    k = weight.shape[-1]
    x = torch.cat([x[:, :, :1]] * (k - 1) + [x], dim=2)
    return F.conv3d(x, weight, sd[f"{name}.bias"], padding=(0, k // 2, k // 2))


def windowed_group_norm(
    x: Tensor, sd: dict[str, Tensor], name: str, windows: list[int], eps: float
) -> Tensor:
    """GroupNorm whose statistics span each window's frames only (4 groups, as in the tiny config)."""
    parts = x.split(windows, dim=2)
    normed = [F.group_norm(p, 4, sd[f"{name}.weight"], sd[f"{name}.bias"], eps) for p in parts]
    return torch.cat(normed, dim=2)


def resnet(x: Tensor, sd: dict[str, Tensor], name: str, windows: list[int], eps: float) -> Tensor:
    h = causal_conv(
        F.silu(windowed_group_norm(x, sd, f"{name}.norm1", windows, eps)), sd, f"{name}.conv1.conv"
    )
    h = causal_conv(
        F.silu(windowed_group_norm(h, sd, f"{name}.norm2", windows, eps)), sd, f"{name}.conv2.conv"
    )
    if f"{name}.conv_shortcut.weight" in sd:
        x = F.conv3d(x, sd[f"{name}.conv_shortcut.weight"], sd[f"{name}.conv_shortcut.bias"])
    return x + h


def downsample(x: Tensor, sd: dict[str, Tensor], name: str, windows: list[int], time: bool):
    if time:  # the clip's first frame alone, then the mean of each following pair
        x = torch.cat([x[:, :, :1], (x[:, :, 1::2] + x[:, :, 2::2]) / 2], dim=2)
        windows = [(windows[0] - 1) // 2 + 1] + [w // 2 for w in windows[1:]]
    x = F.pad(x, (0, 1, 0, 1))
    weight = sd[f"{name}.conv.weight"].unsqueeze(2)  # a (1, 3, 3) Conv3d with stride (1, 2, 2)
    return F.conv3d(x, weight, sd[f"{name}.conv.bias"], stride=(1, 2, 2)), windows


def reference_encode(x: Tensor, sd: dict[str, Tensor], config: VAEConfig, windows: list[int]) -> Tensor:
    """The encoder layer by layer over the whole clip (float64), GroupNorm per window (spec 7.3)."""
    eps, levels = config.norm_eps, len(config.block_out_channels)
    h = causal_conv(x, sd, "encoder.conv_in.conv")
    for i in range(levels):
        for j in range(config.layers_per_block):
            h = resnet(h, sd, f"encoder.down_blocks.{i}.resnets.{j}", windows, eps)
        if i < levels - 1:
            h, windows = downsample(h, sd, f"encoder.down_blocks.{i}.downsamplers.0", windows, i < 2)
    for j in range(2):
        h = resnet(h, sd, f"encoder.mid_block.resnets.{j}", windows, eps)
    h = F.silu(windowed_group_norm(h, sd, "encoder.norm_out", windows, 1e-6))
    return causal_conv(h, sd, "encoder.conv_out.conv")


@pytest.mark.parametrize(("frames", "window"), [(49, 16), (41, 16), (49, 8), (5, 16)])
def test_encode_matches_the_float64_reference(vae: CogVideoXVAE, vae_dir: Path, frames: int, window: int):
    sd = {k: v.double() for k, v in load_file(vae_dir / WEIGHTS).items() if k.startswith("encoder.")}
    x = clip(frames)
    windows = [end - start for start, end in frame_windows(frames, window)]
    expected = reference_encode(x.double(), sd, TINY_VAE_CONFIG, windows)
    moments = vae.encode(x, window=window)
    assert moments.shape == expected.shape
    torch.testing.assert_close(moments.double(), expected, atol=2e-5, rtol=1e-4)


def test_windows_by_hand_with_the_cache_equal_encode(vae: CogVideoXVAE) -> None:
    x = clip(49)
    moments = vae.encode(x)
    cache: dict = {}
    with torch.no_grad():
        by_hand = [vae.encoder(x[:, :, s:e], cache) for s, e in frame_windows(49)]
        without_cache = [vae.encoder(x[:, :, s:e]) for s, e in frame_windows(49)]
    assert torch.equal(torch.cat(by_hand, dim=2), moments)
    assert torch.equal(without_cache[0], moments[:, :, :5])  # the first window needs no context
    assert not torch.allclose(torch.cat(without_cache, dim=2), moments, atol=1e-3)
    # Causality: a prefix of whole windows encodes to a prefix of the moments.
    assert torch.equal(vae.encode(x[:, :, :33]), moments[:, :, :9])


def test_window_size_matters_only_through_groupnorm(vae_dir: Path) -> None:
    model = CogVideoXVAE.from_pretrained(vae_dir, parts=("encoder",))
    x = clip(49)
    assert not torch.allclose(model.encode(x), model.encode(x, window=48), atol=1e-3)
    for module in list(model.encoder.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.GroupNorm):
                setattr(module, name, PerFrameGroupNorm(child))
    torch.testing.assert_close(model.encode(x), model.encode(x, window=48), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.encode(x), model.encode(x, window=8), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ loading


@pytest.mark.parametrize("config", [TINY_VAE_CONFIG, COGVIDEOX_5B_VAE_CONFIG], ids=["tiny", "cogvideox-5b"])
def test_module_parameters_are_the_diffusers_encoder_keys(config: VAEConfig) -> None:
    with torch.device("meta"):
        encoder = Encoder3D(config)
    ours = {f"encoder.{k}": tuple(v.shape) for k, v in encoder.state_dict().items()}
    table = {k: v for k, v in diffusers_vae_parameter_shapes(config).items() if k.startswith("encoder.")}
    assert ours == table


def test_parts_load_only_their_keys(vae_dir: Path, vae: CogVideoXVAE) -> None:
    assert vae.decoder is None and vae.quant_conv is None
    assert all(k.startswith("encoder.") for k in vae.state_dict())
    both = CogVideoXVAE.from_pretrained(vae_dir, parts=("decoder", "encoder"))
    assert both.parts == BOTH
    x = clip(5)
    assert torch.equal(both.encode(x), vae.encode(x))
    assert both.decode(torch.zeros(1, 16, 2, 2, 3)).shape == (1, 3, 8, 16, 24)


def test_missing_misshapen_and_unexpected_encoder_keys_are_named(vae_dir: Path, tmp_path: Path) -> None:
    def edit(tensors: dict[str, Tensor]) -> None:
        del tensors["encoder.down_blocks.1.resnets.0.conv_shortcut.weight"]
        tensors["encoder.conv_out.conv.weight"] = torch.zeros(16, 16, 3, 3, 3)
        tensors["quant_conv.weight"] = torch.zeros(6, 6, 1, 1, 1)

    folder = edited_folder(vae_dir, tmp_path, edit)
    with pytest.raises(VAEWeightsError) as error:
        CogVideoXVAE.from_pretrained(folder, parts=("encoder",))
    message = str(error.value)
    assert "1 missing: encoder.down_blocks.1.resnets.0.conv_shortcut.weight" in message
    assert "encoder.conv_out.conv.weight (expected (32, 16, 3, 3, 3), found (16, 16, 3, 3, 3))" in message
    assert "1 unexpected: quant_conv.weight" in message
    CogVideoXVAE.from_pretrained(folder)  # the decoder alone does not read the encoder keys


def test_quant_conv_is_applied_when_the_config_has_it(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY_VAE_CONFIG, out_channels=16, use_quant_conv=True)
    folder = make_tiny_vae(tmp_path / "vae", config=config)
    model = CogVideoXVAE.from_pretrained(folder, parts=("encoder",))
    x = clip(9)
    cache: dict = {}
    with torch.no_grad():
        raw = torch.cat([model.encoder(x[:, :, s:e], cache) for s, e in frame_windows(9)], dim=2)
    weight, bias = model.quant_conv.weight[:, :, 0, 0, 0], model.quant_conv.bias
    expected = torch.einsum("oc,bcthw->bothw", weight, raw) + bias[:, None, None, None]
    torch.testing.assert_close(model.encode(x), expected, atol=1e-5, rtol=1e-5)


def test_quant_conv_with_image_channels_is_refused(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY_VAE_CONFIG, use_quant_conv=True)  # 2 * 3 channels vs 32 moments
    folder = make_tiny_vae(tmp_path / "vae", config=config)
    with pytest.raises(VAEConfigError, match="out_channels == latent_channels"):
        CogVideoXVAE.from_pretrained(folder, parts=("encoder",))
    CogVideoXVAE.from_pretrained(folder)  # decoding does not involve quant_conv


def test_sat_checkpoint_loads_the_encoder(vae_dir: Path, vae: CogVideoXVAE, tmp_path: Path) -> None:
    levels = len(TINY_VAE_CONFIG.block_out_channels)
    state = {diffusers_to_sat_key(k, levels): v for k, v in load_file(vae_dir / WEIGHTS).items()}
    assert "encoder.down.1.block.0.nin_shortcut.weight" in state and "encoder.mid.block_2.norm1.bias" in state
    state["loss.logvar"] = torch.zeros(())
    torch.save({"state_dict": state}, tmp_path / "3d-vae.pt")
    sat = CogVideoXVAE.from_sat_checkpoint(tmp_path / "3d-vae.pt", config=TINY_VAE_CONFIG, parts=BOTH)
    for key, value in vae.state_dict().items():
        assert torch.equal(sat.state_dict()[key], value), key
    x = clip(9)
    assert torch.equal(sat.encode(x), vae.encode(x))


# ------------------------------------------------------------------------------- the moments sampler


def test_sample_from_moments_formula_and_seeding() -> None:
    moments = torch.randn(2, 8, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    moments[0, 4, 0] = 100.0  # logvar clamped to 20
    moments[0, 5, 0] = -100.0  # logvar clamped to -30
    latent = sample_from_moments(moments, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(2, 4, 3, 2, 2, generator=torch.Generator().manual_seed(7))
    mean, logvar = moments[:, :4], moments[:, 4:]
    expected = mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * noise
    torch.testing.assert_close(latent, expected)
    torch.testing.assert_close(latent[0, 0, 0], mean[0, 0, 0] + 22026.4658 * noise[0, 0, 0])
    again = sample_from_moments(moments, generator=torch.Generator().manual_seed(7))
    other = sample_from_moments(moments, generator=torch.Generator().manual_seed(8))
    assert torch.equal(latent, again) and not torch.allclose(latent, other)
    # A stored clip (T, 2C, h, w) has its channels in dim 1 as well; bf16 moments use the same noise.
    stored = moments[0].transpose(0, 1)
    assert sample_from_moments(stored, generator=torch.Generator().manual_seed(7)).shape == (3, 4, 2, 2)
    half = sample_from_moments(moments.bfloat16(), generator=torch.Generator().manual_seed(7))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), expected, atol=0.05, rtol=0.02)


def test_sample_from_moments_statistics_and_errors() -> None:
    moments = torch.cat([torch.full((1, 1, 20000), 3.0), torch.full((1, 1, 20000), 2 * 0.6931472)], dim=1)
    latent = sample_from_moments(moments, generator=torch.Generator().manual_seed(0))
    assert abs(latent.mean().item() - 3.0) < 0.05 and abs(latent.std().item() - 2.0) < 0.05  # 99.9%+
    with pytest.raises(ValueError, match="even channel count"):
        split_moments(torch.zeros(1, 3, 2))
    with pytest.raises(TypeError, match="torch.Generator"):
        sample_from_moments(moments, generator=0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- oneDNN route for CPU convs


@pytest.fixture
def onednn_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    calls: list[tuple[int, ...]] = []
    original = torch.mkldnn_convolution

    def counting(x: Tensor, *args: object) -> Tensor:
        calls.append(tuple(x.shape))
        return original(x, *args)

    monkeypatch.setattr(torch, "mkldnn_convolution", counting)
    return calls


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_single_layers_equal_plain_convolutions(onednn_calls: list) -> None:
    conv3 = VAEConv3d(8, 8, 3, padding=(0, 1, 1))
    conv2 = VAEConv2d(8, 8, 3, stride=2)
    x3, x2 = torch.randn(1, 8, 5, 9, 13), torch.randn(4, 8, 9, 13)
    assert relative_error(conv3(x3), F.conv3d(x3, conv3.weight, conv3.bias, padding=(0, 1, 1))) < 1e-5
    assert relative_error(conv2(x2), F.conv2d(x2, conv2.weight, conv2.bias, stride=2)) < 1e-5
    assert onednn_calls == [(1, 8, 5, 9, 13), (4, 8, 9, 13)]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_fast_path_equals_the_plain_path(vae_dir: Path, onednn_calls: list) -> None:
    """Tolerance 1e-5 of the largest magnitude: oneDNN sums in another order (measured ~2e-6)."""
    model = CogVideoXVAE.from_pretrained(vae_dir, parts=BOTH)
    x, z = clip(17), torch.randn(1, 16, 5, 2, 3, generator=torch.Generator().manual_seed(3))
    fast_moments, fast_frames = model.encode(x), model.decode(z, clamp=False)
    assert len(onednn_calls) > 50
    onednn_calls.clear()
    model.set_fast_cpu_convolutions(False)
    plain_moments, plain_frames = model.encode(x), model.decode(z, clamp=False)
    assert onednn_calls == []
    assert relative_error(fast_moments, plain_moments) < 1e-5
    assert relative_error(fast_frames, plain_frames) < 1e-5
    # Other dtypes keep the normal path.
    model.set_fast_cpu_convolutions(True)
    half = CogVideoXVAE.from_pretrained(vae_dir, dtype=torch.bfloat16, parts=BOTH)
    half.encode(x[:, :, :5])
    half.decode(z[:, :, :1])
    assert onednn_calls == []

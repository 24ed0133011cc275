"""`DiTConfig.sincos_pos_embedding`: fixed sin-cos position embeddings of the video tokens (models/sincos.py)."""

import math

import pytest
import torch

from ttt_video.models import DiTConfig, TTTVideoDiT, build_config
from ttt_video.models.sincos import (
    segment_frame_positions,
    sincos_1d,
    split_dims,
    video_position_embedding,
)


def test_sincos_1d_values():
    table = sincos_1d(torch.tensor([0, 1, 5]), 8)
    assert torch.equal(table[0], torch.tensor([0.0] * 4 + [1.0] * 4, dtype=torch.float64))
    omegas = [10000 ** (-i / 4) for i in range(4)]
    assert torch.allclose(
        table[2],
        torch.tensor(
            [math.sin(5 * w) for w in omegas] + [math.cos(5 * w) for w in omegas], dtype=torch.float64
        ),
    )
    with pytest.raises(ValueError, match="positive even"):
        sincos_1d(torch.tensor([0]), 7)


def test_frames_are_placed_inside_their_segment():
    assert segment_frame_positions(37, 12, 1).tolist() == list(range(13)) + list(range(1, 13)) * 2
    assert split_dims(64) == (16, 24, 24) and split_dims(3072) == (768, 1152, 1152)


def test_every_segment_gets_the_same_embeddings_and_every_token_its_own():
    table = video_position_embedding(37, 4, 6, 64, 12, 1)
    per_frame = table.reshape(37, 24, 64)
    assert torch.equal(per_frame[1:13], per_frame[13:25]) and torch.equal(per_frame[13:25], per_frame[25:37])
    first = per_frame[:13].reshape(-1, 64)
    assert torch.cdist(first, first).add(torch.eye(len(first)) * 10).min() > 0.1  # no two tokens alike


def constant_input_outputs(sincos: bool) -> torch.Tensor:
    # rope_bf16 off: the reference's bf16 rotation differs slightly by place, which is not the point here
    config = build_config("tiny", ssm_layer="none", sincos_pos_embedding=sincos, rope_bf16=False)
    model = TTTVideoDiT(config, seed=0).eval()
    latents = torch.ones(1, 13, 16, 8, 12) * 0.3  # the same latent everywhere: a plain frame
    text = torch.randn(1, 1, 8, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(latents, text, torch.tensor([500]))  # (1, 13, 16, 8, 12)


def test_without_it_places_on_a_plain_frame_differ_only_faintly():
    """RoPE alone is relative: on a plain input, places differ only through which keys each place sees
    (the frame's edges), faintly; the embeddings make every place distinct."""

    def spread(out):  # (16, 8, 12) latents -> per 2x2 patch; largest distance from the top-left token
        tokens = out[0, 5].reshape(16, 4, 2, 6, 2).permute(0, 1, 3, 2, 4).flatten(3)
        return float((tokens - tokens[:, :1, :1]).abs().max())

    plain, placed = spread(constant_input_outputs(False)), spread(constant_input_outputs(True))
    assert plain < 0.01 and placed > 20 * plain, (plain, placed)


def test_the_switch_is_off_by_default_and_in_the_demo_preset():
    assert DiTConfig.from_dict(
        dict(build_config("tiny").to_dict(), sincos_pos_embedding=False)
    ) == build_config("tiny")
    assert (
        build_config("tiny").sincos_pos_embedding is False
        and build_config("5B").sincos_pos_embedding is False
    )
    assert build_config("demo").sincos_pos_embedding is True

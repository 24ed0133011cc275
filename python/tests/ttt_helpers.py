"""Shared by the TTT layer tests: parameters that all matter to the output."""

from __future__ import annotations

import torch

from ttt_video.models.ttt import TTTBase, init_ttt_parameters


def init_so_every_parameter_matters(ttt: TTTBase) -> None:
    """``init_ttt_parameters(seed=3)``, then, from the global generator, values that make every parameter
    matter: learning-rate biases in [-1, 1], target-norm weights in [0.5, 1.5] and biases in [-0.5, 0.5],
    ``b1`` in [-0.5, 0.5] and ``W1`` ten times larger."""
    init_ttt_parameters(ttt, seed=3)
    with torch.no_grad():
        ttt.learnable_ttt_lr_bias.uniform_(-1, 1)
        ttt.ttt_norm_weight.uniform_(0.5, 1.5)
        ttt.ttt_norm_bias.uniform_(-0.5, 0.5)
        ttt.b1.uniform_(-0.5, 0.5)
        ttt.W1.mul_(10)

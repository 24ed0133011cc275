"""DCP folders are read without running pickled code: `.metadata` goes through an allowlist."""

import os
import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch import nn

from ttt_video.weights.dcp import load_dcp_weights, stored_metadata
from ttt_video.weights.errors import WeightsError


class RunsCode:
    """Unpickling this calls os.system: what a crafted .metadata would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def saved(folder, module: nn.Module):
    dcp.save(module.state_dict(), checkpoint_id=str(folder), no_dist=True)
    return folder


def test_a_real_checkpoint_loads_through_the_allowlist(tmp_path):
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    folder = saved(tmp_path / "ckpt", source)
    assert set(stored_metadata(folder)) == {"weight", "bias"}
    load_dcp_weights(target, folder)
    assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)


def test_a_crafted_metadata_file_is_refused_without_running_it(tmp_path):
    folder = saved(tmp_path / "ckpt", nn.Linear(3, 2))
    marker = tmp_path / "pwned"
    (folder / ".metadata").write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(WeightsError, match=r"posix\.system is not part of DCP metadata|os\.system"):
        load_dcp_weights(nn.Linear(3, 2), folder)
    with pytest.raises(WeightsError):
        stored_metadata(folder)
    assert not marker.exists()
    pickle.loads((folder / ".metadata").read_bytes())  # the plain unpickler would have run it
    assert marker.exists()

"""TP 2 x FSDP 2 (4 processes under torchrun) trains to the parameters of one process: gradients on two
meshes (FSDP over TP shards heads twice, ``_StridedShard``) and the clipping norm over both.

The arrangement of the reference is described in test_train_parallel.py.
"""

from __future__ import annotations

from test_train_parallel import check_layout, inputs  # noqa: F401 (inputs is a fixture)


def test_tp_fsdp_training_matches_one_process(tmp_path, inputs, monkeypatch):  # noqa: F811
    check_layout(tmp_path, inputs, "tp2xfsdp2", monkeypatch)

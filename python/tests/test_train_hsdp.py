"""HSDP (2 replicas x 2 shards, 4 processes under torchrun) trains to the parameters of one process.

The arrangement of the reference is described in test_train_parallel.py.
"""

from __future__ import annotations

from test_train_parallel import check_layout, inputs  # noqa: F401 (inputs is a fixture)


def test_hsdp_training_matches_one_process(tmp_path, inputs, monkeypatch):  # noqa: F811
    check_layout(tmp_path, inputs, "hsdp2x2", monkeypatch)

"""Start-up cost: what the sampling entry point imports. Each heavy module here cost seconds of the
spawn-to-first-step time once (scripts/bench_startup.py measures it); sampling needs none of them."""

import json
import subprocess
import sys

# Modules a sampling run must not import: the DCP stack (about 2 s, only for DCP folders), transformers
# (the T5 encoder and tokenizer are plain PyTorch and sentencepiece), and training's data pipeline.
NOT_FOR_SAMPLING = ("torch.distributed.checkpoint", "transformers", "ttt_video.training", "ttt_video.data")


def test_the_sample_command_imports_no_dcp_transformers_or_training():
    code = (
        "import json, sys\n"
        "from ttt_video.__main__ import build_parser\n"
        "build_parser('sample')\n"
        "import ttt_video.pipeline, ttt_video.loading\n"
        f"print(json.dumps(sorted(m for m in {list(NOT_FOR_SAMPLING)!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_safe_dcp_reader_is_still_importable_by_name():
    from torch.distributed.checkpoint import FileSystemReader

    from ttt_video.weights import dcp

    assert issubclass(dcp.SafeMetadataReader, FileSystemReader)
    assert dcp.SafeMetadataReader is dcp.SafeMetadataReader  # built once

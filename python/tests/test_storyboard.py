import base64

import pytest
from conftest import read_cases, read_vector

from ttt_video.contracts.storyboard import (
    StoryboardError,
    check_segment_counts,
    parse_storyboards,
    read_storyboard_file,
    segment_prompts,
    video_to_json,
)

VECTORS = read_vector("storyboard-prompts.json")
BAD = read_cases("bad-storyboards.jsonl")


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_scene_tokens(case):
    import json

    videos = parse_storyboards(json.dumps(case["videos"]), "json")
    check_segment_counts(videos, case["segments"])
    got = [
        {"prompts": p.prompts, "negative_prompts": p.negative_prompts} for p in map(segment_prompts, videos)
    ]
    assert got == case["expected"]
    # a video written back reads the same
    assert parse_storyboards(json.dumps([video_to_json(v) for v in videos]), "json") == videos


@pytest.mark.parametrize("case", BAD, ids=[c["name"] for c in BAD])
def test_bad_storyboard(case, tmp_path):
    f = tmp_path / case["file"]
    f.write_bytes(
        base64.b64decode(case["content_base64"]) if "content_base64" in case else case["content"].encode()
    )
    with pytest.raises(StoryboardError) as info:
        videos = read_storyboard_file(f)
        if "segments" in case:
            check_segment_counts(videos, case["segments"], f)
    assert info.value.code == case["code"]
    issues = {i.path: i for i in info.value.issues}
    assert case["path"] in issues, str(info.value)
    if "line" in case:
        assert issues[case["path"]].line == case["line"]
    assert str(f) in str(info.value)

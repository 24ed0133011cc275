"""Where a demo-world scene opens: its track centred in the frame (`world.start_position`)."""

from ttt_video.demo.world import STILL, X_RANGE, Y_RANGE, motion_offset, start_position


def test_scenes_open_with_their_track_centred_in_the_frame():
    assert start_position(STILL, 49) == (39, 23)
    assert start_position("moves right", 49) == (15, 23)  # x 15 -> 63 over 48 steps
    assert start_position("moves left", 49) == (63, 23)
    assert start_position("moves up", 49) == (39, 41)  # y 41 -> 5 (36 px at 3/4 px/frame)
    assert start_position("moves down", 48) == (39, 6)  # 47 steps: 35 px, 6 -> 41
    for motion in ("moves left", "moves right", "moves up", "moves down", STILL):
        for frames in (48, 49):
            x, y = start_position(motion, frames)
            dx, dy = motion_offset(motion, frames - 1)
            assert X_RANGE[0] <= min(x, x + dx) and max(x, x + dx) <= X_RANGE[1]
            assert Y_RANGE[0] <= min(y, y + dy) and max(y, y + dy) <= Y_RANGE[1]

"""The street-clean split: disjoint, complete, one recording per split, frames scaled for the judge."""
import re

import numpy as np
import pytest

from treefuse.data.street_split import FRAME_LONG_SIDE, HELD_OUT, JUDGE, SELECTION, TRAIN, load_frame, split_names
from treefuse.errors import TreefuseError
from treefuse.images import write_image

# Frames of one recording (SOURCES.md): they must never straddle two splits.
RECORDINGS = (range(24, 28), range(33, 36), range(36, 42), range(42, 46), range(49, 51))


def _number(name):
    return int(re.match(r"(\d+)\.", name).group(1))


def test_splits_are_disjoint_and_cover_the_50_frames():
    assert not set(TRAIN) & set(SELECTION) and not set(TRAIN) & set(JUDGE) and not set(SELECTION) & set(JUDGE)
    assert sorted(_number(n) for n in TRAIN + SELECTION + JUDGE) == list(range(1, 51))
    assert set(HELD_OUT) == set(SELECTION) | set(JUDGE)


def test_each_recording_stays_in_one_split():
    which = {_number(n): split for split in ("train", "selection", "judge") for n in split_names(split)}
    for recording in RECORDINGS:
        assert len({which[n] for n in recording}) == 1, recording


def test_unknown_split_is_refused():
    with pytest.raises(TreefuseError, match="judge"):
        split_names("test")


def test_frames_are_scaled_down_to_the_long_side_never_up(tmp_path):
    write_image(tmp_path / "big.png", np.zeros((400, 1280, 3), np.float32))
    write_image(tmp_path / "small.png", np.zeros((40, 64, 3), np.float32))
    assert load_frame(tmp_path / "big.png").shape == (200, FRAME_LONG_SIDE, 3)
    assert load_frame(tmp_path / "small.png").shape == (40, 64, 3)

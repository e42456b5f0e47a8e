"""The split of ../shared/data/street-clean (50 road frames) into training, selection and judge frames.

Written down before anything was scored. Frames of one recording stay in one split
(SOURCES.md: 024-027 are four cameras of one nuScenes instant, 033-035 one TuSimple clip,
042-045 one Udacity drive, 049-050 one PKLot camera), so no split sees another's scene.
- TRAIN: the backgrounds street rain is drawn on in training.
- SELECTION (`street-select`): for choosing among candidates and validating during training.
- JUDGE (`street-judge`): scored once per candidate, with the second renderer's rain
  (`data/judge_rain.py`, never used in training) and with the training renderer's; never trained on.
Frames are used at FRAME_LONG_SIDE pixels on their long side (the scale of a 640-px camera
stream, and what a CPU can score): `load_frame` does that.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from treefuse.errors import TreefuseError

STREET_DIR = "../shared/data/street-clean"
FRAME_LONG_SIDE = 640
SELECTION = ("004.jpg", "010.jpg", "016.png", "021.png", "042.jpg", "043.jpg", "044.jpg", "045.jpg",
             "049.jpg", "050.jpg")
JUDGE = ("002.jpg", "006.jpg", "009.jpg", "013.png", "018.png", "023.png", "024.jpg", "025.jpg", "026.jpg",
         "027.jpg", "033.png", "034.png", "035.png", "048.jpg")
TRAIN = ("001.jpg", "003.jpg", "005.jpg", "007.jpg", "008.jpg", "011.png", "012.png", "014.png", "015.png",
         "017.png", "019.png", "020.png", "022.png", "028.jpg", "029.jpg", "030.jpg", "031.jpg", "032.jpg",
         "036.jpg", "037.jpg", "038.jpg", "039.jpg", "040.jpg", "041.jpg", "046.jpg", "047.jpg")
SPLITS = {"train": TRAIN, "selection": SELECTION, "judge": JUDGE}
HELD_OUT = SELECTION + JUDGE  # what a training config must exclude (data.street_exclude)


def split_names(split: str) -> tuple[str, ...]:
    """The frame names of a split: train, selection or judge."""
    if split not in SPLITS:
        raise TreefuseError(f"unknown street split {split!r}; choose one of {sorted(SPLITS)}")
    return SPLITS[split]


def load_frame(path: str | Path, long_side: int = FRAME_LONG_SIDE) -> np.ndarray:
    """A frame as HxWx3 uint8, scaled (Lanczos) so its long side is `long_side` (never enlarged)."""
    from PIL import Image

    from treefuse.images import read_image

    frame = np.round(read_image(path) * 255.0).astype(np.uint8)
    height, width = frame.shape[:2]
    scale = long_side / max(height, width)
    if scale >= 1.0:
        return frame
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.LANCZOS))

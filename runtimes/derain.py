"""Derain image and video files and folders with any runner, keeping names, never touching inputs.

Images keep their bit depth (16-bit PNG stays 16-bit), alpha channel (passed through) and
grayscale-ness (derained as RGB, written back as luma); EXIF orientation is applied on read.
`tile` bounds memory for any resolution (see runtimes/tiling.py for the seam guarantee).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.images import check_image, from_batch, is_image_path, list_images, read_picture, to_batch, write_picture
from treefuse.runtimes.base import Runner
from treefuse.runtimes.tiling import DEFAULT_OVERLAP, RECEPTIVE_RADIUS, check_tiling, derain_tiled, receptive_radius
from treefuse.runtimes.video import check_video, derain_video, is_video_path


def _is_input(path: Path) -> bool:
    return is_image_path(path) or is_video_path(path)


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders into image/video files, refusing anything missing or of another type."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item) + sorted(p for p in item.iterdir() if p.is_file() and is_video_path(p))
            if not found:
                raise TreefuseError(f"{item} holds no images")
            files.extend(found)
        elif item.is_file():
            if not _is_input(item):
                raise TreefuseError(f"{item} is not an image or video file "
                                    "(expected one of .png .jpg .bmp .tif .webp .mp4 .mov .mkv .avi .webm)")
            files.append(item)
        else:
            raise TreefuseError(f"input not found: {item}")
    names = [f.name for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TreefuseError(f"several inputs share the name {duplicates[0]}; derain them into separate --out folders")
    return files


def model_radius(runner: Runner) -> int:
    """The receptive radius of the runner's model when it records its config, else the shipped model's."""
    config = runner.describe().get("config")
    return receptive_radius(ModelConfig.from_dict(config)) if isinstance(config, dict) else RECEPTIVE_RADIUS


def frame_deraining(runner: Runner, tile: int | None = None,
                    overlap: int = DEFAULT_OVERLAP) -> Callable[[np.ndarray], np.ndarray]:
    """HxWx3 -> HxWx3 through the runner, whole or tiled."""
    if tile is not None:
        check_tiling(tile, overlap)
        margin = model_radius(runner)
        return lambda rgb: derain_tiled(runner.infer, rgb, tile, overlap, margin)
    return lambda rgb: from_batch(runner.infer(to_batch(rgb)))


def derain_files(runner: Runner, files: list[Path], out_dir: str | Path, progress: bool = False,
                 tile: int | None = None, overlap: int = DEFAULT_OVERLAP) -> list[Path]:
    """Write each derained image or video to out_dir under its own name; returns the written paths."""
    out_dir = Path(out_dir)
    targets = [out_dir / f.name for f in files]
    for source, target in zip(files, targets):
        if target.resolve() == source.resolve():
            raise TreefuseError(f"--out would overwrite the input {source}; choose another folder")
    derain = frame_deraining(runner, tile, overlap)
    for source in files:  # refuse a corrupt input before anything is written
        check_video(source) if is_video_path(source) else check_image(source)
    pairs = zip(files, targets)
    if progress:
        from tqdm import tqdm
        pairs = tqdm(list(pairs), desc="derain", unit="file")
    written = []
    for source, target in pairs:
        if is_video_path(source):
            derain_video(derain, source, target, progress=progress)
        else:
            picture = read_picture(source)
            write_picture(target, np.clip(derain(picture.rgb), 0, 1), like=picture)
        written.append(target)
    return written

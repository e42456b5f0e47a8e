"""Derain image and video files and folders with any runner, keeping names, never touching inputs.

Images keep their bit depth (16-bit PNG stays 16-bit), alpha channel (passed through) and
grayscale-ness (derained as RGB, written back as luma); EXIF orientation is applied on read.
`tile` bounds memory for any resolution (see runtimes/applications/tiling.py for the seam guarantee).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.images import check_image, from_batch, image_size, is_image_path, list_images, to_batch
from treefuse.progress import progress_bar
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.measurements.memory import available_memory_bytes
from treefuse.runtimes.applications.picture import read_picture, write_picture
from treefuse.runtimes.applications.tiling import check_tiling, derain_tiled, exact_overlap, receptive_radius
from treefuse.runtimes.applications.video import check_video, derain_video, is_video_path


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
    """The receptive radius of the model, from the artifact's own config (every format records it)."""
    config = runner.artifact().config
    if not isinstance(config, dict):
        raise TreefuseError(f"{runner.path} records no model config, so tiles cannot be made exact; "
                            "re-export it with this treefuse, or derain without --tile")
    return receptive_radius(ModelConfig.from_dict(config))


def frame_deraining(runner: Runner, tile: int | None = None,
                    overlap: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """HxWx3 -> HxWx3 through the runner, whole or tiled (overlap by default exact for the artifact's model)."""
    if tile is not None:
        margin = model_radius(runner)
        overlap = exact_overlap(margin) if overlap is None else overlap
        check_tiling(tile, overlap)
        return lambda rgb: checked_output(runner, rgb, derain_tiled(runner.infer, rgb, tile, overlap, margin))
    return lambda rgb: checked_output(runner, rgb, from_batch(runner.infer(to_batch(rgb))))


# Memory one whole-image call takes per pixel, a lower bound measured at 512x512..768x768 (peak RSS delta):
# ONNX Runtime ~550-700 bytes, PyTorch eager ~1,100-1,800. A 20-megapixel photo needs 11-35 GB.
WHOLE_IMAGE_BYTES_PER_PIXEL = 500


def check_whole_image_fits(path: Path) -> None:
    """Refuse, before it is read, an image too large to derain whole in the free memory (it would be OOM-killed)."""
    height, width = image_size(path)
    needed, free = height * width * WHOLE_IMAGE_BYTES_PER_PIXEL, available_memory_bytes()
    if free is not None and needed > free:
        raise TreefuseError(f"{path} is {height}x{width}: deraining it whole needs over {needed / 2**30:.1f} GiB, "
                            f"{free / 2**30:.1f} GiB are free; pass --tile 1024 (tiles bound the memory)")


def checked_output(runner: Runner, rgb: np.ndarray, derained: np.ndarray) -> np.ndarray:
    """`derained`, once it is known to be an image of the input's shape with finite values: never write garbage."""
    if derained.shape != rgb.shape:
        raise TreefuseError(f"{runner.spec} turned a {rgb.shape[0]}x{rgb.shape[1]} image into shape {derained.shape}; "
                            "nothing was written: is it a treefuse model?")
    if not np.isfinite(derained).all():
        raise TreefuseError(f"{runner.spec} gave NaN or Inf pixels; nothing was written: check the model with "
                            "`treefuse parity --ref torch:W --cand ...`")
    return derained


def derain_files(runner: Runner, files: list[Path], out_dir: str | Path, progress: bool = False,
                 tile: int | None = None, overlap: int | None = None) -> list[Path]:
    """Write each derained image or video to out_dir under its own name; returns the written paths."""
    out_dir = Path(out_dir)
    targets = [out_dir / f.name for f in files]
    for source, target in zip(files, targets):
        if target.resolve() == source.resolve():
            raise TreefuseError(f"--out would overwrite the input {source}; choose another folder")
    derain = frame_deraining(runner, tile, overlap)
    for source in files:  # refuse a corrupt input before anything is written
        check_video(source) if is_video_path(source) else check_image(source)
        if tile is None and not is_video_path(source):
            check_whole_image_fits(source)
    made_out_dir = not out_dir.exists()
    written: list[Path] = []
    try:
        for source, target in progress_bar(list(zip(files, targets)), progress and len(files) > 1, desc="derain",
                                           unit="file"):
            if is_video_path(source):
                derain_video(derain, source, target, progress=progress)
            else:
                picture = read_picture(source)
                write_picture(target, np.clip(derain(picture.rgb), 0, 1), like=picture)
            written.append(target)
    finally:
        if made_out_dir and not written and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed first file leaves no empty output folder behind
    return written

"""Derain image files and folders with any runner, keeping names, never touching inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.images import check_image, from_batch, is_image_path, list_images, read_image, to_batch, write_image
from treefuse.runtimes.base import Runner


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders into image files, refusing anything missing or not an image."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise TreefuseError(f"{item} holds no images")
            files.extend(found)
        elif item.is_file():
            if not is_image_path(item):
                raise TreefuseError(f"{item} is not an image file (expected one of .png .jpg .bmp .tif .webp)")
            files.append(item)
        else:
            raise TreefuseError(f"input not found: {item}")
    names = [f.name for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TreefuseError(f"several inputs share the name {duplicates[0]}; derain them into separate --out folders")
    return files


def derain_files(runner: Runner, files: list[Path], out_dir: str | Path, progress: bool = False) -> list[Path]:
    """Write each derained image to out_dir under its own name; returns the written paths."""
    out_dir = Path(out_dir)
    targets = [out_dir / f.name for f in files]
    for source, target in zip(files, targets):
        if target.resolve() == source.resolve():
            raise TreefuseError(f"--out would overwrite the input {source}; choose another folder")
    for source in files:  # refuse a corrupt image before anything is written
        check_image(source)
    pairs = zip(files, targets)
    if progress:
        from tqdm import tqdm
        pairs = tqdm(list(pairs), desc="derain", unit="img")
    written = []
    for source, target in pairs:
        derained = from_batch(runner.infer(to_batch(read_image(source))))
        write_image(target, np.clip(derained, 0, 1))
        written.append(target)
    return written

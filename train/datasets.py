"""Paired-data loaders for the layouts people download, decoded once into uint8 arrays.

Layouts (a `LAYOUT:` prefix on the path picks one; without it the folder's shape decides):
  paired:PATH        rain/NAME + clean/NAME (what ../shared/data uses)
  rain100h:PATH      rain-NNN.png + norain-NNN.png in one folder (the Rain100H release)
  rain1400:PATH      rainy_image/N_k.jpg (k renderings) + ground_truth/N.jpg (Rain1400, Rain12600)
  side_by_side:PATH  one image per pair, rainy left half, clean right half (Rain1200 / DID-MDN)
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.files import sha256_file
from treefuse.images import is_image_path, list_images, read_image

LAYOUTS = ("paired", "rain100h", "rain1400", "side_by_side")


@dataclass(frozen=True)
class PairFiles:
    """Where one (rainy, clean) pair lives; `number` is what ranges like 001-040 select on."""

    key: str
    number: int
    rain: Path
    clean: Path  # the same file as `rain` for side-by-side pairs
    side_by_side: bool = False


@dataclass(frozen=True)
class ImagePair:
    """A decoded pair: HxWx3 uint8 arrays of equal size."""

    key: str
    rain: np.ndarray
    clean: np.ndarray


def parse_range(text: str) -> list[tuple[int, int]]:
    """'001-040,45' -> [(1, 40), (45, 45)]; '' selects everything (an empty list)."""
    spans = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise TreefuseError(f"pair range {text!r}: '{part}' is not N or N-M (for example 001-040)")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise TreefuseError(f"pair range {text!r}: '{part}' runs backwards")
        spans.append((low, high))
    return spans


def select(pairs: list[PairFiles], text: str) -> list[PairFiles]:
    """The pairs whose number falls in the range `text`."""
    spans = parse_range(text)
    return [p for p in pairs if not spans or any(lo <= p.number <= hi for lo, hi in spans)]


def _number(stem: str, path: Path) -> int:
    match = re.match(r"\d+", stem)
    if not match:
        raise TreefuseError(f"{path}: cannot read a pair number from the name (expected it to start with digits)")
    return int(match.group())


def _paired(folder: Path) -> list[PairFiles]:
    pairs = []
    for rainy in list_images(folder / "rain"):
        partner = folder / "clean" / rainy.name
        if not partner.is_file():
            raise TreefuseError(f"{rainy} has no clean partner (expected {partner})")
        pairs.append(PairFiles(rainy.stem, _number(rainy.stem, rainy), rainy, partner))
    return pairs


def _rain100h(folder: Path) -> list[PairFiles]:
    pairs = []
    for rainy in list_images(folder):
        match = re.fullmatch(r"rain-(\d+)", rainy.stem)
        if not match:
            continue
        partner = rainy.with_name(f"norain-{match.group(1)}{rainy.suffix}")
        if not partner.is_file():
            raise TreefuseError(f"{rainy} has no clean partner (expected {partner})")
        pairs.append(PairFiles(match.group(1), int(match.group(1)), rainy, partner))
    return pairs


def _rain1400(folder: Path) -> list[PairFiles]:
    truths = {p.stem: p for p in list_images(folder / "ground_truth")}
    pairs = []
    for rainy in list_images(folder / "rainy_image"):
        match = re.fullmatch(r"(\d+)_(\d+)", rainy.stem)
        if not match:
            raise TreefuseError(f"{rainy}: expected a name like N_k.jpg (rendering k of ground truth N)")
        partner = truths.get(match.group(1))
        if partner is None:
            raise TreefuseError(f"{rainy} has no clean partner (expected {folder / 'ground_truth'}/{match.group(1)}.*)")
        pairs.append(PairFiles(rainy.stem, int(match.group(1)), rainy, partner))
    return pairs


def _side_by_side(folder: Path) -> list[PairFiles]:
    return [PairFiles(p.stem, _number(p.stem, p), p, p, side_by_side=True) for p in list_images(folder)]


def detect_layout(folder: Path) -> str:
    """Name the layout of a dataset folder from its shape."""
    if (folder / "rain").is_dir() and (folder / "clean").is_dir():
        return "paired"
    if (folder / "rainy_image").is_dir() and (folder / "ground_truth").is_dir():
        return "rain1400"
    if folder.is_dir() and any(p.name.startswith("rain-") for p in list_images(folder)):
        return "rain100h"
    raise TreefuseError(f"{folder}: not a dataset folder I know (expected rain/+clean/, rainy_image/+ground_truth/, "
                        f"or rain-NNN/norain-NNN images); prefix the path with a layout, one of {LAYOUTS}")


def find_pairs(spec: str) -> list[PairFiles]:
    """The pairs of one dataset folder, `LAYOUT:PATH` or a bare path."""
    layout, sep, rest = spec.partition(":")
    if sep and layout in LAYOUTS:
        folder = Path(rest)
    else:
        layout, folder = "", Path(spec)
    if not folder.is_dir():
        raise TreefuseError(f"data folder not found: {folder}")
    layout = layout or detect_layout(folder)
    pairs = {"paired": _paired, "rain100h": _rain100h, "rain1400": _rain1400, "side_by_side": _side_by_side}[layout](folder)
    if not pairs:
        raise TreefuseError(f"data folder {folder} holds no {layout} image pairs")
    return pairs


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats back to the 8-bit values they were decoded from."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def decode_pair(files: PairFiles) -> ImagePair:
    """Read one pair into memory, refusing halves of different sizes."""
    rain = to_uint8(read_image(files.rain))
    if files.side_by_side:
        if rain.shape[1] % 2:
            raise TreefuseError(f"{files.rain}: a side-by-side pair needs an even width, got {rain.shape[1]}")
        half = rain.shape[1] // 2
        return ImagePair(files.key, np.ascontiguousarray(rain[:, :half]), np.ascontiguousarray(rain[:, half:]))
    clean = to_uint8(read_image(files.clean))
    if rain.shape != clean.shape:
        raise TreefuseError(f"{files.rain} is {rain.shape[1]}x{rain.shape[0]} but its clean partner "
                            f"{files.clean} is {clean.shape[1]}x{clean.shape[0]}")
    return ImagePair(files.key, rain, clean)


def load_pairs(specs: tuple[str, ...] | list[str], pair_range: str = "") -> tuple[list[ImagePair], list[PairFiles]]:
    """Decode every selected pair of the given folders; also return their file records."""
    files = []
    for spec in specs:
        chosen = select(find_pairs(spec), pair_range)
        if not chosen:
            raise TreefuseError(f"data folder {spec} has no pairs numbered {pair_range!r}")
        files.extend(chosen)
    return [decode_pair(f) for f in files], files


def clean_photo_files(folder: str | Path, exclude: tuple[str, ...] | list[str] = ()) -> list[Path]:
    """Every image under `folder` (recursively), sorted, less the held-out `exclude` (paths relative to it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TreefuseError(f"clean-photo folder not found: {folder}")
    photos = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))
    missing = sorted(set(exclude) - {str(p.relative_to(folder)) for p in photos})
    if missing:
        # A misspelt hold-out would silently train on the images meant to be unseen.
        raise TreefuseError(f"data.synthetic_exclude names {missing[0]}, which is not an image under {folder}")
    photos = [p for p in photos if str(p.relative_to(folder)) not in set(exclude)]
    if not photos:
        raise TreefuseError(f"clean-photo folder {folder} holds no images")
    return photos


def load_photos(paths: list[Path], min_size: int) -> list[np.ndarray]:
    """Decode clean photos to uint8, refusing any smaller than a training patch."""
    photos = []
    for path in paths:
        photo = to_uint8(read_image(path))
        if min(photo.shape[:2]) < min_size:
            raise TreefuseError(f"{path} is smaller than a {min_size}x{min_size} patch; remove it or lower data.patch_size")
        photos.append(photo)
    return photos


def manifest(groups: dict[str, list[Path]]) -> tuple[dict[str, list[dict[str, str]]], str]:
    """A record of every file by role with its sha256, and one hash over all of it."""
    record = {role: [{"path": str(p), "sha256": sha256_file(p)} for p in dict.fromkeys(paths)]
              for role, paths in groups.items()}
    digest = hashlib.sha256(json.dumps(
        {role: [e["sha256"] for e in entries] for role, entries in record.items()}, sort_keys=True).encode())
    return record, digest.hexdigest()

"""Derain's full-fidelity image I/O: bit depth (16-bit PNG), alpha and grayscale-ness kept from input to output.

Every other stage reads and writes plain 8-bit RGB through treefuse/images.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from treefuse.errors import TreefuseError, one_line
from treefuse.files import atomic_path
from treefuse.images import check_image, pil_format, read_image

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GRAY, _PNG_RGB, _PNG_GRAY_ALPHA, _PNG_RGBA = 0, 2, 4, 6


@dataclass(frozen=True)
class Picture:
    """An image as derain needs it: RGB to process, plus what must come back out unchanged."""

    rgb: np.ndarray  # HxWx3 float32 in [0, 1]
    alpha: np.ndarray | None  # HxW float32 in [0, 1], passed through untouched
    bit_depth: int  # 8 or 16 bits per channel
    grayscale: bool


def png_header(path: str | Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None when the file is not a PNG."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE):
        return None
    return head[24], head[25]


def read_picture(path: str | Path) -> Picture:
    """Read an image keeping its bit depth (16-bit PNG), alpha and grayscale-ness; EXIF orientation applied."""
    path = Path(path)
    header = png_header(path) if path.is_file() else None
    if header and header[0] == 16:
        check_image(path)  # pypng has no decompression-bomb guard: Pillow's header check first
        return _read_png16(path, header[1])
    from PIL import Image

    rgb = read_image(path)  # refuses missing/corrupt files with one line
    with Image.open(path) as image:
        mode = image.mode
        alpha = None
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
            from PIL import ImageOps

            alpha = np.asarray(ImageOps.exif_transpose(image).convert("RGBA"), dtype=np.float32)[:, :, 3] / 255.0
    depth = 16 if mode.startswith("I;16") else 8
    return Picture(rgb, alpha, depth, mode in ("L", "LA", "I", "1") or mode.startswith("I;16"))


def _read_png16(path: Path, colour_type: int) -> Picture:
    png = _import_png()
    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except png.Error as exc:
        raise TreefuseError(f"{path} is not a readable image ({one_line(exc)})") from None
    planes = info["planes"]
    pixels = pixels.reshape(height, width, planes).astype(np.float32) / 65535.0
    pixels = _apply_orientation(pixels, _exif_orientation(path))
    grayscale = colour_type in (_PNG_GRAY, _PNG_GRAY_ALPHA)
    colour = pixels[:, :, :1] if grayscale else pixels[:, :, :3]
    alpha = pixels[:, :, -1] if info["alpha"] else None
    return Picture(np.ascontiguousarray(np.repeat(colour, 3, axis=2) if grayscale else colour), alpha, 16, grayscale)


def _import_png():
    try:
        import png
    except ImportError:
        raise TreefuseError("16-bit RGB PNG needs pypng; pip install pypng") from None
    return png


def _exif_orientation(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(image.getexif().get(0x0112, 1))
    except (OSError, ValueError):
        return 1


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """numpy twin of PIL's ImageOps.exif_transpose for an HxWxC array."""
    turns = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
             7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(turns.get(orientation, lambda a: a)(pixels))


def write_picture(path: str | Path, rgb: np.ndarray, like: Picture) -> None:
    """Write `rgb` (HxWx3 in [0, 1]) with the bit depth, alpha and grayscale-ness of `like`, atomically."""
    path = Path(path)
    channels = [rgb_to_gray(rgb)] if like.grayscale else [rgb[:, :, i] for i in range(3)]
    if like.alpha is not None:
        channels.append(like.alpha)
    planes = np.clip(np.stack(channels, axis=2), 0.0, 1.0)
    if like.bit_depth == 16:
        if path.suffix.lower() != ".png":
            raise TreefuseError(f"{path}: a 16-bit input can only be written as .png without losing bits")
        _write_png16(path, planes)
        return
    from PIL import Image

    pixels = (planes * 255.0 + 0.5).astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    image = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode=mode)
    if mode in ("LA", "RGBA") and pil_format(path) == "JPEG":
        raise TreefuseError(f"{path}: JPEG cannot keep the input's alpha channel; write .png instead")
    with atomic_path(path) as staged:
        image.save(staged, format=pil_format(path))


def _write_png16(path: Path, planes: np.ndarray) -> None:
    png = _import_png()
    height, width, count = planes.shape
    pixels = (planes * 65535.0 + 0.5).astype(np.uint16).reshape(height, width * count)
    writer = png.Writer(width, height, greyscale=count in (1, 2), alpha=count in (2, 4), bitdepth=16)
    with atomic_path(path) as staged, open(staged, "wb") as handle:
        writer.write(handle, pixels)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 -> HxW with ITU-R BT.601 luma weights (full range)."""
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=rgb.dtype)

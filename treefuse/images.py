"""Image I/O: files to float32 RGB arrays in [0, 1] and back, with clear errors."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from treefuse.errors import TreefuseError, one_line
from treefuse.files import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an HxWx3 float32 RGB array in [0, 1] (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise TreefuseError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
    except Image.DecompressionBombError:
        raise TreefuseError(_bomb_message(path)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise TreefuseError(f"{path} is not a readable image ({one_line(exc)})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32) / 65535.0
        return np.repeat(array[:, :, None], 3, axis=2)
    if image.mode not in ("RGB", "L", "RGBA", "P", "LA", "CMYK", "YCbCr"):
        raise TreefuseError(f"{path}: unsupported image mode {image.mode}; convert it to 8-bit RGB first")
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def check_image(path: str | Path) -> None:
    """Refuse a missing or undecodable image without decoding all its pixels."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise TreefuseError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.verify()
    except Image.DecompressionBombError:
        raise TreefuseError(_bomb_message(path)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise TreefuseError(f"{path} is not a readable image ({one_line(exc)})") from None


def _bomb_message(path: Path) -> str:
    from PIL import Image

    return (f"{path} declares more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels (a decompression-bomb guard); "
            "if the image is genuine, split or downscale it first")


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) as read_image will return it (EXIF orientation applied), from the header only."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Image.DecompressionBombError:
        raise TreefuseError(_bomb_message(path)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise TreefuseError(f"{path} is not a readable image ({one_line(exc)})") from None
    return (width, height) if turned else (height, width)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an HxWx3 array in [0, 1] as 8-bit RGB, atomically; format from the suffix."""
    from PIL import Image

    path = Path(path)
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    with atomic_path(path) as staged:
        Image.fromarray(pixels, mode="RGB").save(staged, format=_pil_format(path))


def _pil_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, suffix.lstrip(".").upper() or "PNG")


def to_batch(image: np.ndarray) -> np.ndarray:
    """HxWx3 -> 1x3xHxW float32, the layout every runner takes."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


def from_batch(batch: np.ndarray) -> np.ndarray:
    """1x3xHxW -> HxWx3."""
    return np.ascontiguousarray(batch[0].transpose(1, 2, 0))


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TreefuseError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))


def paired_images(folder: str | Path) -> list[tuple[Path, Path]]:
    """(rain, clean) pairs from a paired folder with rain/ and clean/ sharing file names."""
    folder = Path(folder)
    rain, clean = list_images(folder / "rain"), folder / "clean"
    if not rain:
        raise TreefuseError(f"{folder / 'rain'} holds no images")
    pairs = []
    for rainy in rain:
        partner = clean / rainy.name
        if not partner.is_file():
            raise TreefuseError(f"{rainy} has no clean partner (expected {partner})")
        rain_hw, clean_hw = image_size(rainy), image_size(partner)
        if rain_hw != clean_hw:
            raise TreefuseError(f"{rainy} is {rain_hw[0]}x{rain_hw[1]} but its clean partner {partner} is "
                                f"{clean_hw[0]}x{clean_hw[1]}; a pair must have one size")
        pairs.append((rainy, partner))
    return pairs


def is_paired_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "rain").is_dir() and (folder / "clean").is_dir()


# -- full-fidelity I/O for derain: bit depth, alpha and grayscale kept -----------------------------------------------

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
    if mode in ("LA", "RGBA") and _pil_format(path) == "JPEG":
        raise TreefuseError(f"{path}: JPEG cannot keep the input's alpha channel; write .png instead")
    with atomic_path(path) as staged:
        image.save(staged, format=_pil_format(path))


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

"""Image I/O every stage shares: files to float32 RGB arrays in [0, 1] and back, with clear errors.

Derain's full-fidelity I/O (bit depth, alpha, grayscale kept) is runtimes/applications/picture.py."""
from __future__ import annotations

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
        Image.fromarray(pixels, mode="RGB").save(staged, format=pil_format(path))


def pil_format(path: Path) -> str:
    """The Pillow format name an output suffix asks for (PNG when there is none)."""
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

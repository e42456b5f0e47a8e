"""Build a calibration set: deterministic crops of real images, optionally with synthetic rain."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.calib.store import FORMAT, MANIFEST, TENSOR_FILE, set_sha256
from treefuse.errors import TreefuseError
from treefuse.files import atomic_path, sha256_file
from treefuse.images import is_paired_folder, list_images, read_image
from treefuse.progress import progress_bar
from treefuse.provenance import provenance

PREPROCESSING = {
    "decode": "treefuse.images.read_image: RGB, EXIF orientation applied, 8-bit values / 255",
    "selection": "numpy default_rng(seed).choice without replacement, then sorted by file name",
    "resize": "bilinear (torch, align_corners=False, antialias) only if an image is smaller than the crop",
    "crop": "one uniform random box per image from numpy default_rng([seed, index])",
    "layout": "N x 3 x H x W float32 RGB in [0, 1]",
}


def source_images(images_dir: str | Path) -> list[Path]:
    """The images a set is drawn from; a paired folder contributes its rain/ half."""
    images_dir = Path(images_dir)
    folder = images_dir / "rain" if is_paired_folder(images_dir) else images_dir
    files = list_images(folder)
    if not files:
        raise TreefuseError(f"{folder} holds no images; point --images at a folder of .png/.jpg files")
    return files


def _fit(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Scale `image` up (keeping its aspect) just enough for a size_hw crop to fit."""
    import torch
    from torch.nn import functional as F

    height, width = image.shape[:2]
    scale = max(size_hw[0] / height, size_hw[1] / width)
    if scale <= 1.0:
        return image
    new_hw = (max(size_hw[0], round(height * scale)), max(size_hw[1], round(width * scale)))
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None]))
    resized = F.interpolate(tensor, size=new_hw, mode="bilinear", align_corners=False, antialias=True)
    return np.clip(resized[0].numpy().transpose(1, 2, 0), 0.0, 1.0).astype(np.float32)


def _crop(image: np.ndarray, size_hw: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, dict[str, int]]:
    height, width = size_hw
    top = int(rng.integers(0, image.shape[0] - height + 1))
    left = int(rng.integers(0, image.shape[1] - width + 1))
    box = {"top": top, "left": left, "height": height, "width": width}
    return image[top:top + height, left:left + width], box


def _add_rain(clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    # Imported here: synthetic rain is a separate module and only this option needs it.
    from treefuse.data.synthetic_rain import add_synthetic_rain

    rainy, params = add_synthetic_rain(clean, rng)
    return np.clip(np.asarray(rainy, dtype=np.float32), 0.0, 1.0), json.loads(json.dumps(params.to_dict()))


def _sample(path: Path, root: Path, index: int, seed: int, size_hw: tuple[int, int],
            synthetic_rain: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """One calibration image (HxWx3) and its manifest entry."""
    rng = np.random.default_rng([seed, index])
    original = read_image(path)
    fitted = _fit(original, size_hw)
    crop, box = _crop(fitted, size_hw, rng)
    entry: dict[str, Any] = {"file": path.relative_to(root).as_posix(), "sha256": sha256_file(path),
                             "original_hw": list(original.shape[:2]), "resized_hw": list(fitted.shape[:2]),
                             "crop_box": box}
    if synthetic_rain:
        crop, entry["rain_params"] = _add_rain(np.ascontiguousarray(crop), rng)
    return crop, entry


def _refuse_overwriting_other_data(out_dir: Path) -> None:
    # The set is swapped in whole; a folder that is not an old set would be deleted with it.
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file()):
        raise TreefuseError(f"{out_dir} exists and is not a calibration set; choose an empty or new --out folder")


def build_calibration_set(images_dir: str | Path, out_dir: str | Path, count: int, size_hw: tuple[int, int],
                          seed: int, synthetic_rain: bool = False, progress: bool = False) -> Path:
    """Write a calibration set of `count` crops of `size_hw` from `images_dir` to `out_dir`."""
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if count < 1 or min(size_hw) < 1:
        raise TreefuseError(f"--count and --size must be positive, got count {count} and size {size_hw}")
    _refuse_overwriting_other_data(out_dir)
    files = source_images(images_dir)
    if len(files) < count:
        raise TreefuseError(f"{images_dir} holds {len(files)} images, fewer than --count {count}; lower --count")
    root = files[0].parent
    chosen = sorted(int(i) for i in np.random.default_rng(seed).choice(len(files), size=count, replace=False))
    crops, sources = [], []
    for index, file_index in enumerate(progress_bar(chosen, progress, desc="calibration crops", unit="img")):
        crop, entry = _sample(files[file_index], root, index, seed, tuple(size_hw), synthetic_rain)
        crops.append(crop.transpose(2, 0, 1))
        sources.append(entry)
    images = np.ascontiguousarray(np.stack(crops), dtype=np.float32)
    manifest: dict[str, Any] = {
        "format": FORMAT, "count": count, "size_hw": list(size_hw), "seed": seed,
        "synthetic_rain": synthetic_rain, "preprocessing": PREPROCESSING, "sources": sources,
    }
    with atomic_path(out_dir, directory=True, same_kind=lambda folder: (folder / MANIFEST).is_file()) as staged:
        np.save(staged / TENSOR_FILE, images, allow_pickle=False)
        tensor_sha = sha256_file(staged / TENSOR_FILE)
        manifest["tensor"] = {"file": TENSOR_FILE, "sha256": tensor_sha, "shape": list(images.shape),
                              "dtype": "float32"}
        manifest["sha256"] = set_sha256(manifest, tensor_sha)
        manifest["provenance"] = provenance(images_dir=str(images_dir.resolve()))
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out_dir

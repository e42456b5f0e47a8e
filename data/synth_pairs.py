"""Render street rain onto clean frames: a paired folder (rain/ + clean/, same names) with a record.

Pair i uses source frame i mod n and the random stream [seed, i], so the same frames, preset
and seed give byte-identical pairs. Names start with the pair number (`0007_frame.png`), which
is what `--val 1-20` style ranges select on.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.files import atomic_path, sha256_file
from treefuse.images import check_image, list_images, read_image, write_image
from treefuse.data.depth_rain import DepthRainParams, DepthRainPreset, render_depth_rain
from treefuse.data.scene_depth import estimate_depth
from treefuse.data.street_rain import RainPreset, StreetRainParams, load_preset, preset_path, render_street_rain
from treefuse.data.street_split import load_frame

RECORD_NAME = "synth.json"


def is_synth_folder(folder: Path) -> bool:
    """Whether a folder is an earlier `treefuse synth` output (which may be replaced)."""
    return (folder / RECORD_NAME).is_file()


def centre_crop(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The centre size x size window (or the whole side where the image is smaller) and its corner."""
    height, width = image.shape[:2]
    h, w = min(size, height), min(size, width)
    top, left = (height - h) // 2, (width - w) // 2
    return image[top:top + h, left:left + w], (top, left)


def render_one(image: np.ndarray, preset: "RainPreset | DepthRainPreset", seed: int, index: int,
               crop: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(rainy, clean, record) of pair `index`; with `crop`, a centre window keeping the frame's depth."""
    rng = np.random.default_rng([seed, index])
    top = left = 0
    window = image
    if crop:
        window, (top, left) = centre_crop(image, crop)
    if isinstance(preset, DepthRainPreset):
        scene = estimate_depth(image)  # on the whole frame: a window keeps its sky, horizon and depth
        params = DepthRainParams.sample(rng, preset, scene.sky_rgb)
        rainy, clean = render_depth_rain(window, scene.crop(top, left, *window.shape[:2]), params)
        return rainy, clean, {"params": params.to_dict(), "depth": scene.to_dict()}
    street = StreetRainParams.sample(rng, preset)
    rainy, clean = render_street_rain(window, street, (top, left, *image.shape[:2]))
    return rainy, clean, {"params": street.to_dict()}


def chosen_frames(images: str | Path, names: list[str] | None) -> list[Path]:
    """The frames in `images` (only `names`, when given), each checked to decode."""
    sources = list_images(images)
    if names is not None:
        chosen = set(names)
        missing = sorted(chosen - {p.name for p in sources})
        if missing:
            raise TreefuseError(f"{images} has no frame named {missing[0]}")
        sources = [p for p in sources if p.name in chosen]
    if not sources:
        raise TreefuseError(f"{images} holds no images (png, jpg, bmp, tif, webp); point --images at a folder of clean frames")
    for source in sources:
        check_image(source)  # a broken frame is refused before any rendering starts
    return sources


def write_pairs(out: str | Path, sources: list[Path], count: int, long_side: int,
                render: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, dict[str, Any]]],
                record: dict[str, Any]) -> None:
    """Pair i = render(frame i mod n, i) into out/rain + out/clean, with `record` + every pair's in synth.json."""
    pairs = []
    with atomic_path(out, directory=True, same_kind=is_synth_folder) as staged:
        (staged / "rain").mkdir()
        (staged / "clean").mkdir()
        for index in range(count):
            source = sources[index % len(sources)]
            frame = load_frame(source, long_side).astype(np.float32) / 255.0 if long_side else read_image(source)
            rainy, clean, rendering = render(frame, index)
            name = f"{index:04d}_{source.stem}.png"
            write_image(staged / "rain" / name, rainy)
            write_image(staged / "clean" / name, clean)
            pairs.append({"name": name, "source": source.name, **rendering})
        full = {**record, "long_side": long_side, "count": count,
                "sources": [{"name": p.name, "sha256": sha256_file(p)} for p in sources], "pairs": pairs}
        (staged / RECORD_NAME).write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")


def synth_folder(images: str | Path, out: str | Path, preset: str = "street", seed: int = 0,
                 count: int | None = None, crop: int = 0, names: list[str] | None = None,
                 long_side: int = 0) -> dict[str, Any]:
    """Render `count` pairs (default: one per frame) from the frames in `images` into `out`, atomically.

    `long_side` > 0 first scales each frame down to that long side (as street training does)."""
    if count is not None and count < 1:
        raise TreefuseError(f"--count must be at least 1, got {count}")
    if crop < 0 or 0 < crop < 16:
        raise TreefuseError(f"--crop must be 0 (whole frames) or at least 16 pixels, got {crop}")
    sources = chosen_frames(images, names)
    count = len(sources) if count is None else count
    rain_preset = load_preset(preset)
    record = {"tool": "treefuse synth", "renderer": getattr(rain_preset, "renderer", "flat"),
              "preset": rain_preset.to_dict(), "preset_sha256": sha256_file(preset_path(preset)), "seed": seed,
              "crop": crop}
    write_pairs(out, sources, count, long_side,
                lambda frame, index: render_one(frame, rain_preset, seed, index, crop), record)
    return {"out": str(out), "pairs": count, "preset": rain_preset.name, "seed": seed}

"""`treefuse diff`: two backends, every layer exposed, compared by the folded model's layer names.

The candidate runs here (`diff_result`), or ran on a device and sent its layers home
(`run.py --layers` in a bundle; `diff_recorded`): the reference then runs on the inputs it recorded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from treefuse.device import device_fingerprint
from treefuse.errors import TreefuseError
from treefuse.formats import format_of, resolve
from treefuse.gates import Gates
from treefuse.images import read_image, to_batch
from treefuse.provenance import provenance
from treefuse.results import DiffResult
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.inspect.compare import compare_layers, first_diverging, worst_of
from treefuse.runtimes.inspect.names import OUTPUT

Layers = dict[str, np.ndarray]
Sample = tuple[str, np.ndarray, Layers]  # image name, the 1x3xHxW input both ran on, the candidate's layers


def open_layers(runner: Runner) -> Callable[[np.ndarray], Layers]:
    """The format table's layer capture for an active runner, or one line naming the formats that have one."""
    row = format_of(runner.kind)
    if row.layers is None:
        from treefuse.formats import FORMATS

        able = ", ".join(fmt.kind for fmt in FORMATS if fmt.layers)
        raise TreefuseError(f"{runner.kind}: treefuse cannot expose this format's layers yet; diff one of {able}")
    return resolve(row.layers)(runner)


def crop_batch(image: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """The centre crop (at most `crop`) of an HxWx3 image as a 1x3xHxW batch: per-layer arrays stay small."""
    height, width = min(crop[0], image.shape[0]), min(crop[1], image.shape[1])
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(to_batch(image[top:top + height, left:left + width]))


def diff_result(reference: Runner, candidate: Runner, images: list[Path], gates: Gates, min_layer_psnr_db: float,
                crop: tuple[int, int] = (128, 128), threads: int | None = None, arrays: Path | None = None,
                images_dir: str = "") -> DiffResult:
    """Run both on every image, every layer exposed; judge the output by `gates`, name the first layer below
    `min_layer_psnr_db`. With `arrays`, the first image's layers of both are written there (.npz)."""
    capture = open_layers(candidate)
    exposure = {"candidate": 0.0}

    def samples() -> Iterator[Sample]:
        for path in images:
            batch = crop_batch(read_image(path), crop)
            layers = capture(batch)
            exposure["candidate"] = max(exposure["candidate"], _largest_change(candidate.infer(batch), layers[OUTPUT]))
            yield str(path), batch, layers

    result = _judge(reference, candidate.describe(), samples(), gates, min_layer_psnr_db, threads, arrays)
    result.exposure_effect.update(exposure)
    result.crop, result.images_dir = list(crop), images_dir
    return result


def read_recorded(path: Path) -> tuple[dict[str, Any], list[Sample]]:
    """What a bundle's `run.py --layers` wrote: who ran it, and per input its image name, the input and the layers."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            count = len(meta["images"])
            samples = [(meta["images"][i], saved[f"input/{i}"],
                        {key.split("/", 2)[2]: saved[key] for key in saved.files if key.startswith(f"layers/{i}/")})
                       for i in range(count)]
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise TreefuseError(f"{path} is not a layers file from a bundle's `run.py --layers` "
                            f"({type(exc).__name__}); run the bundle again with --layers") from None
    if meta.get("kind") != "treefuse-layers" or not samples:
        raise TreefuseError(f"{path} holds no recorded layers; run the bundle again with --layers")
    return meta, samples


def diff_recorded(reference: Runner, meta: dict[str, Any], samples: list[Sample], gates: Gates,
                  min_layer_psnr_db: float, threads: int | None = None, arrays: Path | None = None,
                  source: str = "") -> DiffResult:
    """A device's recorded layers against `reference` run here on the same inputs."""
    candidate = {**meta.get("candidate", {}), "device": meta.get("device", {})}
    result = _judge(reference, candidate, samples, gates, min_layer_psnr_db, threads, arrays)
    result.crop, result.images_dir = list(meta.get("crop", [])), source
    return result


def _judge(reference: Runner, candidate: dict[str, Any], samples: Iterable[Sample], gates: Gates,
           min_layer_psnr_db: float, threads: int | None, arrays: Path | None) -> DiffResult:
    capture_ref = open_layers(reference)
    per_image, image_rows, exposure = [], [], {"reference": 0.0}
    names_ref: list[str] = []
    names_cand: list[str] = []
    for index, (name, batch, cand_layers) in enumerate(samples):
        ref_layers = capture_ref(batch)
        exposure["reference"] = max(exposure["reference"], _largest_change(reference.infer(batch), ref_layers[OUTPUT]))
        names_ref, names_cand = list(ref_layers), list(cand_layers)
        rows = compare_layers(ref_layers, cand_layers)
        image_rows.append(rows)
        output = next((row for row in rows if row["layer"] == OUTPUT), None)
        if output is None:
            raise TreefuseError(f"the candidate's layers hold no model output for {name}; re-run it with every layer")
        per_image.append({"image": name, "output_psnr_db": output["psnr_db"],
                          "first_diverging_layer": first_diverging(rows, min_layer_psnr_db)})
        if arrays is not None and index == 0:
            _save_arrays(arrays, ref_layers, cand_layers)
    layers = worst_of(image_rows)
    failures = [f"{row['image']}: output PSNR {row['output_psnr_db']:.2f} dB < {gates.min_output_psnr_db:g} dB"
                for row in per_image if not row["output_psnr_db"] >= gates.min_output_psnr_db]
    return DiffResult(device=device_fingerprint(threads), provenance=provenance(), reference=reference.describe(),
                      candidate=candidate, passed=not failures, failures=failures,
                      gates={**gates.to_json(), "min_layer_psnr_db": min_layer_psnr_db},
                      first_diverging_layer=first_diverging(layers, min_layer_psnr_db), layers=layers,
                      images=per_image, exposure_effect=exposure,
                      unmatched={"reference_only": [n for n in names_ref if n not in names_cand],
                                 "candidate_only": [n for n in names_cand if n not in names_ref]})


def _largest_change(plain: np.ndarray, exposed: np.ndarray) -> float:
    """How far exposing the layers moved the output; inf where either holds a NaN or Inf."""
    change = np.abs(plain - exposed)
    return float(np.max(change)) if np.all(np.isfinite(change)) else float("inf")


def _save_arrays(path: Path, reference: Layers, candidate: Layers) -> None:
    from treefuse.files import atomic_path

    with atomic_path(path) as staged:
        with open(staged, "wb") as handle:  # np.savez would append .npz to a name without it
            np.savez_compressed(handle, **{f"reference/{k}": v for k, v in reference.items()},
                                **{f"candidate/{k}": v for k, v in candidate.items()})

"""Weights -> .rknn for a Rockchip NPU through rknn-toolkit2, FP16 or INT8 (its calibrator, or a QAT QDQ model).

The toolkit lives in its own venv and runs as a worker process (export/rknn/worker.py); only
files cross over. The NPU wants static shapes: the ONNX model is pinned to 1x3xHxW (--size)
first. INT8 is quantized by the toolkit's calibrator on the calibration set's crops, or loaded
pre-quantized from a QAT run's QDQ ONNX (ONNX Runtime's layout: u8 activations with a zero
point, symmetric per-channel 7-bit weights, whose scales the worker hands the toolkit at 127/128 so
that its convolutions compute ONNX Runtime's: export/rknn/toolkit_qdq.py). The pipeline
(export/request.py) then judges the .rknn, rebuilt on the toolkit's simulator, against PyTorch FP32
by its precision's gates. Beside `m.rknn` go its sidecar and `m.rknn.sim/`, what the simulator
rebuilds from (it cannot run a loaded .rknn).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.export.request import Converted, ExportRequest

# --platform -> the chips it covers (rknn-toolkit2 2.5.0's target_platform names).
PLATFORMS = {"rk3588": "RK3588, RK3588S (NVRs, edge boxes)", "rk3576": "RK3576", "rk3568": "RK3568 (NVRs)",
             "rk3566": "RK3566", "rv1126b": "RV1126B (IP cameras)", "rv1106": "RV1106, RV1106G (small IP cameras)",
             "rv1103": "RV1103 (small IP cameras)"}
PRECISIONS = {"fp16": "float16 on the NPU (weights and activations)",
              "int8": "int8 activations (asymmetric, per tensor) and weights (per channel) on the NPU"}
ALGORITHMS = ("normal", "kl_divergence", "mmse")
DEFAULT_SIZE = (256, 256)
# QDQ layouts the NPU's int8 computes as written: asymmetric u8 activations (ONNX Runtime's) or symmetric s8 with
# zero point 0 (TensorRT's), symmetric per-channel weights in both.
QDQ_LAYOUTS = ("onnxruntime", "tensorrt")


def convert(request: ExportRequest, staged: Path) -> Converted:
    """The format table's entry: the .rknn `request` asks for at `staged`, with its simulator recipe
    (`m.rknn.sim/`) and, when asked, the toolkit's per-layer accuracy table (`m.rknn.layers.json`) beside it."""
    from treefuse.export.verify import gate_miss_advice
    from treefuse.runtimes.backends.rknn_runner import recipe_dir

    options, size = dict(request.options), request.size or DEFAULT_SIZE
    platform, float16_layers = options.get("platform", "rk3588"), options.get("float16_layers", 0)
    if float16_layers and (request.precision != "int8" or request.qat_run is not None):
        raise TreefuseError("--float16-layers keeps layers of a model the toolkit quantizes itself: use it with "
                            "--precision int8 --calib, not with fp16 or --qat")
    weights = request.reference_weights()
    with tempfile.TemporaryDirectory(prefix="treefuse-rknn-export-") as tmp:
        mode, onnx_path, calibration_sha256, qat = _source_model(request, weights, size, Path(tmp))
        job = {"onnx": str(onnx_path), "platform": platform, "mode": mode, "out": str(staged),
               "recipe_dir": str(recipe_dir(staged)), "algorithm": options.get("algorithm", "normal"),
               # The toolkit advises level 2 for QAT models; on the committed QDQ model it measured no better
               # (rk3588, Rain100H 021-030 at 256x256: task drop 0.178 dB vs 0.167 at level 3, docs/rknn.md).
               "optimization_level": 3}
        if mode == "int8":
            job["dataset"] = str(_dataset(request.calibration, size, Path(tmp) / "dataset"))
        facts = _build(job, platform)
        analysis = None
        if float16_layers or options.get("layer_report"):
            analysis = _analysis(job, request, size, Path(tmp))
        if float16_layers:
            job["float_layers"] = most_blamed(analysis, float16_layers)
            staged.unlink()
            facts = _build(job, platform)  # step 2 again on the same calibration, those tensors in float16
    if analysis is not None:
        _write_layer_report(staged, analysis)
    detail = f"{len(facts['float_layers'])} layers in float16, " if facts["float_layers"] else ""
    return Converted(f"{request.precision}, {detail}{platform}; judged on rknn-toolkit2's simulator",
                     calibration=_judging_calibration(request, qat, size), hw_range=(size, size),
                     advice=miss_advice(request, float16_layers) or gate_miss_advice("rknn", request.precision),
                     sidecar=_record(staged, request, weights, size, facts, calibration_sha256, qat))


def _source_model(request: ExportRequest, weights: Path, size: tuple[int, int],
                  tmp: Path) -> tuple[str, Path, str | None, dict[str, Any] | None]:
    """(worker mode, the pinned ONNX model, calibration sha256, QAT record) of what the toolkit starts from."""
    from treefuse.export.onnx.exporter import export_onnx

    onnx_path = tmp / "model.onnx"
    if request.qat_run is None:
        export_onnx(weights, onnx_path)
        calibration_sha256 = None
        if request.precision == "int8":
            from treefuse.calib.store import load_calibration_set

            calibration_sha256 = load_calibration_set(request.calibration).sha256
        pin_input(onnx_path, size)
        return ("int8" if request.precision == "int8" else "float"), onnx_path, calibration_sha256, None
    qat = _qdq_model(Path(request.qat_run), weights, onnx_path, request.paired_images)
    pin_input(onnx_path, size)
    return "qdq", onnx_path, qat.get("calibration_sha256"), qat


def _qdq_model(qat: Path, weights: Path, out: Path, paired_images: Path | None) -> dict[str, Any]:
    """The QAT run's QDQ ONNX model (ONNX Runtime's layout) at `out`; --qat may also name such a model itself."""
    from treefuse.artifact import read_onnx_metadata
    from treefuse.files import sha256_file

    if qat.is_dir():
        from treefuse.export.onnx.qat_export import export_qat_int8

        export_qat_int8(qat, out, paired_images, target="onnxruntime")
    elif qat.suffix == ".onnx" and qat.is_file():
        shutil.copyfile(qat, out)
    else:
        raise TreefuseError(f"--qat {qat} is neither a QAT run folder nor a QDQ .onnx model; pass a "
                            "`treefuse qat --target onnx-int8` run or the model `export onnx --qat` wrote")
    metadata = read_onnx_metadata(out)
    if metadata.get("treefuse.precision") != "int8" or metadata.get("treefuse.target") not in QDQ_LAYOUTS:
        raise TreefuseError(f"--qat {qat}: not an INT8 QDQ ONNX model of treefuse; write one with "
                            "`treefuse export onnx --precision int8 [--target tensorrt] --qat RUN`")
    if metadata.get("treefuse.source_sha256") != sha256_file(weights):
        raise TreefuseError(f"--qat {qat} was made from other weights than {weights}; pass those with --weights")
    return {"qdq_onnx": str(qat), "qdq_sha256": sha256_file(out),
            "calibration_sha256": metadata.get("treefuse.calibration_sha256")}


def pin_input(onnx_path: Path, size: tuple[int, int]) -> None:
    """Fix the model's input and output to 1x3xHxW (the NPU compiles static shapes); shapes inside are re-inferred."""
    import onnx

    model = onnx.load(str(onnx_path))
    for value in (*model.graph.input, *model.graph.output):
        for dim, length in zip(value.type.tensor_type.shape.dim, (1, 3, *size)):
            dim.ClearField("dim_param")
            dim.dim_value = length
    del model.graph.value_info[:]
    onnx.save(onnx.shape_inference.infer_shapes(model), str(onnx_path))


def _dataset(calibration: Any, size: tuple[int, int], folder: Path) -> Path:
    """The toolkit's dataset list: one 1x3xHxW .npy per calibration crop, fitted to the export's fixed size.

    A larger crop is centre-cut; a smaller one is mirrored out to the size (its pixels' statistics, which
    are what calibration reads, stay those of the crop)."""
    from treefuse.calib.store import load_calibration_set

    calibration_set = load_calibration_set(calibration)
    folder.mkdir()
    lines = []
    for index, image in enumerate(calibration_set.images):
        path = folder / f"{index:04d}.npy"
        np.save(path, fit_to_size(image, size)[None])
        lines.append(str(path.resolve()))
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder / "list.txt"


def fit_to_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 3xHxW image centre-cut, or mirrored out, to exactly 3 x size."""
    fitted = image
    for axis, want in ((1, size[0]), (2, size[1])):
        have = fitted.shape[axis]
        if have > want:
            start = (have - want) // 2
            fitted = fitted.take(range(start, start + want), axis=axis)
        elif have < want:
            pad = [(0, 0)] * 3
            pad[axis] = ((want - have) // 2, want - have - (want - have) // 2)
            fitted = np.pad(fitted, pad, mode="symmetric")
    return np.ascontiguousarray(fitted, dtype=np.float32)


def _judging_calibration(request: ExportRequest, qat: dict[str, Any] | None, size: tuple[int, int]) -> Any:
    """The calibration set export's check may judge on: only crops that cover the fixed size (else self-made images)."""
    if qat is not None or request.calibration is None:
        return None
    from treefuse.calib.store import load_calibration_set

    height, width = load_calibration_set(request.calibration).images.shape[2:]
    return request.calibration if height >= size[0] and width >= size[1] else None


def _build(job: dict[str, Any], platform: str) -> dict[str, Any]:
    from treefuse.runtimes.backends.rknn_runner import run_worker

    return run_worker("build", job, f"building the {job['mode']} model")


def _analysis(job: dict[str, Any], request: ExportRequest, size: tuple[int, int], tmp: Path) -> dict[str, Any]:
    """The toolkit's accuracy_analysis of the INT8 build on the first calibration crop (simulator)."""
    from treefuse.runtimes.backends.rknn_runner import run_worker

    if job["mode"] != "int8":
        raise TreefuseError("--layer-report needs --precision int8 with --calib: the toolkit analyses only models it "
                            "quantized itself on the simulator (a QAT QDQ model needs a board)")
    first = Path(job["dataset"]).read_text().splitlines()[0]
    return run_worker("analyze", {**job, "inputs": [first]}, "accuracy_analysis")


def most_blamed(analysis: dict[str, Any] | None, count: int) -> list[str]:
    """The `count` quantized tensors whose own (single-layer) cosine to float is lowest: the ones to keep float16."""
    rows = [row for row in (analysis or {}).get("layers", []) if row["op"] not in ("Input", "exDataConvert")]
    return [row["tensor"] for row in sorted(rows, key=lambda row: row["single_cos"])[:count]]


def miss_advice(request: ExportRequest, float16_layers: int) -> str:
    """The NPU's own route first when toolkit INT8 misses: more layers in float16, then QAT."""
    if request.precision != "int8" or request.qat_run is not None:
        return ""
    more = max(4, 2 * float16_layers)
    return (f"keep the layers the toolkit's accuracy analysis blames in float16: add --float16-layers {more}; or "
            "fine-tune for INT8: `treefuse qat --target onnx-int8 ...`, then `treefuse export rknn --precision int8 "
            "--qat RUN`")


def _record(staged: Path, request: ExportRequest, weights: Path, size: tuple[int, int], facts: dict[str, Any],
            calibration_sha256: str | None, qat: dict[str, Any] | None) -> tuple[dict[str, str], dict[str, Any]]:
    """The sidecar's artifact record and provenance, with the simulator recipe's hashes (the runner checks them)."""
    from treefuse.artifact import artifact_metadata
    from treefuse.checkpoint import load_weights
    from treefuse.files import sha256_file
    from treefuse.provenance import provenance
    from treefuse.runtimes.backends.rknn_runner import recipe_dir

    loaded = load_weights(weights)
    recipe = facts["recipe"]
    rknn = {**recipe, "size": list(size), "float16_layers": facts["float_layers"], "conversion_s": facts["conversion_s"],
            "algorithm": request.options.get("algorithm", "normal") if recipe["mode"] == "int8" else None,
            "recipe_sha256": {name: sha256_file(recipe_dir(staged) / name) for name in recipe["files"]}}
    record = provenance(config=loaded.config.to_dict(), source_checkpoint=str(weights), source_sha256=loaded.sha256,
                        precision=request.precision, precision_detail=PRECISIONS[request.precision], folded=True,
                        converted_hw=list(size), calibration_sha256=calibration_sha256, qat=qat,
                        tool_versions=facts["tool_versions"], rknn=rknn)
    metadata = artifact_metadata(format="rknn", precision=request.precision, config=loaded.config.to_dict(),
                                 source_sha256=loaded.sha256, calibration_sha256=calibration_sha256,
                                 target=recipe["platform"])
    metadata["treefuse.tool_versions"] = json.dumps(facts["tool_versions"], sort_keys=True)  # the toolkit's venv
    return metadata, record


def _write_layer_report(staged: Path, analysis: dict[str, Any]) -> None:
    from treefuse.files import write_json_atomic

    write_json_atomic(staged.with_name(staged.name + ".layers.json"), {
        "format": "treefuse-rknn-layers-v1", "artifact": staged.name,
        "note": "rknn-toolkit2 accuracy_analysis on the simulator: cosine and Euclidean distance of each layer's "
                "output vs float, accumulated (entire) and alone (single)", "layers": analysis["layers"]})

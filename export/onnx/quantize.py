"""FP32 ONNX -> FP16, or INT8 static QDQ (per-channel weights) with ONNX Runtime's quantization tools.

INT8 settings are the ones measured fastest on x86 with AVX-512 VNNI (docs/quantization.md):
QDQ with uint8 activations and symmetric int8 per-channel weights, no reduce_range. ONNX
Runtime then fuses every DQ->Conv->Q into an NHWC QLinearConv on its symmetric-conv kernels.
Before calibration an exact rewrite removes each Concat that feeds a 1x1 conv
(onnx_rewrite.py); any other Concat's inputs share one scale so it copies bytes instead of
requantizing. Two more exact rewrites put the head and tail convs on the symmetric-conv
kernels too: the 3-channel image is zero-padded to 4 channels for the head, and the 3-channel
tail computes 16 channels (13 zero filters) of which a Slice keeps 3. The node that produces
the image (X + residual) stays float.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from treefuse.calib.store import CalibrationSet
from treefuse.errors import TreefuseError
from treefuse.export.onnx.ort_quantizer import calibration_method, quiet_quantizer
from treefuse.export.onnx.rewrite import pad_input_channels, pad_output_channels, split_concat_convs
from treefuse.export.tensorrt.qdq import TENSORRT_INT8_SETTINGS, quantize_tensorrt_model
from treefuse.artifact import artifact_metadata
from treefuse.files import atomic_path, sha256_file
from treefuse.gates import Gates
from treefuse.provenance import provenance

TARGETS = ("onnxruntime", "tensorrt")  # the runtime an INT8 model is laid out for (export/tensorrt/qdq.py)
QUANTIZED_OP_TYPES = ["Conv", "Add", "Concat", "Relu"]
# ORT's entropy default (128 bins = 128 quantized bins) leaves one candidate: the min/max range.
# 2048 histogram bins searched down to 128 is TensorRT's entropy calibration.
CALIBRATOR_OPTIONS = {"minmax": {}, "entropy": {"num_bins": 2048, "num_quantized_bins": 128}, "percentile": {}}
INT8_SETTINGS = {"format": "QDQ", "activations": "uint8 asymmetric", "weights": "int8 symmetric per-channel",
                 "reduce_range": False, "concat_inputs_share_scale": True, "output_node_in_float": True,
                 "input_channels_padded_to_multiple_of": 4, "output_channels_padded_to_at_least": 16}


def calibration_reader(calibration: CalibrationSet) -> Any:
    """An ONNX Runtime CalibrationDataReader over a calibration set, one image per batch."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

        def rewind(self) -> None:
            self.feeds: Iterator[dict[str, np.ndarray]] = iter({"input": b} for b in calibration.batches(1))

        def __len__(self) -> int:
            return len(calibration)

    return Reader()


def calibrate(fp32_path: Path, calibration: CalibrationSet, method: str, cache_path: Path) -> dict[str, tuple[float, float]]:
    """Run the calibrator once and save ONNX Runtime's range cache; returns tensor -> (min, max)."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    with tempfile.TemporaryDirectory(prefix="treefuse-calib-") as tmp, quiet_quantizer():
        calibrator = create_calibrator(fp32_path, QUANTIZED_OP_TYPES, augmented_model_path=f"{tmp}/augmented.onnx",
                                       calibrate_method=calibration_method(method), extra_options=CALIBRATOR_OPTIONS[method])
        calibrator.collect_data(calibration_reader(calibration))
        tensors = calibrator.compute_data()
        del calibrator
    save_tensors_data(tensors, cache_path)
    return {name: tuple(float(np.asarray(v).reshape(-1)[0]) for v in data.range_value) for name, data in tensors.items()}


def concat_overrides(model: Any, ranges: dict[str, tuple[float, float]]) -> dict[str, list[dict[str, float]]]:
    """TensorQuantOverrides giving each Concat's inputs and output one shared range."""
    overrides: dict[str, list[dict[str, float]]] = {}
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        tensors = [t for t in (*node.input, *node.output) if t in ranges]
        low = min(min(ranges[t][0] for t in tensors), 0.0)
        high = max(max(ranges[t][1] for t in tensors), 0.0)
        for tensor in tensors:
            previous = overrides.get(tensor, [{"rmin": low, "rmax": high}])[0]
            overrides[tensor] = [{"rmin": np.float32(min(low, previous["rmin"])),
                                  "rmax": np.float32(max(high, previous["rmax"]))}]
    return overrides


def quantize_int8_model(fp32_path: Path, out_path: Path, cache_path: Path, method: str,
                        overrides: dict[str, Any], float_nodes: Sequence[str] = (), reduce_range: bool = False) -> None:
    """One static QDQ quantization from a saved range cache, leaving `float_nodes` unquantized.

    `reduce_range` makes the weights 7-bit (levels -64..64): x86 CPUs without VNNI sum pairs of u8 x s8
    products in int16 and saturate on full-range weights (docs/quantization.md, QAT section)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    # The image output is never requantized to 8 bits: its last node (X + residual) stays float.
    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    float_nodes = [*float_nodes, *(n.name for n in graph.node if set(n.output) & outputs)]
    with quiet_quantizer():
        quantize_static(str(fp32_path), str(out_path), None, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=QUANTIZED_OP_TYPES, per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(float_nodes), calibrate_method=calibration_method(method),
                        calibration_cache_path=str(cache_path),
                        extra_options={"TensorQuantOverrides": overrides, "WeightSymmetric": True})


def conv_layers(fp32_path: Path) -> list[str]:
    """Names of the Conv nodes: the layers the precision search keeps in float or not."""
    import onnx

    return [n.name for n in onnx.load(str(fp32_path)).graph.node if n.op_type == "Conv"]


def convert_fp16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """FP16 weights and activations; the model's input and output stay FP32 (casts inside)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = _load_fp32(fp32_path)
    half = convert_float_to_float16(model, keep_io_types=True)
    _sort_topologically(half.graph)
    stamp(half, fp32_path, "fp16", {"io_types": "float32 input and output, float16 inside"})
    with atomic_path(out_path) as staged:
        onnx.checker.check_model(half)
        onnx.save(half, str(staged))
    return out_path


def _sort_topologically(graph: Any) -> None:
    """Reorder nodes so each follows its inputs' producers (the fp16 converter appends its casts last)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise TreefuseError("the fp16 graph has a cycle or a dangling input; report this as a bug")
        for node in ready:
            available.update(node.output)
        ordered += ready
        placed = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in placed]
    del graph.node[:]
    graph.node.extend(ordered)


def _load_fp32(fp32_path: Path) -> Any:
    import onnx

    if not fp32_path.is_file():
        raise TreefuseError(f"ONNX model not found: {fp32_path}")
    model = onnx.load(str(fp32_path))
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node):
        raise TreefuseError(f"{fp32_path} is already quantized; start from the FP32 export")
    return model


def stamp(model: Any, fp32_path: Path, precision: str, facts: dict[str, Any]) -> None:
    """Copy the FP32 model's metadata onto `model` and record precision, calibration and source."""
    from treefuse.export.onnx.exporter import read_metadata, set_metadata

    import onnx

    source = read_metadata(onnx.load(str(fp32_path), load_external_data=False))
    try:
        base_record = json.loads(source.get("treefuse_provenance", "{}"))
    except json.JSONDecodeError:
        base_record = {}
    record = provenance(**{**base_record, "precision": precision, "fp32_onnx_sha256": sha256_file(fp32_path),
                           **facts})
    entries = dict(source)
    entries.update({"precision": precision, "treefuse_provenance": json.dumps(record, sort_keys=True)})
    for key in ("calib_sha256", "target"):
        if key in facts:
            entries[key] = facts[key]
    entries.update(artifact_metadata(format="onnx", precision=precision, config=base_record.get("config"),
                                     source_sha256=base_record.get("source_sha256"),
                                     calibration_sha256=facts.get("calib_sha256"), target=facts.get("target")))
    set_metadata(model, entries)


@dataclass(frozen=True)
class Int8Result:
    """What an INT8 export produced and decided."""

    path: Path
    float_layers: list[str]
    task: dict[str, Any] | None  # fp32/int8 task PSNR and drop when a paired set was given
    sensitivity_path: Path | None
    verification: dict[str, Any] | None = None  # its check against the FP32 ONNX model, by the int8 gates


def sensitivity_path_for(out_path: Path) -> Path:
    return out_path.with_name(f"{out_path.stem}.sensitivity.json")


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calib_dir: str | Path, *, method: str = "minmax",
                  paired_dir: str | Path | None = None, max_task_drop_db: float | None = None,
                  max_worst_task_drop_db: float | None = None, max_pairs: int | None = None,
                  crop: int | None = None, log: Callable[[str], None] = print, progress: bool = False,
                  target: str = "onnxruntime") -> Int8Result:
    """Static INT8 QDQ of an FP32 ONNX model for `target`; with a paired set, keep layers float to meet the gates."""
    import onnx

    from treefuse.calib.store import load_calibration_set
    from treefuse.export.onnx.sensitivity import load_paired_set
    from treefuse.gates import gates_for

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    # The one gate table's int8 row with the user's overrides: the search and the final check both judge by it.
    gates = gates_for("int8").with_overrides(max_task_drop_db=max_task_drop_db,
                                             max_worst_task_drop_db=max_worst_task_drop_db)
    if target not in TARGETS:
        raise TreefuseError(f"--target must be one of {TARGETS}, got {target!r}")
    fp32_model = _load_fp32(fp32_path)
    calibration_method(method)
    calibration = load_calibration_set(calib_dir)
    paired = load_paired_set(paired_dir, max_pairs, crop) if paired_dir is not None else None
    with tempfile.TemporaryDirectory(prefix="treefuse-int8-") as tmp:
        rewritten, split_count, padded_count, widened_count = fp32_model, 0, 0, 0
        if target == "onnxruntime":  # the rewrites serve ONNX Runtime's CPU kernels only (onnx_rewrite.py)
            rewritten, split_count = split_concat_convs(fp32_model)
            rewritten, padded_count = pad_input_channels(rewritten)
            rewritten, widened_count = pad_output_channels(rewritten)
        source = Path(tmp) / "rewritten.onnx"
        onnx.save(rewritten, str(source))
        cache = Path(tmp) / "ranges.json"
        ranges = calibrate(source, calibration, method, cache)
        overrides = concat_overrides(rewritten, ranges)
        log(f"calibrated on {calib_dir} (sha256 {calibration.sha256[:12]}, {len(calibration)} images) with {method}")

        def make(float_layers: Sequence[str], name: str) -> Path:
            if target == "tensorrt":
                quantize_tensorrt_model(source, Path(tmp) / name, cache, method, float_layers)
            else:
                quantize_int8_model(source, Path(tmp) / name, cache, method, overrides, float_layers)
            return Path(tmp) / name

        search, report = (None, None) if paired is None else _budget_search(
            fp32_path, conv_layers(source), make, paired, gates, log, progress, _qat_target(target))
        float_layers = search.float_layers if search else []
        final_path = make(float_layers, "final.onnx")
        verification = _verify(fp32_path, final_path, calibration, paired, gates, target)
        model = onnx.load(str(final_path))
    task = None if search is None else {"fp32_psnr_db": search.fp32_psnr, "int8_psnr_db": search.fp32_psnr - search.drop_db,
                                        "drop_db": search.drop_db, "max_task_drop_db": gates.max_task_drop_db,
                                        "worst_drop_db": search.worst_drop_db,
                                        "max_worst_task_drop_db": gates.max_worst_task_drop_db,
                                        "paired_set": paired.source}
    stamp(model, fp32_path, "int8", {"calib_sha256": calibration.sha256, "calibration_set": str(calib_dir),
                                     "calibration_method": method, "target": target,
                                     "int8_settings": TENSORRT_INT8_SETTINGS if target == "tensorrt" else INT8_SETTINGS,
                                     "float_layers": float_layers, "task": task, "verification": verification,
                                     "rewrites": {"concat_1x1_conv_split": split_count,
                                                  "input_channel_pad": padded_count,
                                                  "output_channel_pad": widened_count}})
    report_path = sensitivity_path_for(out_path) if report is not None else None
    with contextlib.ExitStack() as stack:
        staged = stack.enter_context(atomic_path(out_path))
        onnx.save(model, str(staged))
        if report_path is not None:
            stack.enter_context(atomic_path(report_path)).write_text(json.dumps(report, indent=2) + "\n")
    return Int8Result(out_path, float_layers, task, report_path, verification)


def _qat_target(target: str) -> str:
    """The QAT target whose run an INT8 model for `target` is exported from."""
    return "trt-qdq" if target == "tensorrt" else "ort-qdq"


def _verify(fp32_path: Path, final_path: Path, calibration: Any, paired: Any, gates: Gates,
            target: str = "onnxruntime") -> dict[str, Any]:
    """The INT8 gates of the one gate table, checked on the paired set (or the calibration images)."""
    from treefuse.export.onnx.sensitivity import judged_samples
    from treefuse.export.verify import verify_onnx_export

    samples, what = judged_samples(paired, calibration)
    return verify_onnx_export(fp32_path, final_path, samples, gates, what, qat_target=_qat_target(target),
                              paired_images=paired is not None, judged=paired and paired.folder)


def _budget_search(fp32_path: Path, layers: list[str], make: Callable[[Sequence[str], str], Path], paired: Any,
                   gates: Gates, log: Callable[[str], None], progress: bool,
                   qat_target: str) -> tuple[Any, dict[str, Any]]:
    """Keep the most sensitive layers in float until the model passes `gates` on the paired set (mean and worst)."""
    from treefuse.export.onnx.sensitivity import (PairedJudge, keep_until_gates_pass, layer_sensitivity, task_psnr_db,
                                                   worst_drop_db)
    from treefuse.export.verify import gate_miss_advice
    from treefuse.gates import gates_text

    judge = PairedJudge(fp32_path, paired, gates)

    def evaluate(float_layers: Sequence[str]) -> dict[str, Any]:
        return judge(make(float_layers, "candidate.onnx"))

    all_int8, fp32_psnr = evaluate([]), judge.fp32_psnr_db
    log(f"task PSNR on {paired.source}: fp32 {fp32_psnr:.3f} dB, all-int8 {task_psnr_db(all_int8):.3f} dB "
        f"(drop {fp32_psnr - task_psnr_db(all_int8):.3f} dB mean, {worst_drop_db(all_int8):.3f} dB on the worst "
        f"image; gates {gates_text(gates.to_json())})")
    table = layer_sensitivity(layers, evaluate, all_int8, progress=progress)
    search = keep_until_gates_pass(fp32_psnr, all_int8, table, evaluate,
                                   advice=gate_miss_advice("onnx", "int8", qat_target, paired_images=True,
                                                           judged=paired.folder))
    for step in search.steps[1:]:
        log(f"kept in float: {step['added']} (alone in float it recovers {step['recovered_alone_db']:+.3f} dB) "
            f"-> drop {step['drop_db']:.3f} dB mean, {step['worst_drop_db']:.3f} dB on {step['worst_image']}")
    if not search.float_layers:
        log(f"all {len(layers)} conv layers in int8: the model already passes its gates")
    report = {"fp32_psnr_db": fp32_psnr, "all_int8_psnr_db": search.steps[0]["psnr_db"],
              "max_task_drop_db": gates.max_task_drop_db, "max_worst_task_drop_db": gates.max_worst_task_drop_db,
              "gates": gates.to_json(), "paired_set": paired.source,
              "metric": "RGB PSNR of derained output vs clean, mean and worst image",
              "sensitivity": table, "steps": search.steps, "float_layers": search.float_layers,
              "final_drop_db": search.drop_db, "final_worst_drop_db": search.worst_drop_db}
    return search, report

"""`treefuse export onnx`: weights -> a folded, simplified, checked ONNX model (fp32, fp16 or int8)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "fp16", "int8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("examples:\n  treefuse export onnx --weights w.safetensors --out m.onnx\n"
                     "  treefuse export onnx --precision int8 --calib CALIB_DIR --paired-images PAIRS --out m.int8.onnx\n\n"
                     "The within-block first-level fuses are folded into the dilated convolutions (exact),\n"
                     "batch/height/width are dynamic, and the model carries its config and source hash.\n"
                     "fp16 keeps the input and output in float32. int8 is static QDQ (per-channel weights)\n"
                     "calibrated on CALIB_DIR; with --paired-images the most sensitive layers stay in float\n"
                     "until the task-PSNR drop vs fp32 is within --max-task-drop.")
    parser.add_argument("--weights", type=Path, default=None, help="treefuse weights (default: the shipped ones)")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=opset_number, default=17,
                        help=f"ONNX opset, {MIN_OPSET} to {max_opset()} (default 17)")
    parser.add_argument("--no-fold", action="store_true", help="export the network as trained, without the fold")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="default fp32")
    parser.add_argument("--calib", type=Path, help="calibration set folder (required for int8)")
    parser.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                        help="how activation ranges are taken from the calibration set (default minmax)")
    parser.add_argument("--max-task-drop", type=float, default=None, metavar="DB",
                        help="int8: largest task-PSNR drop vs fp32 in dB on --paired-images (default: the int8 gate's)")
    parser.add_argument("--paired-images", type=Path,
                        help="paired folder (rain/ + clean/) judging int8 on the task; writes OUT's .sensitivity.json")
    parser.add_argument("--qat", type=Path, metavar="RUN_DIR",
                        help="int8: write the QDQ model a `treefuse qat` run learned (no calibration; see docs/quantization.md)")
    parser.add_argument("--target", choices=("onnxruntime", "tensorrt"), default="onnxruntime",
                        help="int8: the runtime the QDQ layout is for (default onnxruntime); tensorrt gives signed "
                             "symmetric QDQ that TensorRT's parser accepts (docs/tensorrt.md)")


# ONNX Runtime guarantees opset 7 and up; torch's exporter writes up to its own maximum.
MIN_OPSET = 7


def max_opset() -> int:
    from torch.onnx._constants import ONNX_MAX_OPSET

    return ONNX_MAX_OPSET


def opset_number(text: str) -> int:
    """An argparse type: an opset the exporter can write and ONNX Runtime can run."""
    from treefuse.errors import TreefuseError

    if not text.strip().isdigit() or not MIN_OPSET <= int(text) <= max_opset():
        raise TreefuseError(f"--opset {text!r} must be a whole number from {MIN_OPSET} to {max_opset()}; "
                            "17 suits ONNX Runtime and TensorRT")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.errors import TreefuseError
    from treefuse.export.onnx.chains import OnnxFromWeights
    from treefuse.files import check_output_path

    check_output_path(args.out)  # refuse a folder (or a file in a file's place) before minutes of work
    if args.qat is not None:
        return _from_qat(args)
    if args.precision == "int8" and args.calib is None:
        raise TreefuseError("int8 needs a calibration set: pass --calib CALIB_DIR (build one with `treefuse calib build`)")
    if args.precision != "int8" and (args.calib or args.paired_images or args.target != "onnxruntime"):
        raise TreefuseError("--calib, --paired-images and --target apply to --precision int8 only")
    if args.precision == "int8":
        _check_int8_inputs(args)
    fp32 = OnnxFromWeights(args.weights or default_weights(), opset=args.opset, folded=not args.no_fold)
    if args.precision == "fp32":
        fp32(args.out)
        print(f"wrote {args.out}")
        return 0
    return _reduced(args, fp32)


def _check_int8_inputs(args: argparse.Namespace) -> None:
    """Refuse a bad calibration set, paired folder or budget before minutes of export and calibration."""
    from treefuse.calib.store import load_calibration_set
    from treefuse.gates import gates_for
    from treefuse.images import paired_images

    gates_for("int8").with_overrides(max_task_drop_db=args.max_task_drop)
    load_calibration_set(args.calib)
    if args.paired_images is not None:
        paired_images(args.paired_images)


def _reduced(args: argparse.Namespace, fp32: Any) -> int:
    from treefuse.export.onnx.chains import Fp16OnnxFromOnnx, Int8OnnxFromOnnx
    from treefuse.gates import gates_for

    if args.precision == "fp16":
        Fp16OnnxFromOnnx(fp32)(args.out)
        print(f"wrote {args.out} (fp16 weights and activations; input and output stay float32)")
        return 0
    if args.paired_images is None:
        print("note: task drop not measured (no --paired-images): every conv layer is int8")
    gates = gates_for("int8").with_overrides(max_task_drop_db=args.max_task_drop)  # refuses NaN and nonsense
    result = Int8OnnxFromOnnx(fp32, args.calib, method=args.calib_method, paired_dir=args.paired_images,
                              max_task_drop_db=gates.max_task_drop_db, progress=True, target=args.target)(args.out)
    kept = f"{len(result.float_layers)} conv layer(s) kept in float" if result.float_layers else "all conv layers int8"
    print(f"wrote {args.out} (int8 QDQ for {args.target}, {kept})" + (f"; sensitivity table {result.sensitivity_path}"
                                                     if result.sensitivity_path else ""))
    return 0


def _from_qat(args: argparse.Namespace) -> int:
    from treefuse.errors import TreefuseError
    from treefuse.export.onnx.qat_export import export_qat_int8

    if args.precision != "int8" or args.calib or args.weights or args.target != "onnxruntime":
        raise TreefuseError("--qat RUN_DIR goes with --precision int8 only: the run holds its weights and scales")
    export_qat_int8(args.qat, args.out, args.paired_images)
    print(f"wrote {args.out} (int8 QDQ with the scales and weights learned in {args.qat})")
    return 0

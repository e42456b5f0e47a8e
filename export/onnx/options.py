"""`treefuse export onnx`'s own options: opset, fold, INT8 calibration method, task budget and target layout."""
from __future__ import annotations

import argparse

# ONNX Runtime guarantees opset 7 and up; torch's exporter writes up to its own maximum.
MIN_OPSET = 7


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("examples:\n  treefuse export onnx --weights w.safetensors --out m.onnx\n"
                     "  treefuse export onnx --precision int8 --calib CALIB_DIR --paired-images PAIRS --out m.int8.onnx\n\n"
                     "The within-block first-level fuses are folded into the dilated convolutions (exact),\n"
                     "batch/height/width are dynamic, and the model carries its config and source hash.\n"
                     "fp16 keeps the input and output in float32. int8 is static QDQ (per-channel weights)\n"
                     "calibrated on CALIB_DIR; with --paired-images the most sensitive layers stay in float\n"
                     "until the model passes the int8 gates export's final check applies: the mean task-PSNR\n"
                     "drop vs fp32 within --max-task-drop and the drop on every single image within\n"
                     "--max-worst-task-drop (a sensitivity table lands beside OUT).")
    parser.add_argument("--opset", type=opset_number, default=17,
                        help=f"ONNX opset, {MIN_OPSET} to {max_opset()} (default 17)")
    parser.add_argument("--no-fold", action="store_true", help="export the network as trained, without the fold")
    parser.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                        help="int8: how activation ranges are taken from the calibration set (default minmax)")
    parser.add_argument("--max-task-drop", type=task_drop, default=None, metavar="DB",
                        help="int8: largest mean task-PSNR drop vs fp32 in dB on --paired-images "
                             "(default: the int8 gate's)")
    parser.add_argument("--max-worst-task-drop", type=worst_task_drop, default=None, metavar="DB",
                        help="int8: largest task-PSNR drop vs fp32 in dB on any single image of --paired-images "
                             "(default: the int8 gate's)")
    parser.add_argument("--target", choices=("onnxruntime", "tensorrt"), default="onnxruntime",
                        help="int8: the runtime the QDQ layout is for (default onnxruntime); tensorrt gives signed "
                             "symmetric QDQ that TensorRT's parser accepts (docs/tensorrt.md)")


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


def task_drop(text: str) -> float:
    """An argparse type: a mean task-PSNR budget the int8 gate row accepts (NaN and nonsense refused in one line)."""
    return _int8_threshold("--max-task-drop", "max_task_drop_db", text)


def worst_task_drop(text: str) -> float:
    """An argparse type: a worst-image task-PSNR budget the int8 gate row accepts (checked like --max-task-drop)."""
    return _int8_threshold("--max-worst-task-drop", "max_worst_task_drop_db", text)


def _int8_threshold(flag: str, field: str, text: str) -> float:
    """`text` as the int8 gate row's `field`, checked by the row itself; the one-line error names `flag`."""
    from treefuse.errors import TreefuseError
    from treefuse.gates import gates_for

    default = getattr(gates_for("int8"), field)
    try:
        return getattr(gates_for("int8").with_overrides(**{field: float(text)}), field)
    except ValueError:
        raise TreefuseError(f"{flag} {text!r} must be a number of dB, e.g. {default:g}") from None
    except TreefuseError as exc:
        raise TreefuseError(f"{flag}: {exc}") from None

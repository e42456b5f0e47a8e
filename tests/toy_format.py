"""A toy format for the format-table test: its artifact is an ONNX file under another suffix, run by ONNX Runtime.

`scale` lets a test export a broken artifact (every output scaled) to see the toy's gate fail.
"""
from __future__ import annotations

from pathlib import Path

from treefuse.export.request import Converted, ExportRequest
from treefuse.formats import Format, Precision, Shape
from treefuse.runtimes.backends.onnx_runner import OnnxRuntimeRunner

TOY = Format("toy", ".toy", (Precision("fp32", "fp32"), Precision("fp16", "fp16", benchmarked=False)),
             "a toy format (an ONNX file named .toy)", "toy_format:ToyRunner", requires=("onnxruntime",),
             exporter="toy_format:convert", export_help="toy: ONNX under another name", shape=Shape("fixed"))
BROKEN = {"scale": 1.0}


class ToyRunner(OnnxRuntimeRunner):
    kind = "toy"


def convert(request: ExportRequest, staged: Path) -> Converted:
    """Export fp32 ONNX into the staged .toy file, optionally broken; the pipeline judges it like every format."""
    import onnx
    from onnx import helper, numpy_helper

    from treefuse.export.onnx.exporter import export_onnx

    onnx_path = export_onnx(request.source, Path(str(staged) + ".onnx"))
    model = onnx.load(str(onnx_path))
    onnx_path.unlink()
    if BROKEN["scale"] != 1.0:  # append a Mul on the output: a wrong artifact of the right shape
        output = model.graph.output[0].name
        model.graph.node[-1].output[0] = output + "_raw"
        model.graph.initializer.append(numpy_helper.from_array(
            __import__("numpy").array(BROKEN["scale"], "float32"), "toy_scale"))
        model.graph.node.append(helper.make_node("Mul", [output + "_raw", "toy_scale"], [output]))
    onnx.save(model, str(staged))
    return Converted(request.precision, calibration=request.calibration)

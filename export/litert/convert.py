"""The LiteRT conversion itself, run as `python -m treefuse.export.litert.convert` inside .venv-litert.

litert-torch pins typing-extensions < 4.13 and pulls jax, so it lives in its own environment
(`make install-litert`) and export/litert/exporter.py calls this module there as a subprocess.
Nothing crosses the process boundary but paths and a JSON facts file: the weights and the
calibration set are read here with treefuse's own loaders (safetensors, .npy without pickle). A QAT
run's network is the one exception: it needs ExecuTorch's quantizer to rebuild, so the parent hands
over its `convert_pt2e` program as a .pt2 it has just written (torch.export.save: a JSON graph and raw
tensors), whose quantize ops carry the learned scales.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

TOOLS = ("treefuse", "torch", "litert-torch", "litert-converter", "ai-edge-quantizer", "ai-edge-litert", "torchao")


def convert(weights: Path, out: Path, precision: str, calib: Path | None, size: tuple[int, int],
            learned: Path | None = None) -> dict[str, Any]:
    """Write the .tflite for `weights` (or for the QAT program `learned`, made from them) at `out`; returns facts."""
    import litert_torch

    from treefuse.checkpoint import load_weights
    from treefuse.folding import fold
    from treefuse.provenance import tool_versions

    loaded = load_weights(weights)
    network = fold(loaded.model)
    example = torch.rand(1, loaded.config.in_channels, *size, generator=torch.Generator().manual_seed(0))
    calibration_sha256 = None
    if learned is not None:
        edge_model = _convert_learned(litert_torch, learned, example)
    elif precision == "int8":
        from treefuse.export.calibration_images import calibration_from

        images = calibration_from(calib)
        edge_model = _convert_int8(litert_torch, network, example, images.images)
        calibration_sha256 = images.sha256
    else:
        edge_model = litert_torch.convert(network, (example,))
    edge_model.export(str(out))
    if precision == "fp16":
        _weights_to_fp16(out)
    return {"config": loaded.config.to_dict(), "source_sha256": loaded.sha256, "calibration_sha256": calibration_sha256,
            "tool_versions": tool_versions(TOOLS)}


def _convert_int8(litert_torch: Any, network: torch.nn.Module, example: torch.Tensor, images: np.ndarray) -> Any:
    """Full-integer convs through PT2E with litert-torch's quantizer, ranges observed on the calibration images."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from treefuse.export.pt2e.float_nodes import outside_modules

    class FloatModulesQuantizer(PT2EQuantizer):
        """litert-torch's quantizer, annotating only nodes outside the float modules (it has no filter option)."""

        def _annotate_for_static_quantization_config(self, model: Any) -> Any:
            return self._annotate_all_static_patterns(model, self.global_config, outside_modules())

    quantizer = FloatModulesQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    dynamic = {"x": {2: torch.export.Dim("height", min=8, max=4096), 3: torch.export.Dim("width", min=8, max=4096)}}
    prepared = prepare_pt2e(torch.export.export(network, (example,), dynamic_shapes=dynamic).module(), quantizer)
    with torch.no_grad():
        for image in images:
            prepared(torch.tensor(image[None]))  # a copy: the set is read-only
    converted = convert_pt2e(prepared, fold_quantize=False)
    return litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))


def _convert_learned(litert_torch: Any, learned: Path, example: torch.Tensor) -> Any:
    """A QAT run's converted network as it is: its quantize ops carry the learned scales, nothing is observed."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e  # noqa: F401  the program's quantize ops, registered

    program = torch.export.load(str(learned))
    # Never run on the network: a static quantizer only tells the converter to lower the quantize ops as INT8.
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    with _strict_qdq():
        return litert_torch.convert(program.module(), (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))


@contextlib.contextmanager
def _strict_qdq() -> Iterator[None]:
    """The converter in strict QDQ mode: only what sits between a dequantize and a quantize op becomes INT8.

    Otherwise it also quantizes what XNNPACK's quantizer left float (the across-block fuses, which the
    QAT network ran in float), and turns the graph's input and output into INT8 tensors because the
    program's first op quantizes and its last dequantizes. litert-torch 0.10 has no option for the
    mode, so its converter config is made with it on for this call."""
    from litert_torch._convert import litert_converter

    api = litert_converter.converter_api_ext
    make_config = api.ConvertToTFLConfig

    def strict_config() -> Any:
        config = make_config()
        config.strict_qdq_mode = True
        return config

    api.ConvertToTFLConfig = strict_config
    try:
        yield
    finally:
        api.ConvertToTFLConfig = make_config


def _weights_to_fp16(path: Path) -> None:
    """FP16 weights (dequantized to FP32 at load), LiteRT's float16 post-training recipe."""
    from ai_edge_quantizer import quantizer as aeq
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    model = aeq.Quantizer(str(path))
    model.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                 granularity=qtyping.QuantGranularity.TENSORWISE,
                                 algorithm_key=AlgorithmName.FLOAT_CASTING)
    model.quantize().export_model(str(path), overwrite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), required=True)
    parser.add_argument("--calib", type=Path, default=None)
    parser.add_argument("--learned", type=Path, default=None, help="a QAT run's convert_pt2e program (.pt2)")
    parser.add_argument("--size", required=True, help="HxW the model is converted at")
    parser.add_argument("--facts", type=Path, required=True, help="JSON file the facts are written to")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    from treefuse.errors import TreefuseError

    try:
        facts = convert(args.weights, args.out, args.precision, args.calib, (height, width), args.learned)
    except TreefuseError as exc:  # the parent shows the last stderr line: keep it the message
        print(f"treefuse: error: {exc}", file=sys.stderr)
        return 2
    args.facts.write_text(json.dumps(facts, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

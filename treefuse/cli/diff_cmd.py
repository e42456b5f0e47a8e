"""`treefuse diff`: where does a candidate backend first go wrong? Every layer against a reference's."""
from __future__ import annotations

import argparse
from pathlib import Path

from treefuse.cli.args import add_backend_option, add_json_option, parse_size, positive_int

EXAMPLES = """\
examples:
  treefuse diff --ref torch:w.safetensors --cand onnx:m.int8.onnx --images ../shared/data/heavy-rain-sample5/rain
  treefuse diff --ref onnx:m.onnx --cand openvino:m.int8.onnx --images pairs/ --crop 256x256 --json d.json
  treefuse diff --ref torch:w.safetensors --cand onnx:m.onnx --images imgs/ --arrays layers.npz
  treefuse diff --ref torch:w.safetensors --cand-layers device.layers.npz   # from `run.py --layers` on a device

Both backends run with every layer's output exposed, matched by the folded model's layer names
(`blocks.2.pairs.0.conv_a` is the same tensor in PyTorch, ONNX Runtime and OpenVINO); a quantized
candidate is compared at each layer's float output (after its dequantize). A layer's PSNR is taken
against the reference layer's own peak. The first layer below --min-layer-psnr (default: the
candidate precision's output-PSNR gate) is named; exit 1 when the final output misses that gate.
Images are centre-cropped to --crop (default 128x128): every layer of both is held at once.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    add_backend_option(parser, "--ref", required=True)
    add_backend_option(parser, "--cand")
    parser.add_argument("--images", metavar="DIR", help="image folder or paired folder (rain/ used); with --cand")
    parser.add_argument("--cand-layers", type=Path, metavar="NPZ",
                        help="instead of --cand/--images: the layers a device recorded (`python run.py --layers NPZ` "
                        "in its bundle); the reference runs here on the inputs the device ran")
    parser.add_argument("--crop", type=parse_size, default=(128, 128), metavar="HxW",
                        help="centre crop of each image (default 128x128)")
    parser.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                        help="output-PSNR gate (default: by the candidate's precision)")
    parser.add_argument("--min-layer-psnr", type=float, default=None, metavar="DB",
                        help="a layer below this diverges (default: the output-PSNR gate)")
    parser.add_argument("--threads", type=positive_int("--threads"), default=None, help="CPU threads per backend")
    parser.add_argument("--arrays", type=Path, default=None, metavar="OUT.npz",
                        help="write the first image's every layer of both backends here (.npz, no pickles)")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from treefuse.errors import GateFailed, TreefuseError
    from treefuse.files import check_output_path, write_json_atomic
    from treefuse.runtimes.backends.registry import make_runner
    from treefuse.runtimes.inspect.diff import diff_recorded, diff_result, read_recorded
    from treefuse.runtimes.measurements.parity import image_set

    if bool(args.cand_layers) == bool(args.cand or args.images) or bool(args.cand) != bool(args.images):
        raise TreefuseError("give --cand KIND:PATH with --images DIR, or --cand-layers NPZ from a device bundle")
    for output in (args.json, args.arrays):
        if output:
            check_output_path(output)  # refuse a bad output before any work
    if args.cand_layers:
        meta, samples = read_recorded(args.cand_layers)
        with make_runner(args.ref, threads=args.threads) as reference:
            gates, min_layer = _gates(meta.get("candidate", {}).get("precision"), args)
            result = diff_recorded(reference, meta, samples, gates, min_layer, args.threads, args.arrays,
                                   str(args.cand_layers))
    else:
        images = [rainy for rainy, _ in image_set(args.images)]
        with make_runner(args.ref, threads=args.threads) as reference, \
                make_runner(args.cand, threads=args.threads) as candidate:
            gates, min_layer = _gates(candidate.compute_precision(), args)
            result = diff_result(reference, candidate, images, gates, min_layer, args.crop, args.threads,
                                 args.arrays, str(args.images))
    if args.json:
        write_json_atomic(args.json, result.to_json())
    _print(result)
    if not result.passed:
        raise GateFailed("; ".join(result.failures) + _first_text(result))
    return 0


def _gates(precision: str | None, args: argparse.Namespace):
    """The candidate precision's gates with the user's overrides, and the layer threshold (default: the output's)."""
    from treefuse.gates import MAX_PSNR_DB, check_threshold, gates_for

    gates = gates_for(precision).with_overrides(args.min_psnr)
    min_layer = gates.min_output_psnr_db if args.min_layer_psnr is None else args.min_layer_psnr
    check_threshold("min layer PSNR", min_layer, 0.0, MAX_PSNR_DB)
    return gates, min_layer


def _db(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.2f}"


def _first_text(result) -> str:
    first = result.first_diverging_layer
    return f"; first layer below {result.gates['min_layer_psnr_db']:g} dB: {first}" if first else ""


def _print(result) -> None:
    width = max(len(row["layer"]) for row in result.layers)
    print(f"{'layer':<{width}}  {'PSNR dB':>8}  {'max abs err':>11}  (worst over {len(result.images)} image(s))")
    for row in result.layers:
        mark = "  <- first below threshold" if row["layer"] == result.first_diverging_layer else ""
        print(f"{row['layer']:<{width}}  {_db(row['psnr_db']):>8}  {row['max_abs_error']:>11.3g}{mark}")
    unmatched = result.unmatched
    if len(result.layers) == 1:
        print(f"{result.candidate.get('kind')} exposes only its output (its runtime keeps the layers to itself); "
              "see docs/inspect.md")
    elif unmatched.get("reference_only") or unmatched.get("candidate_only"):
        print(f"unmatched layers: {len(unmatched['reference_only'])} only in the reference, "
              f"{len(unmatched['candidate_only'])} only in the candidate (see --json)")
    print("exposing every layer changed the final output by at most "
          + ", ".join(f"{value:.3g} ({side})" for side, value in result.exposure_effect.items()))
    first = result.first_diverging_layer
    print(f"first layer below {result.gates['min_layer_psnr_db']:g} dB: {first or 'none'}")
    print("PASSED" if result.passed else "FAILED: " + "; ".join(result.failures))

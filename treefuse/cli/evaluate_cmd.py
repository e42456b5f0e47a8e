"""`treefuse evaluate`: PSNR/SSIM of one backend against ground truth."""
from __future__ import annotations

import argparse

from treefuse.cli.args import add_backend_option, add_json_option, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("example:\n  treefuse evaluate --backend onnx:m.onnx --data ../shared/data/heavy-rain-sample5 "
                     "--json eval.json\n\n--data is a paired folder: rain/ and clean/ with the same file names.")
    add_backend_option(parser, required=True)
    parser.add_argument("--data", required=True, metavar="PAIRED_DIR", help="folder with rain/ and clean/")
    parser.add_argument("--threads", type=positive_int("--threads"), default=None, help="CPU threads")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from treefuse.files import check_output_path, write_json_atomic
    from treefuse.runtimes.measurements.evaluate import evaluate
    from treefuse.runtimes.backends.registry import make_runner

    if args.json:
        check_output_path(args.json)  # refuse a bad output before minutes of work
    with make_runner(args.backend, threads=args.threads) as runner:
        result = evaluate(runner, args.data, progress=True, threads=args.threads)
    mean = result.mean
    print(f"{result.count} images: PSNR RGB {mean['psnr_rgb_db']:.2f} dB, Y {mean['psnr_y_db']:.2f} dB | "
          f"SSIM RGB {mean['ssim_rgb']:.4f}, Y {mean['ssim_y']:.4f} | rainy input Y {mean['input_psnr_y_db']:.2f} dB")
    if args.json:
        write_json_atomic(args.json, result.to_json())
    return 0

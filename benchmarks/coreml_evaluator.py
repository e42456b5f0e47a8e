"""The Core ML evaluator's FP32-accumulate path vs torch's own FP16 conv, interleaved, same images.

    python benchmarks/coreml_evaluator.py PACKAGE.mlpackage --images PAIRED_OR_IMAGE_DIR [--threads 2]

Per image: both paths' time (alternating, so load affects both alike), the ratio, the largest
output difference and the PSNR of one path's output against the other's. Issue 13's target is
a ratio of at least 10 with the same verdicts (parity of both against the FP32 reference:
`treefuse parity --ref torch:W --cand coreml:PACKAGE --images DIR`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from treefuse.device import cpu_flags_text
from treefuse.images import from_batch, list_images, read_image, to_batch
from treefuse.metrics import calculate_psnr
from treefuse.runtimes.backends import coreml_mil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    program = coreml_mil.load_program(args.package)
    folder = args.images / "rain" if (args.images / "rain").is_dir() else args.images
    rows = []
    for path in list_images(folder):
        batch = to_batch(read_image(path))
        timed = {}
        for name, ops in (("native_fp16", coreml_mil.NATIVE_FP16_OPS), ("fp32_accumulate", coreml_mil.OPS)):
            start = time.perf_counter()
            timed[name] = (coreml_mil.evaluate(program, batch, ops), time.perf_counter() - start)
        (native, native_s), (fast, fast_s) = timed["native_fp16"], timed["fp32_accumulate"]
        rows.append({"image": path.name, "hw": list(batch.shape[2:]), "native_fp16_s": round(native_s, 3),
                     "fp32_accumulate_s": round(fast_s, 3), "speed_up": round(native_s / fast_s, 2),
                     "max_abs_diff": float(np.abs(fast - native).max()),
                     "psnr_db": calculate_psnr(from_batch(fast.clip(0, 1)), from_batch(native.clip(0, 1)))})
        print(json.dumps(rows[-1]))
    speed_ups = [row["speed_up"] for row in rows]
    summary = {"package": str(args.package), "precision": program.precision(), "threads": args.threads,
               "cpu": cpu_flags_text(), "median_speed_up": float(np.median(speed_ups)), "rows": rows}
    print(f"{program.precision()} package, {len(rows)} images, {args.threads} threads, {cpu_flags_text()}: "
          f"median speed-up {summary['median_speed_up']:.1f}x (min {min(speed_ups):.1f}x), "
          f"largest difference {max(r['max_abs_diff'] for r in rows):.2e}, "
          f"lowest PSNR between them {min(r['psnr_db'] for r in rows):.1f} dB")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

"""`treefuse benchmark`: export every format x precision, check parity, time them side by side, one table."""
from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """\
example:
  treefuse benchmark --images ../shared/data/heavy-rain-sample5 --calib calib/ --size 512x512 --out outputs/benchmark
  treefuse benchmark --formats executorch,litert --images PAIRS --calib calib/ --out outputs/mobile
  treefuse benchmark --formats onnx,openvino --images PAIRS --sizes 256x256,720x1280 --out outputs/cpu  # + resolution

Exports into --out (an artifact already there is reused when its own record names the same
weights, precision and calibration set), judges each against PyTorch FP32 with the default
gates of its precision on the paired images (output PSNR vs the reference, task PSNR vs the
ground truth), then times every artifact and PyTorch interleaved at --size: compare the
ratios, not absolute times across runs. Writes OUT/benchmark.json, and OUT/bench.json plus
OUT/parity/*.json that `treefuse report` reads. Formats that cannot run here are listed
with the reason. INT8 cells are exported as `treefuse export KIND --paired-images PAIRS` would:
ONNX keeps its most sensitive layers in float until it passes, and each export is judged on
the pairs (default: --images).

Exit 0 once the table is complete, misses included (marked FAIL, each with what to try, and
with MODEL.gate-failed.json beside a kept artifact that missed); exit 1 only for the cells
named by --require-pass that missed their gates.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.cli.args import add_json_option, parse_size, positive_int, weights_path

    parser.epilog = EXAMPLES
    parser.add_argument("--weights", type=weights_path, default=None,
                        help="treefuse weights (`default` or omitted: the shipped ones)")
    parser.add_argument("--images", type=Path, required=True, metavar="PAIRED_DIR",
                        help="paired folder (rain/ + clean/) the weights never trained on")
    parser.add_argument("--size", type=parse_size, default=(512, 512), metavar="HxW", help="timed size (default 512x512)")
    parser.add_argument("--sizes", type=lambda text: [parse_size(t) for t in text.split(",") if t.strip()], default=[],
                        metavar="HxW,...", help="more sizes to time beside --size, for latency vs resolution "
                                                "(OUT/bench-HxW.json each), e.g. 256x256,512x512,720x1280")
    parser.add_argument("--formats", default=None, metavar="KIND[,KIND...]",
                        help="formats to include (default: every benchmarked row of the format table, "
                             "`treefuse info --json`)")
    parser.add_argument("--paired-images", type=Path, default=None, metavar="PAIRS",
                        help="paired folder the INT8 exports keep float layers with and are judged on, as "
                             "`treefuse export --paired-images` (default: --images)")
    parser.add_argument("--require-pass", nargs="?", const="all", default=None, metavar="KIND:PRECISION[,...]",
                        help="exit 1 when these cells (alone: every cell) miss their gates; without it a miss is "
                             "a FAIL row of a complete table and the exit is 0")
    parser.add_argument("--calib", type=Path, default=None, metavar="CALIB_DIR",
                        help="calibration set for the int8 cells (without it they are listed as not run)")
    parser.add_argument("--qat", type=Path, action="append", default=[], metavar="RUN_DIR",
                        help="add the INT8 rows of each format this `treefuse qat` run serves (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark"), help="folder for artifacts and results")
    parser.add_argument("--warmup", type=positive_int("--warmup", 0), default=2, help="untimed calls each (default 2)")
    parser.add_argument("--iters", type=positive_int("--iters"), default=10, help="timed calls each (default 10)")
    parser.add_argument("--threads", type=positive_int("--threads"), default=None,
                        help="CPU threads per backend (default: each library's)")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.device import cpu_flags_text
    from treefuse.errors import TreefuseError
    from treefuse.export.matrix import export_matrix, qat_cells
    from treefuse.formats import benchmark_matrix
    from treefuse.files import check_output_folder, check_output_path
    from treefuse.images import is_paired_folder
    from treefuse.provenance import provenance
    from treefuse.device import cpu_facts
    from treefuse.runtimes.measurements.benchmark import format_benchmark_table, hinted_cells, run_benchmark

    for folder in (args.images, args.paired_images):
        if folder is not None and not is_paired_folder(folder):
            raise TreefuseError(f"{folder} is not a paired folder (needs rain/ and clean/ with the same file names)")
    pairs = args.paired_images or args.images
    check_output_folder(args.out)
    if args.json:
        check_output_path(args.json)
    kinds = [k.strip() for k in args.formats.split(",")] if args.formats else None
    known = {kind for kind, _ in benchmark_matrix()}
    unknown = sorted(set(kinds or ()) - known)
    if unknown:
        raise TreefuseError(f"--formats: unknown format(s) {unknown}; choose from {', '.join(sorted(known))}")
    matrix = tuple(cell for cell in benchmark_matrix() if kinds is None or cell[0] in kinds)
    required = _required_cells(args.require_pass, known)
    weights = args.weights or default_weights()
    _check_qat_runs(args.qat, weights)
    largest = _largest_image_hw(args.images, tuple(map(max, zip(args.size, *args.sizes))))
    cells = [cell.to_json() for cell in export_matrix(weights, args.out, largest, args.calib, matrix, pairs)]
    cells += [cell.to_json() for cell in qat_cells(args.qat, args.out, largest, set(kinds) if kinds else None, pairs)]
    cells += hinted_cells(cells, cpu_facts()["isa_flags"])  # OpenVINO bf16 on the FP32 file, where the CPU has bf16
    result = run_benchmark(f"torch:{weights}", cells, args.images, args.size, args.warmup, args.iters, args.threads,
                           progress=True, more_sizes=tuple(args.sizes))
    print(format_benchmark_table(result["rows"]))
    print(f"CPU: {cpu_flags_text()}; {args.size[0]}x{args.size[1]}, {args.iters} interleaved rounds; "
          f"quality on {args.images}")
    _write_results(args, result, cells, provenance())
    failed = [row for row in result["rows"] if row["verdict"].startswith("FAIL")]
    failed += [{"format": cell["kind"], "precision": cell["precision"], "route": cell["route"], "path": cell["path"]}
               for cell in cells if cell.get("gate_failed")]  # refused before it could be timed: still a miss
    _mark_gate_failures(result["rows"], cells)
    for row in failed:
        print(f"missed: {_cell_name(row)}: {_advice(row, args.images)}")
    missed = [row for row in failed if required is not None and (not required or _cell_key(row) in required)]
    if missed:
        from treefuse.errors import GateFailed

        raise GateFailed(f"{', '.join(_cell_name(row) for row in missed)} missed the default gates of their "
                         "precision (table above), and --require-pass asked for them")
    return 0


def _cell_key(row: dict) -> str:
    return f"{row['format']}:{row['precision']}"


def _cell_name(row: dict) -> str:
    return f"{row['format']} {row['precision']}{' QAT' if row.get('route') == 'qat' else ''}"


def _required_cells(asked: str | None, known: set[str]) -> set[str] | None:
    """--require-pass as a set of KIND:PRECISION keys (empty: every cell; None: none asked for)."""
    from treefuse.errors import TreefuseError
    from treefuse.formats import format_of

    if asked is None or asked == "all":
        return None if asked is None else set()
    keys = {key.strip() for key in asked.split(",") if key.strip()}
    for key in sorted(keys):
        kind, _, precision = key.partition(":")
        if kind not in known or precision not in format_of(kind).precision_names:
            raise TreefuseError(f"--require-pass: no cell {key!r}; name cells as KIND:PRECISION, e.g. onnx:int8 "
                                f"(kinds: {', '.join(sorted(known))})")
    return keys


def _advice(row: dict, images: Path) -> str:
    """What to try for a missed cell, naming only what exists: this command's options or whole commands."""
    from treefuse.export.verify import gate_miss_advice

    if row.get("route") == "qat":
        return "fine-tune longer: a new `treefuse qat` run with more --steps, then pass it here with --qat RUN2"
    advice = gate_miss_advice(row["format"], row["precision"], paired_images=True, judged=images)
    return advice + ("; then add --qat RUN to this benchmark" if "treefuse qat" in advice else "")


def _mark_gate_failures(rows: list[dict], cells: list[dict]) -> None:
    """MODEL.gate-failed.json beside each kept artifact that missed its gates on any runtime (a pass removes it)."""
    from treefuse.files import write_json_atomic

    by_spec = {row["spec"]: row for row in rows[1:] if row.get("spec")}
    misses: dict[str, list[dict]] = {}
    for cell in cells:
        if not cell.get("path"):
            continue
        row = by_spec.get(cell.get("spec") or "")
        failed = row is not None and row["verdict"].startswith("FAIL")
        entries = misses.setdefault(cell["path"], [])  # OpenVINO runs the ONNX files: one mark for both
        if cell.get("gate_failed") or failed:
            entries.append({"format": cell["kind"], "precision": cell["precision"],
                            "verdict": row["verdict"] if failed else cell["reason"],
                            "gates": row.get("gates") if failed else None})
    for path, entries in misses.items():
        marker = Path(f"{path}.gate-failed.json")
        if entries and Path(path).exists():
            write_json_atomic(marker, {"artifact": path, "misses": entries,
                                       "note": "missed its gates in `treefuse benchmark`: do not ship it"})
        elif not entries and marker.exists():
            marker.unlink()


def _check_qat_runs(runs: list[Path], weights: Path) -> None:
    """Each --qat run must be readable and trained from the benchmarked weights (its rows sit beside theirs)."""
    from treefuse.errors import TreefuseError
    from treefuse.files import sha256_file
    from treefuse.qat_run import read_settings

    for run in runs:
        if read_settings(run)["weights_sha256"] != sha256_file(weights):
            raise TreefuseError(f"QAT run {run} was trained from other weights than {weights}; pass its --weights "
                                "or a run of these weights")


def _largest_image_hw(images: Path, size: tuple[int, int]) -> tuple[int, int]:
    """The largest height and width any artifact must accept: the timed size or a parity image."""
    from PIL import Image

    from treefuse.images import paired_images

    heights, widths = [size[0]], [size[1]]
    for rainy, _ in paired_images(images):
        with Image.open(rainy) as image:
            widths.append(image.width)
            heights.append(image.height)
    return max(heights), max(widths)


def _write_results(args: argparse.Namespace, result: dict, cells: list[dict], record: dict) -> None:
    from treefuse.files import write_json_atomic

    summary = {"kind": "treefuse-benchmark", "size": list(args.size), "images_dir": str(args.images),
               "calibration": str(args.calib) if args.calib else None, "cells": cells, "rows": result["rows"],
               "device": result["bench"]["device"], "provenance": record}
    write_json_atomic(args.out / "benchmark.json", summary)
    write_json_atomic(args.out / "bench.json", result["bench"])
    for more in result.get("more_bench", []):  # one file per size: `treefuse report` plots latency vs resolution
        write_json_atomic(args.out / f"bench-{more['size'][0]}x{more['size'][1]}.json", more)
    runnable = [cell for cell in cells if cell.get("spec")]  # run_benchmark's parity list follows them
    for cell, parity in zip(runnable, result["parity"]):
        candidate, route = parity["candidate"], "-qat" if cell.get("route") == "qat" else ""
        write_json_atomic(args.out / "parity" / f"{candidate['kind']}-{candidate['precision']}{route}.json", parity)
    if args.json:
        write_json_atomic(args.json, {**summary, "bench": result["bench"], "parity": result["parity"]})

"""The bad-input corpus: every command fed what a new user (or an attacker) might feed it.

Each case is a command line built from the session's `world` of good and bad files plus an
expected exit code (0 ok, 1 a gate failed, 2 bad input, 3 a bug). For every case: the exit
code matches; exit 2 prints exactly one line, "treefuse: error: ..."; a failing command
writes nothing to its output folder; and no input changes by a byte.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from treefuse.cli import main



@dataclass(frozen=True)
class Case:
    """argv with {C} (the world) and {O} (this case's output folder), and the exit code it must give."""

    id: str
    argv: str
    code: int
    lead: str | None = None  # the fix belongs to a file the lead owns: strict xfail until it lands
    fault: str | None = None  # a fault injected while the command runs (see FAULTS)
    writes: str | None = None  # a success case: this output must exist afterwards
    stderr_has: str | None = None
    prepare: Callable[[Path, Path], None] | None = field(default=None, compare=False)  # (out, world)


DERAIN = "derain --backend onnx:{C}/onnx/model.onnx"
TORCH = "derain --backend torch:{C}/weights/{name} {C}/img/good.png --out {O}/d"
BENCH = "bench --backend onnx:{C}/onnx/model.onnx --size 16x16 --iters 1 --warmup 0"
SWEEP = "sweep --backend onnx:{C}/onnx/model.onnx --sizes 16x16 --iters 1 --warmup 0 --json {O}/s.json"
PARITY = "parity --ref onnx:{C}/onnx/model.onnx --images {C}/img"
PARITY_REF = PARITY + " --cand onnx:{C}/onnx/model.onnx"
EVALUATE = "evaluate --backend onnx:{C}/onnx/model.onnx"
DIFF = "diff --ref onnx:{C}/onnx/model.onnx --images {C}/img --crop 16x16"
DIFF_REF = DIFF + " --cand onnx:{C}/onnx/model.onnx"
PROFILE = "profile onnx:{C}/onnx/model.onnx --size 16x16 --runs 1"
ONNX = "export onnx --weights {C}/weights/w.safetensors --out {O}/m.onnx"
INT8 = ONNX + " --precision int8 --calib {C}/sets/{set}"
COREML = "export coreml --weights {C}/weights/w.safetensors --out {O}/m.mlpackage"
BLEND = "blend --base {C}/weights/w.safetensors --tuned {C}/weights/w.safetensors"
TRT = "export trt --onnx {C}/onnx/model.onnx --precision fp16 --out {O}/m.engine"


def _folder_with_a_file(name: str) -> Callable[[Path, Path], None]:
    def prepare(out: Path, world: Path) -> None:
        (out / name).mkdir(parents=True)
        (out / name / "keep.txt").write_text("the user's data\n")
    return prepare


def _broken_link(name: str) -> Callable[[Path, Path], None]:
    def prepare(out: Path, world: Path) -> None:
        (out / name).symlink_to(out / "nowhere" / name)
    return prepare


def _copy_of_the_run(out: Path, world: Path) -> None:
    shutil.copytree(world / "run", out / "run")  # resuming may add to the run folder: never the shared one




CASES = [
    # -- derain: images --------------------------------------------------------------------------------------------
    Case("derain-bomb-png", DERAIN + " {C}/bad/bomb.png --out {O}/d", 2),
    Case("derain-bomb-png-16bit", DERAIN + " {C}/bad/bomb16.png --out {O}/d", 2),
    Case("derain-truncated-png", DERAIN + " {C}/bad/truncated.png --out {O}/d", 2),
    Case("derain-text-named-png", DERAIN + " {C}/bad/text.png --out {O}/d", 2),
    Case("derain-empty-png", DERAIN + " {C}/bad/empty.png --out {O}/d", 2),
    Case("derain-newline-in-name", DERAIN + " '{C}/bad/two\nlines.png' --out {O}/d", 2),
    Case("derain-float-tiff", DERAIN + " {C}/bad/float.tif --out {O}/d", 2),
    Case("derain-bomb-after-good", DERAIN + " {C}/img/good.png {C}/bad/bomb.png --out {O}/d", 2),
    Case("derain-16bit-png", DERAIN + " {C}/ok/png16.png --out {O}/d", 0, writes="d/png16.png"),
    Case("derain-grayscale", DERAIN + " {C}/ok/gray.png --out {O}/d", 0, writes="d/gray.png"),
    Case("derain-rgba", DERAIN + " {C}/ok/rgba.png --out {O}/d", 0, writes="d/rgba.png"),
    Case("derain-empty-folder", DERAIN + " {C}/empty --out {O}/d", 2),
    Case("derain-missing-input", DERAIN + " {C}/img/nope.png --out {O}/d", 2),
    Case("derain-text-file", DERAIN + " {C}/text.txt --out {O}/d", 2),
    Case("derain-not-a-video", DERAIN + " {C}/bad/notvideo.mp4 --out {O}/d", 2),
    Case("derain-duplicate-names", DERAIN + " {C}/img/good.png {C}/img/good.png --out {O}/d", 2),
    Case("derain-out-is-a-file", DERAIN + " {C}/img/good2.png --out {C}/img/good.png", 2),
    Case("derain-out-overwrites-input", DERAIN + " {C}/img/good.png --out {C}/img", 2),
    # -- derain: what the model gives back ------------------------------------------------------------------------
    Case("derain-onnx-outputs-nan", "derain --backend onnx:{C}/onnx/nan.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-onnx-output-shape", "derain --backend onnx:{C}/onnx/shape.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-onnx-one-channel", "derain --backend onnx:{C}/onnx/one_channel.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-onnx-external-data-escapes",
         "derain --backend onnx:{C}/onnx/escape/model.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-onnx-int64-input", "derain --backend onnx:{C}/onnx/int64_input.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-onnx-two-inputs", "derain --backend onnx:{C}/onnx/two_inputs.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-onnx-garbage", "derain --backend onnx:{C}/onnx/garbage.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-onnx-nan-tiled",
         "derain --backend onnx:{C}/onnx/nan.onnx {C}/img/good.png --tile 16 --overlap 4 --out {O}/d", 2),
    # -- derain: options and backends ------------------------------------------------------------------------------
    Case("derain-threads-negative", DERAIN + " {C}/img/good.png --threads -1 --out {O}/d", 2),
    Case("derain-threads-zero", DERAIN + " {C}/img/good.png --threads 0 --out {O}/d", 2),
    Case("derain-threads-text", DERAIN + " {C}/img/good.png --threads abc --out {O}/d", 2),
    Case("derain-tile-zero", DERAIN + " {C}/img/good.png --tile 0 --out {O}/d", 2),
    Case("derain-overlap-negative", DERAIN + " {C}/img/good.png --tile 64 --overlap=-1 --out {O}/d", 2),
    Case("derain-unknown-backend", "derain --backend tflite:{C}/onnx/model.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-backend-missing", "derain --backend onnx:{C}/onnx/nope.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-backend-no-path", "derain --backend onnx: {C}/img/good.png --out {O}/d", 2),
    Case("derain-backend-no-kind", "derain --backend {C}/onnx/model.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-bad-option", "derain --backend onnx:{C}/onnx/model.onnx?bogus=1 {C}/img/good.png --out {O}/d", 2),
    Case("derain-option-not-key-value",
         "derain --backend onnx:{C}/onnx/model.onnx?threads {C}/img/good.png --out {O}/d", 2),
    Case("derain-option-bad-provider",
         "derain --backend onnx:{C}/onnx/model.onnx?providers=NopeProvider {C}/img/good.png --out {O}/d", 2),
    Case("derain-torch-bad-dtype",
         "derain --backend torch:{C}/weights/w.safetensors?dtype=int3 {C}/img/good.png --out {O}/d", 2),
    Case("derain-torch-weights-are-a-folder", "derain --backend torch:{C}/weights {C}/img/good.png --out {O}/d", 2),
    Case("derain-onnx-is-a-folder", "derain --backend onnx:{C}/onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-coreml-not-a-package", "derain --backend coreml:{C}/onnx/model.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-trt-without-tensorrt", "derain --backend trt:{C}/onnx/model.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-openvino-garbage", "derain --backend openvino:{C}/onnx/garbage.onnx {C}/img/good.png --out {O}/d", 2),
    Case("derain-torch-pickle", TORCH.replace("{name}", "pickle.safetensors"), 2),
    Case("derain-torch-garbage", TORCH.replace("{name}", "garbage.safetensors"), 2),
    Case("derain-torch-wrong-shapes", TORCH.replace("{name}", "wrong_shapes.safetensors"), 2),
    Case("derain-torch-other-architecture", TORCH.replace("{name}", "other_arch.safetensors"), 2),
    Case("derain-torch-bad-config", TORCH.replace("{name}", "bad_config.safetensors"), 2),
    Case("derain-torch-nan-weights", TORCH.replace("{name}", "nan.safetensors"), 2),
    Case("derain-torch-lying-header", TORCH.replace("{name}", "lying_header.safetensors"), 2),
    Case("derain-whole-image-beyond-memory", DERAIN + " {C}/img/good.png --out {O}/d", 2, fault="little_memory",
         stderr_has="--tile"),
    Case("derain-tiles-fit-in-little-memory", DERAIN + " {C}/img/good.png --tile 16 --overlap 4 --out {O}/d", 0,
         fault="little_memory", writes="d/good.png"),
    Case("derain-read-only-out", DERAIN + " {C}/img/good.png --out {O}/ro/d", 2, fault="read_only"),
    Case("derain-disk-full", DERAIN + " {C}/img/good.png --out {O}/d", 2, fault="disk_full",
         stderr_has="free space"),
    Case("derain-disk-full-names-the-file", DERAIN + " {C}/img/good.png --out {O}/d", 2, fault="disk_full",
         stderr_has="good.png"),
    # -- calib -----------------------------------------------------------------------------------------------------
    Case("calib-build-bomb-png", "calib build --images {C}/bomb_dir --count 1 --size 8x8 --out {O}/c", 2),
    Case("calib-build-truncated-png", "calib build --images {C}/truncated_dir --count 1 --size 8x8 --out {O}/c", 2),
    Case("calib-build-text-named-png", "calib build --images {C}/textpng_dir --count 1 --size 8x8 --out {O}/c", 2),
    Case("calib-build-gray-and-rgba", "calib build --images {C}/mixed_modes --count 2 --size 8x8 --out {O}/c", 0,
         writes="c/manifest.json"),
    Case("calib-build-empty-folder", "calib build --images {C}/empty --count 1 --size 8x8 --out {O}/c", 2),
    Case("calib-build-missing-folder", "calib build --images {C}/nope --count 1 --size 8x8 --out {O}/c", 2),
    Case("calib-build-seed-negative", "calib build --images {C}/img --count 1 --size 8x8 --seed -1 --out {O}/c", 2),
    Case("calib-build-count-zero", "calib build --images {C}/img --count 0 --size 8x8 --out {O}/c", 2),
    Case("calib-build-count-too-many", "calib build --images {C}/img --count 5 --size 8x8 --out {O}/c", 2),
    Case("calib-build-size-zero", "calib build --images {C}/img --count 1 --size 0x0 --out {O}/c", 2),
    Case("calib-build-size-negative", "calib build --images {C}/img --count 1 --size=-5x5 --out {O}/c", 2),
    Case("calib-build-size-beyond-memory", "calib build --images {C}/img --count 2 --size 300000x300000 --out {O}/c", 2),
    Case("calib-build-size-text", "calib build --images {C}/img --count 1 --size abc --out {O}/c", 2),
    Case("calib-build-out-is-a-file", "calib build --images {C}/img --count 1 --size 8x8 --out {C}/text.txt", 2),
    Case("calib-build-out-holds-user-data", "calib build --images {C}/img --count 1 --size 8x8 --out {O}/mine", 2,
         prepare=_folder_with_a_file("mine")),
    Case("calib-verify-path-escapes", "calib verify {C}/sets/escape", 2),
    Case("calib-verify-absolute-path", "calib verify {C}/sets/absolute", 2),
    Case("calib-verify-symlink-out", "calib verify {C}/sets/symlink", 2),
    Case("calib-verify-bad-json", "calib verify {C}/sets/bad_json", 2),
    Case("calib-verify-manifest-is-a-list", "calib verify {C}/sets/list_json", 2),
    Case("calib-verify-hash-mismatch", "calib verify {C}/sets/tampered", 1),
    Case("calib-verify-not-a-set", "calib verify {C}/sets/not_a_set", 2),
    Case("calib-verify-missing", "calib verify {C}/sets/nope", 2),
    Case("calib-info-bad-json", "calib info {C}/sets/bad_json", 2),
    Case("calib-info-path-escapes", "calib info {C}/sets/escape", 2),
    Case("calib-no-action", "calib", 2),
    # -- export onnx -----------------------------------------------------------------------------------------------
    Case("export-onnx-opset-3", ONNX + " --opset 3", 2),
    Case("export-onnx-opset-99", ONNX + " --opset 99", 2),
    Case("export-onnx-opset-text", ONNX + " --opset seventeen", 2),
    Case("export-onnx-weights-pickle", "export onnx --weights {C}/weights/pickle.safetensors --out {O}/m.onnx", 2),
    Case("export-onnx-weights-missing", "export onnx --weights {C}/weights/nope.safetensors --out {O}/m.onnx", 2),
    Case("export-onnx-weights-other-architecture",
         "export onnx --weights {C}/weights/other_arch.safetensors --out {O}/m.onnx", 2),
    Case("export-onnx-weights-are-onnx", "export onnx --weights {C}/onnx/model.onnx --out {O}/m.onnx", 2),
    Case("export-onnx-precision-unknown", ONNX + " --precision int4", 2),
    Case("export-onnx-int8-without-calib", ONNX + " --precision int8", 2),
    Case("export-onnx-fp16-with-calib", ONNX + " --precision fp16 --calib {C}/sets/good", 2),
    Case("export-onnx-int8-calib-path-escapes", INT8.replace("{set}", "escape"), 2),
    Case("export-onnx-int8-calib-absolute-path", INT8.replace("{set}", "absolute"), 2),
    Case("export-onnx-int8-calib-symlink-out", INT8.replace("{set}", "symlink"), 2),
    Case("export-onnx-int8-calib-tampered", INT8.replace("{set}", "tampered"), 2),
    Case("export-onnx-int8-calib-not-a-set", INT8.replace("{set}", "not_a_set"), 2),
    Case("export-onnx-int8-max-drop-nan", INT8.replace("{set}", "good") + " --max-task-drop nan", 2),
    Case("export-onnx-int8-max-worst-drop-nan", INT8.replace("{set}", "good") + " --max-worst-task-drop nan", 2),
    Case("export-onnx-int8-paired-sizes-differ",
         INT8.replace("{set}", "good") + " --paired-images {C}/paired_sizes", 2),
    Case("export-onnx-out-parent-is-a-file",
         "export onnx --weights {C}/weights/w.safetensors --out {C}/text.txt/m.onnx", 2),
    Case("export-onnx-out-is-a-folder", "export onnx --weights {C}/weights/w.safetensors --out {O}/m.onnx", 2,
         prepare=_folder_with_a_file("m.onnx")),
    # -- export coreml / trt ----------------------------------------------------------------------------------------
    Case("export-coreml-precision-unknown", COREML + " --precision int4", 2),
    Case("export-coreml-min-size-zero", COREML + " --min-size 0x0", 2),
    Case("export-coreml-min-above-max", COREML + " --min-size 512x512 --max-size 64x64", 2),
    Case("export-coreml-w8a8-without-calib", COREML + " --precision w8a8", 2),
    Case("export-coreml-w8a8-calib-path-escapes", COREML + " --precision w8a8 --calib {C}/sets/escape", 2),
    Case("export-coreml-weights-garbage",
         "export coreml --weights {C}/weights/garbage.safetensors --out {O}/m.mlpackage", 2),
    Case("export-trt-onnx-garbage", "export trt --onnx {C}/onnx/garbage.onnx --precision fp16 --out {O}/m.engine", 2),
    Case("export-trt-onnx-missing", "export trt --onnx {C}/onnx/nope.onnx --precision fp16 --out {O}/m.engine", 2),
    Case("export-trt-one-channel-shape", TRT + " --min-shape 1x1x32x32", 2),
    Case("export-trt-min-above-max", TRT + " --min-shape 1x3x2000x2000", 2),
    Case("export-trt-int8-calib-path-escapes",
         "export trt --onnx {C}/onnx/model.onnx --precision int8 --calib {C}/sets/escape --out {O}/m.engine", 2),
    Case("export-trt-without-tensorrt", TRT, 2),
    # -- parity ----------------------------------------------------------------------------------------------------
    Case("parity-min-psnr-nan", PARITY_REF + " --min-psnr nan", 2),
    Case("parity-max-task-drop-inf", PARITY_REF + " --max-task-drop inf", 2),
    Case("parity-max-worst-task-drop-nan", PARITY_REF + " --max-worst-task-drop nan", 2),
    Case("parity-images-is-a-file",
         "parity --ref onnx:{C}/onnx/model.onnx --cand onnx:{C}/onnx/model.onnx --images {C}/img/good.png", 2),
    Case("parity-empty-folder",
         "parity --ref onnx:{C}/onnx/model.onnx --cand onnx:{C}/onnx/model.onnx --images {C}/empty", 2),
    Case("parity-bomb-png",
         "parity --ref onnx:{C}/onnx/model.onnx --cand onnx:{C}/onnx/model.onnx --images {C}/bomb_dir", 2),
    Case("parity-paired-names-differ",
         "parity --ref onnx:{C}/onnx/model.onnx --cand onnx:{C}/onnx/model.onnx --images {C}/paired_names", 2),
    Case("parity-paired-sizes-differ",
         "parity --ref onnx:{C}/onnx/model.onnx --cand onnx:{C}/onnx/model.onnx --images {C}/paired_sizes", 2),
    Case("parity-cand-one-channel", PARITY + " --cand onnx:{C}/onnx/one_channel.onnx", 2),
    Case("parity-cand-garbage", PARITY + " --cand onnx:{C}/onnx/garbage.onnx", 2),
    Case("parity-cand-output-shape", PARITY + " --cand onnx:{C}/onnx/shape.onnx", 2),
    Case("parity-cand-outputs-nan-fails-gate", PARITY + " --cand onnx:{C}/onnx/nan.onnx", 1),
    Case("parity-threads-negative", PARITY_REF + " --threads -1", 2),
    Case("parity-json-is-a-folder", PARITY_REF + " --json {O}/p.json", 2, prepare=_folder_with_a_file("p.json")),
    Case("parity-bit-exact-candidate-json", PARITY_REF + " --json {O}/p.json", 0, writes="p.json"),
    # -- diff ------------------------------------------------------------------------------------------------------
    Case("diff-min-layer-psnr-nan", DIFF_REF + " --min-layer-psnr nan", 2),
    Case("diff-crop-zero", DIFF_REF + " --crop 0x8", 2),
    Case("diff-cand-without-images", "diff --ref onnx:{C}/onnx/model.onnx --cand onnx:{C}/onnx/model.onnx", 2),
    Case("diff-cand-layers-not-layers", "diff --ref onnx:{C}/onnx/model.onnx --cand-layers {C}/text.txt", 2),
    Case("diff-cand-garbage", DIFF + " --cand onnx:{C}/onnx/garbage.onnx", 2),
    Case("diff-cand-output-shape", DIFF + " --cand onnx:{C}/onnx/shape.onnx", 2),
    Case("diff-cand-outputs-nan-fails-gate", DIFF + " --cand onnx:{C}/onnx/nan.onnx", 1),
    Case("diff-empty-folder", "diff --ref onnx:{C}/onnx/model.onnx --cand onnx:{C}/onnx/model.onnx --images {C}/empty",
         2),
    Case("diff-bit-exact-candidate-json", DIFF_REF + " --json {O}/d.json --arrays {O}/l.npz", 0, writes="l.npz"),
    # -- profile ---------------------------------------------------------------------------------------------------
    Case("profile-size-zero", PROFILE + " --size 0x0", 2),
    Case("profile-runs-zero", PROFILE + " --runs 0", 2),
    Case("profile-no-profiler", "profile torch:{C}/weights/w.safetensors --size 16x16", 2),
    Case("profile-garbage", "profile onnx:{C}/onnx/garbage.onnx --size 16x16", 2),
    Case("profile-json", PROFILE + " --json {O}/p.json", 0, writes="p.json"),
    # -- bench -----------------------------------------------------------------------------------------------------
    Case("bench-size-zero", BENCH + " --size 0x0", 2),
    Case("bench-size-negative", BENCH + " --size=-5x5", 2),
    Case("bench-size-negative-spaced", BENCH + " --size -5x5", 2),
    Case("bench-size-text", BENCH + " --size abc", 2),
    Case("bench-size-far-beyond-memory", BENCH + " --size 300000x300000", 2),
    Case("bench-iters-zero", BENCH + " --iters 0", 2),
    Case("bench-batch-zero", BENCH + " --batch 0", 2),
    Case("bench-warmup-negative", BENCH + " --warmup -1", 2),
    Case("bench-threads-negative", BENCH + " --threads -1", 2),
    Case("bench-threads-text", BENCH + " --threads abc", 2),
    Case("bench-one-channel-model", "bench --backend onnx:{C}/onnx/one_channel.onnx --size 16x16 --iters 1", 2),
    Case("bench-json-broken-symlink", BENCH + " --json {O}/b.json", 2, prepare=_broken_link("b.json")),
    Case("bench-disk-full-names-the-file", BENCH + " --json {O}/b.json", 2, fault="disk_full", stderr_has="b.json"),
    Case("bench-json-is-a-folder", BENCH + " --json {O}/b.json", 2, prepare=_folder_with_a_file("b.json")),
    Case("bench-disk-full", BENCH + " --json {O}/b.json", 2, fault="disk_full",
         stderr_has="free space"),
    Case("bench-read-only-json", BENCH + " --json {O}/ro/b.json", 2, fault="read_only"),
    # -- sweep -----------------------------------------------------------------------------------------------------
    Case("sweep-sizes-empty", SWEEP + " --sizes ,", 2),
    Case("sweep-sizes-text", SWEEP + " --sizes 16x16,big", 2),
    Case("sweep-size-far-beyond-memory", SWEEP + " --sizes 16x16,300000x300000", 2),
    Case("sweep-iters-zero", SWEEP + " --iters 0", 2),
    Case("sweep-threads-zero", SWEEP + " --threads 0", 2),
    Case("sweep-images-empty", SWEEP + " --images {C}/empty", 2),
    Case("sweep-same-backend-twice", SWEEP + " --backend onnx:{C}/onnx/model.onnx", 2),
    Case("sweep-without-json", "sweep --backend onnx:{C}/onnx/model.onnx --sizes 16x16", 2),
    # -- evaluate --------------------------------------------------------------------------------------------------
    Case("evaluate-paired-names-differ", EVALUATE + " --data {C}/paired_names", 2),
    Case("evaluate-paired-sizes-differ", EVALUATE + " --data {C}/paired_sizes", 2),
    Case("evaluate-not-paired", EVALUATE + " --data {C}/img", 2),
    Case("evaluate-threads-negative", EVALUATE + " --data {C}/paired --threads -1", 2),
    Case("evaluate-onnx-garbage", "evaluate --backend onnx:{C}/onnx/garbage.onnx --data {C}/paired", 2),
    Case("evaluate-onnx-outputs-nan", "evaluate --backend onnx:{C}/onnx/nan.onnx --data {C}/paired", 2),
    # -- report ----------------------------------------------------------------------------------------------------
    Case("report-not-a-result", "report {C}/results/not_result.json --out {O}/r", 2),
    Case("report-json-list", "report {C}/results/list.json --out {O}/r", 2),
    Case("report-invalid-json", "report {C}/results/invalid.json --out {O}/r", 2),
    Case("report-json-with-nan", "report {C}/results/nan.json --out {O}/r", 2),
    Case("report-out-is-a-file", "report {C}/results/sweep.json --out {C}/text.txt", 2),
    Case("report-md-is-a-folder", "report {C}/results/sweep.json --out {O}/r", 2, prepare=_folder_with_a_file("r/report.md")),
    Case("report-missing-file", "report {C}/results/nope.json --out {O}/r", 2),
    Case("report-without-out", "report {C}/results/not_result.json", 2),
    Case("report-verify-invalid-json", "report --verify {C}/results/invalid.json", 2),
    # -- train -----------------------------------------------------------------------------------------------------
    Case("train-config-missing", "train --config {C}/nope.yaml --out {O}/run", 2),
    Case("train-config-bad-yaml", "train --config {C}/bad.yaml --out {O}/run", 2),
    Case("train-config-unknown-key", "train --config {C}/tiny.yaml --set optim.bogus=1 --out {O}/run", 2),
    Case("train-config-without-out", "train --config {C}/tiny.yaml", 2),
    Case("train-out-not-empty", "train --config {C}/tiny.yaml --out {C}/not_a_run", 2),
    Case("train-resume-not-a-run", "train --resume {C}/not_a_run", 2),
    Case("train-resume-missing", "train --resume {C}/nope", 2),
    Case("train-resume-changed-config", "train --resume {C}/run --set optim.steps=3", 2),
    Case("train-steps-negative", "train --config {C}/tiny.yaml --set optim.steps=-1 --out {O}/run", 2),
    Case("train-set-without-value", "train --config {C}/tiny.yaml --set optim.steps --out {O}/run", 2),
    Case("train-threads-negative", "train --config {C}/tiny.yaml --set speed.threads=-1 --out {O}/run", 2),
    Case("train-lr-nan", "train --config {C}/tiny.yaml --set optim.lr=nan --out {O}/run", 2),
    Case("train-lr-negative", "train --config {C}/tiny.yaml --set optim.lr=-1 --out {O}/run", 2),
    Case("train-batch-zero", "train --config {C}/tiny.yaml --set data.batch_size=0 --out {O}/run", 2),
    Case("train-patch-zero", "train --config {C}/tiny.yaml --set data.patch_size=0 --out {O}/run", 2),
    Case("train-blocks-zero", "train --config {C}/tiny.yaml --set model.blocks=0 --out {O}/run", 2),
    Case("train-range-text", "train --config {C}/tiny.yaml --set data.val_range=zzz --out {O}/run", 2),
    Case("train-chunk-zero", "train --resume {C}/run --chunk 0", 2),
    Case("train-nothing-to-do", "train", 2),
    Case("train-resume-finished-run", "train --resume {O}/run --no-progress", 0, prepare=_copy_of_the_run),
    # -- benchmark ------------------------------------------------------------------------------------------------
    Case("benchmark-not-paired", "benchmark --images {C}/img --formats onnx --out {O}/b", 2),
    Case("benchmark-unknown-format", "benchmark --images {C}/paired --formats nope --out {O}/b", 2),
    Case("benchmark-threads-negative", "benchmark --images {C}/paired --formats onnx --threads -1 --out {O}/b", 2),
    Case("benchmark-size-zero", "benchmark --images {C}/paired --formats onnx --size 0x0 --out {O}/b", 2),
    Case("benchmark-paired-sizes-differ", "benchmark --images {C}/paired_sizes --formats onnx --out {O}/b", 2),
    Case("benchmark-calib-path-escapes",
         "benchmark --images {C}/paired --formats onnx --calib {C}/sets/escape --out {O}/b", 2),
    # -- pack -------------------------------------------------------------------------------------------------------------
    Case("pack-artifact-missing", "pack onnx:{C}/onnx/none.onnx --images {C}/paired --out {O}/b", 2),
    Case("pack-kind-without-a-bundle-runner", "pack torch:{C}/weights/w.safetensors --images {C}/paired --out {O}/b", 2),
    Case("pack-size-zero", "pack onnx:{C}/onnx/model.onnx --images {C}/paired --sizes 0x16 --out {O}/b", 2),
    Case("pack-images-bomb-png", "pack onnx:{C}/onnx/model.onnx --images {C}/bomb_dir --out {O}/b", 2),
    Case("pack-into-a-users-folder", "pack onnx:{C}/onnx/model.onnx --images {C}/paired --out {O}/b", 2,
         prepare=_folder_with_a_file("b")),
    # -- synth, qat, check ----------------------------------------------------------------------------------------------
    Case("synth-empty-folder", "synth --images {C}/empty --out {O}/p", 2),
    Case("synth-bomb-png", "synth --images {C}/bomb_dir --out {O}/p", 2),
    Case("synth-text-named-png", "synth --images {C}/textpng_dir --out {O}/p", 2),
    Case("qat-weights-garbage", "qat --weights {C}/weights/garbage.safetensors --data {C}/paired "
         "--calib {C}/sets/good --out {O}/q", 2),
    Case("qat-calib-path-escapes", "qat --weights {C}/weights/w.safetensors --data {C}/paired "
         "--calib {C}/sets/escape --out {O}/q", 2),
    Case("qat-threads-negative", "qat --weights {C}/weights/w.safetensors --data {C}/paired --calib {C}/sets/good "
         "--threads -1 --out {O}/q", 2),
    Case("qat-steps-zero", "qat --weights {C}/weights/w.safetensors --data {C}/paired --calib {C}/sets/good "
         "--steps 0 --out {O}/q", 2),
    Case("blend-ok", BLEND + " --alpha 0.3 --out {O}/b.safetensors", 0, writes="b.safetensors"),
    Case("blend-alpha-above-one", BLEND + " --alpha 1.5 --out {O}/b.safetensors", 2),
    Case("blend-alpha-nan", BLEND + " --alpha nan --out {O}/b.safetensors", 2),
    Case("blend-alpha-text", BLEND + " --alpha half --out {O}/b.safetensors", 2),
    Case("blend-tuned-pickle", "blend --base {C}/weights/w.safetensors --tuned {C}/weights/pickle.safetensors "
         "--alpha 0.5 --out {O}/b.safetensors", 2),
    Case("blend-tuned-nan", "blend --base {C}/weights/w.safetensors --tuned {C}/weights/nan.safetensors "
         "--alpha 0.5 --out {O}/b.safetensors", 2),
    Case("blend-other-architecture", "blend --base {C}/weights/w.safetensors --tuned {C}/weights/small.safetensors "
         "--alpha 0.5 --out {O}/b.safetensors", 2, stderr_has="different models"),
    Case("blend-out-is-an-input", BLEND + " --alpha 0.5 --out {C}/weights/w.safetensors", 2,
         stderr_has="never overwritten"),
    Case("blend-out-is-a-folder", BLEND + " --alpha 0.5 --out {O}/b.safetensors", 2,
         prepare=_folder_with_a_file("b.safetensors")),
    Case("check-onnx-garbage", "check --target tensorrt {C}/onnx/garbage.onnx", 2),
    Case("check-onnx-missing", "check --target tensorrt {C}/onnx/nope.onnx", 2),
    # -- the command line itself -------------------------------------------------------------------------------------
    Case("no-command", "", 2),
    Case("unknown-command", "frobnicate", 2),
    Case("info-unknown-option", "info --bogus", 2),
]


def tree_digest(root: Path) -> dict[str, str]:
    """Every path under root with its bytes' sha256 (folders as 'dir'), permissions ignored."""
    digest = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            digest[relative] = f"link to {os.readlink(path)}"
        else:
            digest[relative] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def _disk_full(monkeypatch, out: Path) -> None:
    """Every write of file bytes fails as on a full disk."""
    import pathlib

    from PIL import Image

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    for owner, name in ((pathlib.Path, "write_text"), (pathlib.Path, "write_bytes"), (Image.Image, "save")):
        monkeypatch.setattr(owner, name, full)


def _read_only(monkeypatch, out: Path) -> None:
    """The output's parent folder cannot be written (root ignores permission bits, so refuse it by hand too)."""
    folder = out / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    real_mkdtemp, real_mkdir = tempfile.mkdtemp, Path.mkdir

    def refuse(path) -> None:
        if Path(path).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    def mkdtemp(*args, **kwargs):
        refuse(kwargs.get("dir") or folder.parent)
        return real_mkdtemp(*args, **kwargs)

    def mkdir(self, *args, **kwargs):
        refuse(self)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)


def _little_memory(monkeypatch, out: Path) -> None:
    """A machine with 64 KiB free: a whole 24x32 image does not fit, 16x16 tiles do."""
    from treefuse.runtimes.applications import derain

    monkeypatch.setattr(derain, "available_memory_bytes", lambda: 2**16)


FAULTS = {"disk_full": _disk_full, "read_only": _read_only, "little_memory": _little_memory}


def run_main(argv: list[str]) -> int:
    """main(argv) as the shell sees it: SystemExit's code, or 3 for an exception that escaped."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    except Exception:  # the lead's exit-3 handler does this in main itself
        traceback.print_exc()
        return 3


def _params():
    for case in CASES:
        marks = [pytest.mark.xfail(reason=case.lead, strict=True)] if case.lead else []
        yield pytest.param(case, id=case.id, marks=marks)


def test_corpus_is_large_and_covers_every_command():
    from treefuse.cli import COMMANDS

    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    covered = {shlex.split(c.argv)[0] for c in CASES if c.argv} | {" ".join(shlex.split(c.argv)[:2]) for c in CASES
                                                                     if c.argv.startswith("export")}
    # A new command joins the corpus with its own bad inputs.
    assert set(COMMANDS) <= covered and {"export onnx", "export coreml", "export trt"} <= covered, \
        f"no bad-input case for {sorted(set(COMMANDS) - covered)}"


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input(case: Case, world: Path, tmp_path: Path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    if case.prepare:
        case.prepare(out, world)
    if case.fault:
        FAULTS[case.fault](monkeypatch, out)
    monkeypatch.chdir(tmp_path)  # relative debris would land here, where it is seen
    inputs_before, out_before = tree_digest(world), tree_digest(out)
    argv = shlex.split(case.argv.format(C=world, O=out))
    capsys.readouterr()
    code = run_main(argv)
    captured = capsys.readouterr()
    monkeypatch.undo()
    assert code == case.code, f"exit {code}, expected {case.code}; stderr:\n{captured.err}"
    lines = [line for line in captured.err.splitlines() if line.strip()]
    if case.code == 2:
        assert len(lines) == 1 and lines[0].startswith("treefuse: error: "), captured.err
    if case.stderr_has:
        assert case.stderr_has in captured.err
    if case.code != 0:
        assert tree_digest(out) == out_before, "a failing command wrote to its output"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "a failing command left debris"
    elif case.writes:
        assert (out / case.writes).is_file()
    assert tree_digest(world) == inputs_before, "an input changed"


def test_resume_of_a_finished_run_prints_strict_json(world: Path, tmp_path: Path, capsys):
    _copy_of_the_run(tmp_path, world)
    assert run_main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0

    def refuse(constant: str):
        raise AssertionError(f"{constant} in the JSON")

    summary = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert summary["step"] == summary["steps"] == 2 and summary["final_weights"]


def test_world_holds_what_the_cases_name(world: Path):
    # A case whose input silently went missing would pass for the wrong reason.
    for name in ("bad/bomb.png", "onnx/nan.onnx", "sets/escape/manifest.json", "x.npy", "run/final.safetensors"):
        assert (world / name).exists(), name
    assert not (world / "sets" / "escape" / "images.npy").exists()
    os.stat(world / "ok" / "png16.png")


# In a real process, libraries also write to file descriptor 2 (ONNX Runtime's C++ log, Python
# warnings) where capsys cannot see them: a sample of the corpus runs as the shell runs it.
IN_A_REAL_PROCESS = ["derain-bomb-png", "derain-onnx-outputs-nan", "derain-onnx-one-channel", "parity-cand-garbage",
                     "calib-verify-path-escapes"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in IN_A_REAL_PROCESS], ids=lambda c: c.id)
def test_bad_input_in_a_real_process(case: Case, world: Path, tmp_path: Path):
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    argv = shlex.split(case.argv.format(C=world, O=out))
    result = subprocess.run([sys.executable, "-m", "treefuse", *argv], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == case.code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("treefuse: error: "), result.stderr
    assert not any(out.iterdir())

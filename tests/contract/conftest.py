"""The bad-input corpus's world: small good and bad files, built once per session, that no case may change."""
from __future__ import annotations

import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000, bit_depth: int = 8) -> bytes:
    """A few hundred bytes whose header declares a gigapixel image (a decompression bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def _rgb(rng: np.random.Generator, height: int = 24, width: int = 32) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _images(root: Path, rng: np.random.Generator) -> None:
    (root / "img").mkdir()
    for name in ("good.png", "good2.png"):
        Image.fromarray(_rgb(rng)).save(root / "img" / name)
    good = (root / "img" / "good.png").read_bytes()
    bad = root / "bad"
    bad.mkdir()
    (bad / "bomb.png").write_bytes(bomb_png())
    (bad / "bomb16.png").write_bytes(bomb_png(bit_depth=16))
    (bad / "truncated.png").write_bytes(good[: len(good) // 2])
    (bad / "text.png").write_text("this is not a picture\n")
    (bad / "empty.png").write_bytes(b"")
    (bad / "two\nlines.png").write_text("a name that would split an error message in two\n")
    (bad / "notvideo.mp4").write_text("not a video either\n")
    ok = root / "ok"
    ok.mkdir()
    import png

    wide = rng.integers(0, 65536, (24, 32 * 3), dtype=np.uint16)
    with open(ok / "png16.png", "wb") as handle:
        png.Writer(32, 24, greyscale=False, bitdepth=16).write(handle, wide)
    Image.fromarray(_rgb(rng)[:, :, 0], mode="L").save(ok / "gray.png")
    Image.fromarray(np.dstack([_rgb(rng), np.full((24, 32), 128, np.uint8)]), mode="RGBA").save(ok / "rgba.png")
    (root / "text.txt").write_text("hello\n")
    (root / "empty").mkdir()
    for folder, source in (("bomb_dir", bad / "bomb.png"), ("truncated_dir", bad / "truncated.png"),
                           ("textpng_dir", bad / "text.png")):
        (root / folder).mkdir()
        shutil.copy(source, root / folder / source.name)
    Image.fromarray(rng.random((24, 32), dtype=np.float32), mode="F").save(bad / "float.tif")
    (root / "mixed_modes").mkdir()
    shutil.copy(ok / "gray.png", root / "mixed_modes")
    shutil.copy(ok / "rgba.png", root / "mixed_modes")


def _paired(root: Path, rng: np.random.Generator) -> None:
    for name, rain_name, clean_name, clean_hw in (("paired", None, None, (24, 32)),
                                                  ("paired_names", "a.png", "b.png", (24, 32)),
                                                  ("paired_sizes", None, None, (20, 30))):
        for index in range(1, 3):
            (root / name / "rain").mkdir(parents=True, exist_ok=True)
            (root / name / "clean").mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb(rng)).save(root / name / "rain" / (rain_name or f"{index:03d}.png"))
            Image.fromarray(_rgb(rng, *clean_hw)).save(root / name / "clean" / (clean_name or f"{index:03d}.png"))


def _onnx_model(path: Path, channels: int, body: str, dtype: int = 1, inputs_count: int = 1) -> None:
    """A one-node ONNX model over N x channels x H x W input(s): 'nan' (x * NaN), 'pool' (-> Nx3x1x1) or 'identity'."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(name, dtype, ["N", channels, "H", "W"])
              for name in ("input", "second")[:inputs_count]]
    initializers = []
    if body == "nan":
        initializers = [helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")])]
        node = helper.make_node("Mul", ["input", "nan"], ["output"])
    elif body == "pool":
        node = helper.make_node("GlobalAveragePool", ["input"], ["output"])
    else:
        node = helper.make_node("Identity", ["input"], ["output"])
    outputs = [helper.make_tensor_value_info("output", dtype, None)]
    graph = helper.make_graph([node], "bad", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _models(root: Path, weights: Path, onnx_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from treefuse.checkpoint import FORMAT

    (root / "weights").mkdir()
    shutil.copy(weights, root / "weights" / "w.safetensors")
    from treefuse.checkpoint import save_weights
    from treefuse.config import ModelConfig
    from treefuse.model import TreeFusionNet
    save_weights(TreeFusionNet(ModelConfig(channels=4, blocks=1)), root / "weights" / "small.safetensors", note="test")
    (root / "weights" / "pickle.safetensors").write_bytes(pickle.dumps({"head.weight": [1.0, 2.0]}))
    (root / "weights" / "garbage.safetensors").write_bytes(np.random.default_rng(1).bytes(4096))
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)},
              str(root / "weights" / "other_arch.safetensors"))
    from safetensors.torch import load_file

    from treefuse.config import ModelConfig

    state = load_file(str(weights))
    wrong = {name: torch.zeros(*tensor.shape[:-1], tensor.shape[-1] + 1) for name, tensor in state.items()}
    save_file(wrong, str(root / "weights" / "wrong_shapes.safetensors"),
              metadata={"format": FORMAT, "config": ModelConfig().to_json(), "provenance": "{}"})
    save_file(state, str(root / "weights" / "bad_config.safetensors"),
              metadata={"format": FORMAT, "config": json.dumps({"channels": 0, "blocks": "many"}), "provenance": "{}"})
    onnx_dir = root / "onnx"
    onnx_dir.mkdir()
    shutil.copy(onnx_path, onnx_dir / "model.onnx")
    _onnx_model(onnx_dir / "one_channel.onnx", 1, "identity")
    _onnx_model(onnx_dir / "nan.onnx", 3, "nan")
    _onnx_model(onnx_dir / "shape.onnx", 3, "pool")
    _onnx_model(onnx_dir / "int64_input.onnx", 3, "identity", dtype=7)  # TensorProto.INT64
    _onnx_model(onnx_dir / "two_inputs.onnx", 3, "identity", inputs_count=2)
    (onnx_dir / "garbage.onnx").write_bytes(np.random.default_rng(2).bytes(2048))
    _external_data_escape(onnx_dir / "escape", root / "x_secret.bin")
    nan_state = {name: torch.full_like(tensor, float("nan")) for name, tensor in state.items()}
    save_file(nan_state, str(root / "weights" / "nan.safetensors"),
              metadata={"format": FORMAT, "config": ModelConfig().to_json(), "provenance": "{}"})
    # A header that claims 2**62 bytes of JSON: a reader that trusts it would allocate exabytes.
    (root / "weights" / "lying_header.safetensors").write_bytes(struct.pack("<Q", 1 << 62) + b"{}")


def _external_data_escape(folder: Path, secret: Path) -> None:
    """An ONNX model whose weight is 'external data' in a file outside its folder (../x_secret.bin)."""
    from onnx import TensorProto, helper

    folder.mkdir()
    secret.write_bytes(np.ones(3, np.float32).tobytes())
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 3, 1, 1], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", f"../../{secret.name}"), ("offset", "0"), ("length", "12")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Mul", ["input", "w"], ["output"])], "escape",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / "model.onnx").write_bytes(model.SerializeToString())


def _calibration_sets(root: Path) -> None:
    from treefuse.calib.build import build_calibration_set
    from treefuse.calib.store import MANIFEST, TENSOR_FILE, set_sha256

    sets = root / "sets"
    good = build_calibration_set(root / "img", sets / "good", 2, (16, 16), 0)

    def variant(name: str, edit) -> None:
        shutil.copytree(good, sets / name)
        manifest = json.loads((sets / name / MANIFEST).read_text())
        edit(sets / name, manifest)
        (sets / name / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))

    def escape(to: str):
        def edit(folder: Path, manifest: dict) -> None:
            # The tensors move outside the set, hashes kept consistent: only the path gives it away.
            shutil.move(str(folder / TENSOR_FILE), root / "x.npy") if not (root / "x.npy").exists() \
                else (folder / TENSOR_FILE).unlink()
            manifest["tensor"]["file"] = to.format(root=root)
            manifest["sha256"] = set_sha256(manifest, manifest["tensor"]["sha256"])
        return edit

    variant("escape", escape("../../x.npy"))
    variant("absolute", escape("{root}/x.npy"))

    def symlink_out(folder: Path, manifest: dict) -> None:
        (folder / TENSOR_FILE).unlink()
        (folder / TENSOR_FILE).symlink_to(root / "x.npy")  # the manifest's name is fine; the file is elsewhere

    variant("symlink", symlink_out)

    def tamper(folder: Path, manifest: dict) -> None:
        images = np.load(folder / TENSOR_FILE)
        images[0, 0, 0, 0] = 1.0 - images[0, 0, 0, 0]
        np.save(folder / TENSOR_FILE, images)

    variant("tampered", tamper)
    shutil.copytree(good, sets / "bad_json")
    (sets / "bad_json" / MANIFEST).write_text("{ this is not json")
    shutil.copytree(good, sets / "list_json")
    (sets / "list_json" / MANIFEST).write_text("[1, 2, 3]\n")
    (sets / "not_a_set").mkdir()
    (sets / "not_a_set" / "notes.txt").write_text("holiday photos\n")


def _results(root: Path) -> None:
    results = root / "results"
    results.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "reports" / "previous" / "cpu-xeon-amx.json", results / "sweep.json")
    (results / "not_result.json").write_text(json.dumps({"hello": "world"}))
    (results / "list.json").write_text("[1, 2, 3]\n")
    (results / "invalid.json").write_text("{ not json")
    (results / "nan.json").write_text('{"kind": "treefuse-bench", "backends": NaN}')


def _training(root: Path) -> None:
    """A tiny config, its data and a finished 2-step run of it."""
    import torch
    import yaml

    from treefuse.train.session import start_session, train
    from treefuse.train.train_config import load_train_config

    rng = np.random.default_rng(3)
    data = root / "train_data"
    for index in range(1, 4):
        for sub in ("rain", "clean"):
            (data / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb(rng, 32, 32)).save(data / sub / f"{index:03d}.png")
    config = {
        "model": {"channels": 4, "blocks": 2},
        "data": {"train_dirs": [str(data)], "train_range": "001-002", "synthetic_fraction": 0.0,
                 "val_dir": str(data), "val_range": "003", "val_name": "tiny:003", "patch_size": 16, "batch_size": 2},
        "optim": {"steps": 2, "lr_milestones": [1, 2]},
        "speed": {"device": "cpu", "precision": "fp32", "threads": 1},
        "run": {"log_every": 1, "validate_every": 2, "checkpoint_every": 2, "keep_checkpoints": 1},
    }
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    (root / "bad.yaml").write_text("model: [unclosed\n")
    threads = torch.get_num_threads()
    try:
        train(start_session(load_train_config(str(root / "tiny.yaml"), []), root / "run"), progress=False)
    finally:
        torch.set_num_threads(threads)
    (root / "not_a_run").mkdir()
    (root / "not_a_run" / "notes.txt").write_text("not a run\n")


@pytest.fixture(scope="session")
def world(tmp_path_factory, weights_path, onnx_path) -> Path:
    """Every input the corpus feeds the commands; cases must leave it byte for byte as it is."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    _images(root, rng)
    _paired(root, rng)
    _models(root, weights_path, onnx_path)
    _calibration_sets(root)
    _results(root)
    _training(root)
    return root

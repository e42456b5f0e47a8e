"""Image, video and model makers shared by tests of several stages."""
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

FRAMES, RATE = 6, Fraction(12, 1)


def write_images(folder, count, size_hw=(40, 56), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(*size_hw, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


def make_video(path, with_audio=True):
    """A 32x48 H.264 clip of FRAMES frames at RATE fps, with a half-second AAC tone."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = 48, 32, "yuv420p"
        audio = container.add_stream("aac", rate=8000) if with_audio else None
        for index in range(FRAMES):
            pixels = np.full((32, 48, 3), 40 * index, dtype=np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(video.encode(None))
        if audio is not None:
            tone = (0.3 * np.sin(np.arange(4000) / 8000 * 2 * np.pi * 440)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            frame.sample_rate, frame.pts = 8000, 0
            for chunk in [audio.encode(frame), audio.encode(None)]:
                container.mux(chunk)
    return path


def fixed_size_onnx(path: Path) -> Path:
    """A valid ONNX model that fails at inference on any input but 1x3x7x7 (a Reshape to a fixed size)."""
    import onnx
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 3, 7, 7])
    graph = helper.make_graph([helper.make_node("Reshape", ["input", "shape"], ["output"])], "fixed",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path

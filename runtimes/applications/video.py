"""Video in, video out (PyAV): frames derained one by one, frame rate and timestamps kept, audio copied untouched."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from treefuse.errors import TreefuseError, one_line
from treefuse.optional import import_optional
from treefuse.files import atomic_path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
_ENCODERS = {".webm": "libvpx-vp9", ".avi": "mpeg4"}  # everything else: H.264


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _import_av() -> Any:
    return import_optional("av", "video support (PyAV)", "video")



def check_video(path: Path) -> None:
    """Refuse a missing, corrupt or video-less file before anything is written (decodes the first frame)."""
    av = _import_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise TreefuseError(f"{path} has no video stream")
            next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration, UnicodeDecodeError) as exc:
        raise TreefuseError(f"{path} is not a readable video ({one_line(exc)})") from None


def derain_video(derain_frame: Callable[[np.ndarray], np.ndarray], source: Path, target: Path,
                 progress: bool = False) -> int:
    """Write `target` with every frame of `source` derained (HxWx3 float in, float out); returns the frame count."""
    av = _import_av()
    check_video(source)
    try:
        with av.open(str(source)) as reader, atomic_path(target) as staged:
            with av.open(str(staged), "w") as writer:
                return _transcode(av, reader, writer, derain_frame, progress)
    except av.error.FFmpegError as exc:
        raise TreefuseError(f"{source}: video decoding or encoding failed ({one_line(exc)}); nothing was written") from None


def _transcode(av: Any, reader: Any, writer: Any, derain_frame: Callable[[np.ndarray], np.ndarray],
               progress: bool) -> int:
    video_in = reader.streams.video[0]
    rate = video_in.average_rate or video_in.guessed_rate or 25
    video_out = writer.add_stream(_ENCODERS.get(Path(writer.name).suffix.lower(), "libx264"), rate=rate)
    video_out.width, video_out.height = video_in.codec_context.width, video_in.codec_context.height
    video_out.pix_fmt = "yuv420p"
    video_out.time_base = video_in.time_base
    audio_pairs = {a.index: writer.add_stream_from_template(a) for a in reader.streams.audio}
    frames = 0
    bar = _progress_bar(video_in, progress)
    for packet in reader.demux(video_in, *reader.streams.audio):
        if packet.stream.index in audio_pairs:
            if packet.dts is not None:  # the demuxer's final flush packet carries no data
                packet.stream = audio_pairs[packet.stream.index]
                writer.mux(packet)
            continue
        for frame in packet.decode():
            writer.mux(video_out.encode(_derained_frame(av, frame, derain_frame)))
            frames += 1
            bar.update(1)
    writer.mux(video_out.encode(None))
    bar.close()
    return frames


def _derained_frame(av: Any, frame: Any, derain_frame: Callable[[np.ndarray], np.ndarray]) -> Any:
    rgb = frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0
    pixels = (np.clip(derain_frame(rgb), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    out = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def _progress_bar(stream: Any, enabled: bool) -> Any:
    from treefuse.progress import progress_bar

    return progress_bar(None, enabled, total=stream.frames or None, desc="derain video", unit="frame")

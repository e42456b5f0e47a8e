"""Video derain: every frame processed, frame rate and audio kept; a corrupt video is one line, exit 2, nothing written."""

import pytest

from treefuse.cli import main

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'treefuse[video]')")

from media import FRAMES, RATE, make_video




def describe(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        container.seek(0)
        audio_packets = sum(1 for p in container.demux(audio=0) if p.dts is not None) if container.streams.audio else 0
        return {"frames": frames, "rate": video.average_rate, "size": (video.height, video.width),
                "audio_packets": audio_packets}


def test_video_frames_rate_and_audio_are_kept(tmp_path, weights_path):
    source = make_video(tmp_path / "clip.mp4")
    assert main(["derain", "--backend", f"torch:{weights_path}", str(source), "--out", str(tmp_path / "out")]) == 0
    before, after = describe(source), describe(tmp_path / "out" / "clip.mp4")
    assert after["frames"] == before["frames"] == FRAMES
    assert after["rate"] == before["rate"] == RATE and after["size"] == (32, 48)
    assert after["audio_packets"] == before["audio_packets"] > 0


def test_video_without_audio_and_tiled(tmp_path, weights_path):
    source = make_video(tmp_path / "silent.mkv", with_audio=False)
    assert main(["derain", "--backend", f"torch:{weights_path}", str(source), "--out", str(tmp_path / "out"),
                 "--tile", "24", "--overlap", "8"]) == 0
    assert describe(tmp_path / "out" / "silent.mkv")["frames"] == FRAMES


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50])
def test_corrupt_video_is_one_line_exit_2_and_nothing_written(tmp_path, weights_path, capsys, content):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(content)
    good = make_video(tmp_path / "good.mp4", with_audio=False)
    code = main(["derain", "--backend", f"torch:{weights_path}", str(good), str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "broken.mp4 is not a readable video" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()

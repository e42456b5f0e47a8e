"""Derain keeps 16-bit depth, alpha and grayscale, applies EXIF orientation, and refuses what it cannot keep."""
import numpy as np
import pytest
from PIL import Image

from treefuse.cli import main
from treefuse.errors import TreefuseError
from treefuse.runtimes.applications.picture import Picture, _apply_orientation, read_picture, write_picture

png = pytest.importorskip("png", reason="pypng is not installed (a core dependency: pip install pypng)")


def write_png16(path, pixels, greyscale=False, alpha=False):
    height, width = pixels.shape[:2]
    writer = png.Writer(width, height, greyscale=greyscale, alpha=alpha, bitdepth=16)
    with open(path, "wb") as handle:
        writer.write(handle, pixels.reshape(height, -1))


def test_16bit_rgb_round_trips_without_losing_bits(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    write_png16(tmp_path / "in.png", pixels)
    picture = read_picture(tmp_path / "in.png")
    assert picture.bit_depth == 16 and not picture.grayscale and picture.alpha is None
    assert np.array_equal(np.round(picture.rgb * 65535).astype(np.uint16), pixels)  # not 8-bit truncated
    write_picture(tmp_path / "out.png", picture.rgb, like=picture)
    _, _, rows, info = png.Reader(filename=str(tmp_path / "out.png")).asDirect()
    assert info["bitdepth"] == 16 and np.array_equal(np.vstack(list(rows)).reshape(20, 30, 3), pixels)


def test_derain_cli_keeps_16bit_gray_alpha_and_rgba(tmp_path, weights_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "in"
    folder.mkdir()
    write_png16(folder / "deep.png", rng.integers(0, 65536, size=(24, 32, 3), dtype=np.uint16))
    Image.fromarray(rng.integers(0, 256, size=(24, 32), dtype=np.uint8), "L").save(folder / "gray.png")
    rgba = rng.integers(0, 256, size=(24, 32, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    assert main(["derain", "--backend", f"torch:{weights_path}", str(folder), "--out", str(tmp_path / "out")]) == 0
    _, _, rows, info = png.Reader(filename=str(tmp_path / "out" / "deep.png")).asDirect()
    deep = np.vstack(list(rows))
    assert info["bitdepth"] == 16 and info["planes"] == 3 and len(np.unique(deep % 257)) > 1  # real 16-bit values
    assert Image.open(tmp_path / "out" / "gray.png").mode == "L"
    out_rgba = Image.open(tmp_path / "out" / "rgba.png")
    assert out_rgba.mode == "RGBA" and np.array_equal(np.asarray(out_rgba)[:, :, 3], rgba[:, :, 3])


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :5] = 255  # a white left band on a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    picture = read_picture(tmp_path / "rot.jpg")
    assert picture.rgb.shape == (20, 10, 3) and picture.rgb[:5].mean() > 0.9  # the band is now on top


@pytest.mark.parametrize("orientation", range(1, 9))
def test_numpy_orientation_matches_pillow(orientation):
    from PIL import ImageOps

    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    assert np.array_equal(_apply_orientation(pixels, orientation), expected)


def test_alpha_into_jpeg_and_16bit_into_jpeg_are_refused(tmp_path):
    rgb = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(TreefuseError, match="alpha"):
        write_picture(tmp_path / "a.jpg", rgb, Picture(rgb, np.ones((4, 4), np.float32), 8, False))
    with pytest.raises(TreefuseError, match="16-bit"):
        write_picture(tmp_path / "b.jpg", rgb, Picture(rgb, None, 16, False))
    assert not list(tmp_path.iterdir())

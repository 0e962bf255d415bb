import io
import pickle
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvtasks.data import images as images_module
from cvtasks.data.images import (
    ORIENTATION_TAG,
    BadImageError,
    ImageScaleWarning,
    file_kind,
    file_problem,
    is_image_file,
    lossy_format,
    open_image,
    orientation_note,
    read_image,
    read_image_size,
)
from tests.data.conftest import deadline, make_fifo


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
def test_any_mode_reads_as_rgb_uint8(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "x.png"
    Image.new(mode, (7, 4)).save(path)
    image = read_image(path)
    assert image.shape == (4, 7, 3)
    assert image.dtype == np.uint8
    assert image.flags.writeable


def test_pixels_round_trip(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), pixels)


def _truncated_png(path: Path) -> Path:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.mark.parametrize(
    "write",
    [
        lambda p: p.write_bytes(b"this is not an image"),
        _truncated_png,
        lambda p: p.write_bytes(b""),
        lambda p: None,  # missing file
    ],
    ids=["garbage", "truncated", "empty", "missing"],
)
def test_undecodable_files_raise_bad_image_error(tmp_path: Path, write) -> None:
    path = tmp_path / "x.png"
    write(path)
    with pytest.raises(BadImageError) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert info.value.reason


def test_bad_image_error_types_and_pickling() -> None:
    err = BadImageError("/data/a.png", "truncated")
    assert isinstance(err, OSError)
    assert isinstance(err, ValueError)
    assert str(err) == "cannot read image /data/a.png: truncated"
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is BadImageError
    assert (str(again), again.path, again.reason) == (str(err), "/data/a.png", "truncated")
    # DataLoader workers re-raise with the message alone
    assert str(BadImageError("whole message")) == "whole message"


def test_is_image_file() -> None:
    assert is_image_file("a/b.PNG")
    assert is_image_file("b.jpeg")
    assert not is_image_file("notes.txt")
    assert not is_image_file(".hidden.png")


# -- decoding rules: each kind of file against numpy arithmetic on the values written ----------
RAMP16 = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)


def _expected_gray(values: np.ndarray) -> np.ndarray:
    gray = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _png16(path: Path, values: np.ndarray, color_type: int) -> Path:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour)."""
    height, width = values.shape[:2]
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("kind", ["png I;16", "tiff I;16B", "tiff I", "pgm I"])
def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path, kind: str) -> None:
    fmt, mode = kind.split()
    path = tmp_path / f"ramp.{fmt}"
    if mode == "I;16B":
        Image.frombytes(mode, (8, 8), RAMP16.astype(">u2").tobytes()).save(path)
    elif fmt == "pgm":  # maxval 65535: Pillow reads it as mode I
        path.write_bytes(b"P5 8 8 65535\n" + RAMP16.astype(">u2").tobytes())
    else:
        Image.fromarray(RAMP16.astype(np.int32) if mode == "I" else RAMP16).save(path)
    assert Image.open(path).mode == mode
    image = read_image(path)
    np.testing.assert_array_equal(image, _expected_gray(RAMP16))
    assert (image == 255).mean() < 0.05  # clipping made almost every pixel 255


def test_sixteen_bit_colour_png_is_within_one_level(tmp_path: Path) -> None:
    values = np.random.default_rng(0).integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    image = read_image(_png16(tmp_path / "rgb16.png", values, color_type=2))
    assert image.shape == (5, 7, 3)
    assert np.abs(image - values.astype(np.float64) * 255 / 65535).max() < 1.0


def test_float_tiff_in_unit_range_is_scaled_by_255(tmp_path: Path) -> None:
    values = np.random.default_rng(1).random((6, 5)).astype(np.float32)
    values[0, 0], values[0, 1] = 0.0, 1.0
    Image.fromarray(values).save(tmp_path / "f.tiff")
    expected = np.round(values.astype(np.float64) * 255).astype(np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff")[..., 1], expected)


@pytest.mark.parametrize("mode", ["F", "I"])
def test_values_without_a_standard_scale_are_stretched_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(images_module, "_stretch_warned", False)
    values = np.array([[-2.0, 0.0, 3.5], [8.0, 100.0, 70000.0]])
    if mode == "F":
        values[0, 1] = np.nan
    array = values.astype(np.float32 if mode == "F" else np.int32)
    Image.fromarray(array).save(tmp_path / "a.tiff")
    Image.fromarray(array).save(tmp_path / "b.tiff")
    finite = values[np.isfinite(values)]
    expected = np.round((values - finite.min()) * 255 / (finite.max() - finite.min()))
    expected = np.nan_to_num(expected, nan=0.0).astype(np.uint8)
    with pytest.warns(ImageScaleWarning, match=r"a\.tiff.*-2\.\.70000.*stretched") as caught:
        np.testing.assert_array_equal(read_image(tmp_path / "a.tiff")[..., 0], expected)
        read_image(tmp_path / "b.tiff")
    assert len([w for w in caught if w.category is ImageScaleWarning]) == 1


def test_palette_images_with_and_without_transparency(tmp_path: Path) -> None:
    palette = np.random.default_rng(2).integers(0, 256, (256, 3)).astype(np.uint8)
    index = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    image = Image.fromarray(index, mode="L").convert("P")
    image.putpalette(palette.reshape(-1).tolist())
    image.save(tmp_path / "p.png")
    image.save(tmp_path / "t.png", transparency=2)
    image.save(tmp_path / "t.gif", transparency=2)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), palette[index])
    expected = palette[index].copy()
    expected[index == 2] = 255  # the transparent index shows the white page, not its colour
    np.testing.assert_array_equal(read_image(tmp_path / "t.png"), expected)
    np.testing.assert_array_equal(read_image(tmp_path / "t.gif"), expected)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_composited_over_white(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(3)
    bands = len(mode)
    values = rng.integers(0, 256, (4, 6, bands)).astype(np.uint8)
    values[0, 0, -1], values[0, 1, -1] = 0, 255
    Image.fromarray(values, mode=mode).save(tmp_path / "a.png")
    color = values[..., :3] if mode == "RGBA" else np.repeat(values[..., :1], 3, axis=2)
    alpha = values[..., -1:].astype(np.float64) / 255
    expected = np.round(color * alpha + 255 * (1 - alpha)).astype(np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), expected)


def test_cmyk_and_one_bit_images(tmp_path: Path) -> None:
    cmyk = np.random.default_rng(4).integers(0, 256, (3, 5, 4)).astype(np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.tiff")
    k = cmyk[..., 3:].astype(np.float64)
    expected = np.round((255 - cmyk[..., :3]) * (255 - k) / 255).astype(np.uint8)
    assert np.abs(read_image(tmp_path / "c.tiff").astype(int) - expected).max() <= 1
    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b.png")[..., 2], bits * 255)


# The displayed frame of each EXIF orientation, as numpy index arithmetic.
ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a[::-1].transpose(1, 0, 2),  # rotated 90° clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: a[:, ::-1].transpose(1, 0, 2),  # rotated 90° counter-clockwise
}


def _tagged(path: Path, pixels: np.ndarray, orientation: int, **kw) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(pixels).save(path, exif=exif, **kw)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, suffix: str) -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 13
    path = _tagged(tmp_path / f"x{suffix}", pixels, orientation)
    expected = ORIENTED[orientation](pixels)
    np.testing.assert_array_equal(read_image(path), expected)
    assert read_image_size(path) == expected.shape[:2]


def test_exif_rotated_jpeg_is_upright_and_its_header_size_agrees(tmp_path: Path) -> None:
    pixels = np.zeros((32, 48, 3), dtype=np.uint8)
    pixels[:16, :16] = (250, 10, 10)  # a red block in the top-left corner as stored
    path = _tagged(tmp_path / "photo.jpg", pixels, 6, quality=95)
    image = read_image(path)
    assert image.shape == (48, 32, 3) and read_image_size(path) == (48, 32)
    assert np.abs(image.astype(int) - ORIENTED[6](pixels)).mean() < 3
    assert image[:16, -16:, 0].mean() > 200  # rotated clockwise: now in the top-right corner
    assert "EXIF orientation tag (6: rotated 90° clockwise)" in orientation_note(path)
    assert orientation_note(_tagged(tmp_path / "plain.jpg", pixels, 1)) == ""


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "pipe.png")
    with deadline():
        for read in (read_image, read_image_size):
            with pytest.raises(BadImageError, match=r"pipe\.png.*FIFO \(named pipe\), not a reg"):
                read(fifo)
    assert file_problem(fifo) == "is a FIFO (named pipe), not a regular file"
    assert file_problem(tmp_path / "none.png") == "does not exist"
    (tmp_path / "d.png").mkdir()
    with pytest.raises(BadImageError, match="it is a folder"):
        read_image(tmp_path / "d.png")


def test_lossy_formats_are_told_apart(tmp_path: Path) -> None:
    pixels = np.zeros((8, 8), dtype=np.uint8)
    cases = {
        "a.jpg": ({}, "JPEG"),
        "a.png": ({}, None),
        "lossy.webp": ({"lossless": False}, "lossy WebP"),
        "lossless.webp": ({"lossless": True}, None),
        "j.tiff": ({"compression": "jpeg"}, "TIFF with JPEG compression"),
        "z.tiff": ({"compression": "tiff_deflate"}, None),
    }
    for name, (options, expected) in cases.items():
        Image.fromarray(pixels).save(tmp_path / name, **options)
        with open_image(tmp_path / name) as image:
            assert lossy_format(image, tmp_path / name) == expected, name


def test_every_image_the_model_sees_is_decoded_by_read_image() -> None:
    """Training, predict, evaluate and features share one decoder: nothing else opens files."""
    package = Path(images_module.__file__).resolve().parents[1]
    openers = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "images.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "Image.open(" in line or "cv2.imread(" in line
    ]
    assert openers == [], f"open images with cvtasks.data.images.read_image: {openers}"


def test_device_nodes_are_refused_by_kind() -> None:
    assert file_kind(stat.S_IFSOCK) == "socket" and file_kind(stat.S_IFBLK) == "block device"
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    with deadline(), pytest.raises(BadImageError, match="it is a character device"):
        read_image("/dev/zero")  # an endless stream: never handed to the decoder

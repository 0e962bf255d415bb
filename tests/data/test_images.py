import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvtasks.data.images import BadImageError, is_image_file, read_image


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

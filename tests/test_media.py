"""Image loading: the official source preparation, and one clear line for every kind of bad image."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from lpt.runtime.media import MediaError, is_image, is_video, load_image, media_kind

from tests.conftest import shared_file


def _write_png(path: Path, height: int, width: int) -> np.ndarray:
    """A smooth RGB gradient with a red left third, saved losslessly; the RGB array."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), np.full_like(x, 90)], -1)
    rgb = rgb.astype(np.uint8)
    rgb[:, : width // 3] = (250, 10, 10)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width`` x ``height`` but which carries almost no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_sample_portrait_loads_as_even_sized_rgb() -> None:
    image = load_image(shared_file("assets/source/s0.jpg"))
    bgr = cv2.imread(str(shared_file("assets/source/s0.jpg")), cv2.IMREAD_COLOR)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] % 2 == 0 and image.shape[1] % 2 == 0
    np.testing.assert_array_equal(image, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[: image.shape[0], : image.shape[1]])


def test_large_image_is_downscaled_to_1280_then_cropped_to_even(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    _write_png(path, 1001, 3000)
    image = load_image(path)
    # official resize_to_limit: width 1280, height int(1001 * 1280 / 3000) = 427, then cropped to 426
    assert image.shape == (426, 1280, 3)
    assert image[200, 100].tolist() == [250, 10, 10]  # RGB order: the red third stays red


def test_odd_image_is_cropped_not_resized(tmp_path: Path) -> None:
    path = tmp_path / "odd.png"
    rgb = _write_png(path, 75, 101)
    image = load_image(path)
    np.testing.assert_array_equal(image, rgb[:74, :100])


def _one_line_error(path: Path, **kwargs: int) -> str:
    with pytest.raises(MediaError) as info:
        load_image(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_bad_images_give_one_line_naming_the_file(tmp_path: Path) -> None:
    assert "does not exist" in _one_line_error(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty" in _one_line_error(tmp_path / "empty.jpg")
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    assert "not a JPEG" in _one_line_error(tmp_path / "noise.jpg")
    assert "not a file" in _one_line_error(tmp_path)
    _write_png(tmp_path / "tiny.png", 1, 1)
    assert "too small" in _one_line_error(tmp_path / "tiny.png")
    truncated = tmp_path / "cut.png"
    _write_png(truncated, 64, 64)
    truncated.write_bytes(truncated.read_bytes()[:60])
    assert "cannot be decoded" in _one_line_error(truncated)


def test_huge_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    started = time.perf_counter()
    for side in (100_000, 12_000):  # beyond Pillow's own bomb limit, and beyond only ours
        _png_header_only(path, side, side)
        assert "more than the 100,000,000 allowed" in _one_line_error(path)
    assert time.perf_counter() - started < 1.0  # decoding gigabytes of pixels would take far longer
    _png_header_only(path, 5000, 5000)
    assert "5000x5000" in _one_line_error(path, max_pixels=1_000_000)


def test_kind_is_told_by_content_not_name(tmp_path: Path) -> None:
    fake_video = tmp_path / "photo.mp4"
    fake_video.write_bytes(shared_file("assets/source/s6.jpg").read_bytes())
    fake_image = tmp_path / "clip.jpg"
    fake_image.write_bytes(shared_file("assets/driving/d18.mp4").read_bytes())
    assert is_image(fake_video) and not is_video(fake_video) and media_kind(fake_video) == "image"
    assert is_video(fake_image) and not is_image(fake_image) and media_kind(fake_image) == "video"
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(MediaError, match="neither an image nor a video"):
        media_kind(noise)

"""Reading user images safely: bounded size, checked before decoding, one clear line on any problem.

``load_image`` reproduces the official source preparation (``cv2`` decode, ``resize_to_limit`` with
``source_max_dim`` 1280 and ``source_division`` 2); a transparent image is composited over white, as a
viewer shows it. ``media_kind`` tells stills from frame sequences (videos, and animated GIF, WebP, PNG or
multi-page TIFF) by content, never by the file's name.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from lpt.errors import LptError

SOURCE_MAX_DIM = 1280  # official source_max_dim
SOURCE_DIVISION = 2  # official source_division: height and width are cropped to multiples of it
MIN_IMAGE_SIDE = 32  # smaller than this holds no face the detector could find
MAX_IMAGE_PIXELS = 100_000_000  # about a 10000x10000 photo; decoded it takes 300 MB
MAX_IMAGE_BYTES = 256 * 1024 * 1024

# The still formats the official code takes as images (.jpg .jpeg .png .gif .bmp .tiff .webp), as Pillow
# names them; MPO is the multi-picture JPEG many phones write.
IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "TIFF", "WEBP"})

# MPO's second picture is a phone's stereo or depth view of the same moment: a still, not an animation.
STILL_MULTI_FRAME_FORMATS = frozenset({"MPO"})
TRANSPARENT_BACKGROUND = (255, 255, 255)

_BEYOND_PILLOW = (-1, -1)  # a header so large that Pillow itself refuses it as a decompression bomb

MediaKind = Literal["image", "video"]


class MediaError(LptError):
    """An image or video file is missing, unreadable, empty, too small or too large."""


def check_input_file(path: Path, what: str) -> int:
    """The size of ``path``; ``MediaError`` unless it is an existing, non-empty regular file."""
    if not path.exists():
        raise MediaError(f"{what} {path} does not exist")
    if not path.is_file():
        raise MediaError(f"{what} {path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{what} {path} is empty (0 bytes)")
    return size


def _read_checked(path: Path, what: str, max_bytes: int) -> bytes:
    size = check_input_file(path, what)
    if size > max_bytes:
        raise MediaError(f"{what} {path} is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB allowed")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding its pixels."""

    width: int
    height: int
    frames: int  # more than one: an animation (or a multi-page file), read as a sequence of frames
    transparent: bool

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def is_sequence(self) -> bool:
        return self.frames > 1


_BOMB = ImageHeader(*_BEYOND_PILLOW, 1, False)


def _transparent(header: Image.Image) -> bool:
    return header.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in header.info


def read_header(source: Path | io.BytesIO) -> ImageHeader | None:
    """The header of an image in one of the formats the official code accepts, else None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(source) as header:
                if header.format not in IMAGE_FORMATS:
                    return None
                frames = 1 if header.format in STILL_MULTI_FRAME_FORMATS else int(getattr(header, "n_frames", 1))
                return ImageHeader(header.size[0], header.size[1], frames, _transparent(header))
        except Image.DecompressionBombError:
            return _BOMB
        except Exception:  # noqa: BLE001 - Pillow raises many types on malformed headers; all mean "not an image"
            return None


def composite(rgba: np.ndarray, background: tuple[int, int, int] = TRANSPARENT_BACKGROUND) -> np.ndarray:
    """(H, W, 3) uint8 RGB: an RGBA image over ``background``, as a viewer shows it."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    rgb = rgba[..., :3].astype(np.float32) * alpha + np.asarray(background, np.float32) * (1 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _decode_transparent(data: bytes) -> np.ndarray | None:
    """A transparent image composited over white; Pillow decodes it (cv2 would drop the alpha and keep
    whatever colour lies under it, often black)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return composite(np.asarray(image.convert("RGBA")))
    except Exception:  # noqa: BLE001 - a corrupt file: the caller's one line says so
        return None


def load_image(path: Path | str, max_side: int = SOURCE_MAX_DIM, *, division: int = SOURCE_DIVISION,
               min_side: int = MIN_IMAGE_SIDE, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image, prepared as the official source: the longer side at most ``max_side``
    (bilinear downscale), then height and width cropped to multiples of ``division``.

    The header's dimensions are checked against ``min_side`` and ``max_pixels`` before any pixel is decoded.
    """
    path = Path(path)
    data = _read_checked(path, "image", MAX_IMAGE_BYTES)
    header = check_header(path, read_header(io.BytesIO(data)), min_side=min_side, max_pixels=max_pixels)
    if header.transparent:
        rgb = _decode_transparent(data)
    else:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        rgb = None if bgr is None or bgr.ndim != 3 else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb is None:
        raise MediaError(f"image {path} cannot be decoded (corrupt or unsupported {header.width}x{header.height} image)")
    return resize_to_limit(rgb, max_side, division)


def check_header(path: Path, header: ImageHeader | None, *, min_side: int = MIN_IMAGE_SIDE,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> ImageHeader:
    """``header`` when its size is within bounds; ``MediaError`` naming ``path`` otherwise."""
    if header is None:
        raise MediaError(f"image {path} is not a JPEG, PNG, BMP, GIF, TIFF or WebP image (unknown or corrupt header)")
    if header == _BOMB:
        raise MediaError(f"image {path} declares more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels, "
                         f"more than the {max_pixels:,} allowed")
    if header.width * header.height > max_pixels:
        raise MediaError(f"image {path} declares {header.width}x{header.height} pixels, more than the {max_pixels:,} allowed")
    if min(header.width, header.height) < min_side:
        raise MediaError(f"image {path} is {header.width}x{header.height}: too small, each side must be at least "
                         f"{min_side} pixels")
    return header


def resize_to_limit(image: np.ndarray, max_side: int, division: int) -> np.ndarray:
    """The official ``resize_to_limit``: downscale so the longer side is ``max_side`` (the other side
    truncated to an int), then crop the bottom and right so both sides are multiples of ``division``."""
    height, width = image.shape[:2]
    if max_side > 0 and max(height, width) > max_side:
        if height > width:
            size = (int(width * (max_side / height)), max_side)
        else:
            size = (max_side, int(height * (max_side / width)))
        image = cv2.resize(image, size)
        height, width = image.shape[:2]
    division = max(division, 1)
    new_height, new_width = height - height % division, width - width % division
    if new_height == 0 or new_width == 0:
        return image
    return np.ascontiguousarray(image[:new_height, :new_width])


def file_header(path: Path | str) -> ImageHeader | None:
    """The image header of a regular file, None when it is no image (or no file)."""
    path = Path(path)
    return read_header(path) if path.is_file() else None


def is_image(path: Path | str) -> bool:
    """True when the file's content (not its name) starts with an image header Pillow recognises (a still
    or an animation)."""
    return file_header(path) is not None


def is_image_sequence(path: Path | str) -> bool:
    """True for an image file of several frames (an animated GIF, WebP or PNG, a multi-page TIFF)."""
    header = file_header(path)
    return header is not None and header.is_sequence


def is_transparent(path: Path | str) -> bool:
    """True for an image with an alpha channel or a transparent colour."""
    header = file_header(path)
    return header is not None and header.transparent


def _still_image_demuxer(format_names: str) -> bool:
    """FFmpeg's image2 and *_pipe demuxers take a file by its name or first bytes and decode nothing on
    opening: a "video" of one picture that Pillow already refused."""
    return any(name == "image2" or name.endswith("_pipe") for name in format_names.split(","))


def _video_probe(path: Path) -> tuple[int, str]:
    """(video streams FFmpeg finds by content, why the file is no video: "" when FFmpeg read the container)."""
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if _still_image_demuxer(container.format.name):
                return 0, "a corrupt or unsupported still image"
            return len(container.streams.video), ""
    except Exception as exc:  # noqa: BLE001 - FFmpeg's probing raises many types on arbitrary bytes; all mean "no video"
        return 0, "FFmpeg: " + (" ".join(str(getattr(exc, "strerror", None) or exc).split())[:120] or type(exc).__name__)


def is_video(path: Path | str) -> bool:
    """True for a sequence of frames: an image file of several, or a file FFmpeg opens by content and finds
    a video stream in that is not a still image."""
    if is_image(path):
        return is_image_sequence(path)
    return _video_probe(Path(path))[0] > 0


def media_kind(path: Path | str, what: str = "input") -> MediaKind:
    """``"image"`` (a still) or ``"video"`` (a video file, or an image file of several frames) by content;
    ``MediaError`` naming the file when it is neither."""
    path = Path(path)
    check_input_file(path, what)
    header = read_header(path)
    if header is not None:
        return "video" if header.is_sequence else "image"
    streams, why = _video_probe(path)
    if streams:
        return "video"
    if not why:  # FFmpeg read the container: an MP4 whose only track had no frames, an audio file
        raise MediaError(f"{what} {path} has no video frames (the file holds no video stream)")
    raise MediaError(f"{what} {path} is neither an image nor a video that lpt can read ({why})")

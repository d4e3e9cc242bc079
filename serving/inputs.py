"""Crops for ``lpt triton bench`` (and tests): a source image and the first frames of a driving input, cropped on
the client as ``lpt-run`` crops them, or whole for the model that crops on the server.

Depends on: lpt.runtime (media, drivers, faces), lpt.triton.bench.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lpt.runtime.drivers import open_driving
from lpt.runtime.faces import Crop, FaceCropper
from lpt.runtime.media import load_image
from lpt.triton.bench import FullStreamInput, StreamInput
from lpt.triton.config import CropOptions

from lpt.errors import LptError


def stream_inputs(source: Path, driving: Path, frames: int, weights: Path | None = None,
                  no_crop: bool = False) -> StreamInput:
    cropper = FaceCropper(weights, no_crop=no_crop)
    source_crop = cropper.crop_source(load_image(source), label=f"source {source.name}").image_256
    info, items = open_driving(driving, frames)
    if info.kind == "template":
        raise LptError(f"driving {driving}: the Triton animation model is driven by frames, not motion templates")
    crops: list[np.ndarray] = []
    previous: Crop | None = None
    for item in items:
        assert item.rgb is not None
        label = f"driving frame {item.index} of {driving.name}"
        previous = cropper.resize_only(item.rgb, previous, label) if no_crop else \
            cropper.crop_driving(item.rgb, previous, label)
        crops.append(previous.image_256)
    if not crops:
        raise LptError(f"{driving}: no driving frame was read")
    return StreamInput(source_crop, tuple(crops), relative_to_first=not info.single_image)


def full_stream_inputs(source: Path, driving: Path, frames: int, no_crop: bool = False) -> FullStreamInput:
    """The same inputs whole, for ``lpt_animate_full``: the source as lpt-run loads it, the first driving frames."""
    source_rgb = load_image(source)
    info, items = open_driving(driving, frames)
    if info.kind == "template":
        raise LptError(f"driving {driving}: the Triton animation model is driven by frames, not motion templates")
    images = [item.rgb for item in items if item.rgb is not None]
    if not images:
        raise LptError(f"{driving}: no driving frame was read")
    return FullStreamInput(source_rgb, tuple(images), relative_to_first=not info.single_image,
                           crop=CropOptions(crop=not no_crop, crop_driving=not no_crop))  # as stream_inputs crops

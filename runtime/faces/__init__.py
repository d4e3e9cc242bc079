"""Faces: detection, landmarks and the official crop, with an offline fallback (see ``cropper``)."""

from lpt.runtime.faces.cropper import Crop, FaceCropper, NoFaceError

__all__ = ["Crop", "FaceCropper", "NoFaceError"]

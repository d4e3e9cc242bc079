"""A procedurally drawn portrait: the project's own demo source image and driving frames.

Deterministic for a given seed and pose (numpy + OpenCV drawing only, no external files). The seed varies
colours and proportions; ``yaw`` (degrees, + turns the face to the image's right), ``mouth_open`` and
``eye_open`` (0..1) pose the face, so a few calls make a driving clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SUPERSAMPLE = 2  # drawn at twice the size and area-downsampled: smooth edges without per-shape AA

SKIN = ((224, 186, 160), (198, 148, 112), (150, 104, 74), (238, 206, 180), (112, 76, 54))
HAIR = ((40, 28, 20), (92, 58, 30), (170, 130, 70), (20, 20, 22), (120, 40, 20), (200, 200, 196))
IRIS = ((70, 110, 160), (80, 60, 40), (60, 120, 80), (110, 90, 60))
CLOTH = ((40, 70, 140), (150, 40, 50), (60, 110, 70), (70, 70, 80), (200, 170, 90))


@dataclass(frozen=True)
class Look:
    """The seeded identity: everything that does not change with the pose."""

    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    cloth: np.ndarray
    lips: np.ndarray
    bg_top: np.ndarray
    bg_bottom: np.ndarray
    face_w: float  # half-axes and positions in units of the image size
    face_h: float
    eye_dx: float
    eye_y: float
    eye_w: float
    mouth_y: float
    mouth_w: float
    hair_len: float


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: float) -> np.ndarray:
    """Mostly a brightness change, a little hue: independent channel noise turns skin green."""
    tone = np.array(colour, float) * rng.uniform(1 - amount / 100, 1 + amount / 100)
    return np.clip(tone + rng.normal(0.0, amount / 3, 3), 0, 255)


def _look(seed: int) -> Look:
    rng = np.random.default_rng(seed)
    pick = lambda palette: palette[rng.integers(len(palette))]
    skin = _jitter(rng, pick(SKIN), 8)
    return Look(
        skin=skin,
        hair=_jitter(rng, pick(HAIR), 10),
        iris=_jitter(rng, pick(IRIS), 12),
        cloth=_jitter(rng, pick(CLOTH), 15),
        lips=np.clip(skin * np.array([0.85, 0.55, 0.55]) + rng.normal(0, 6, 3), 0, 255),
        bg_top=rng.uniform(60, 230, 3),
        bg_bottom=rng.uniform(20, 200, 3),
        face_w=0.165 * rng.uniform(0.93, 1.07),
        face_h=0.215 * rng.uniform(0.95, 1.05),
        eye_dx=0.068 * rng.uniform(0.92, 1.08),
        eye_y=0.43 + rng.uniform(-0.01, 0.01),
        eye_w=0.032 * rng.uniform(0.9, 1.1),
        mouth_y=0.60 + rng.uniform(-0.012, 0.012),
        mouth_w=0.048 * rng.uniform(0.85, 1.15),
        hair_len=rng.uniform(0.0, 1.0),
    )


def _c(colour: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(v) for v in colour)  # type: ignore[return-value]


def _shaded_face(img: np.ndarray, centre: tuple[float, float], axes: tuple[float, float], skin: np.ndarray, yaw: float) -> None:
    """Fill the face ellipse with sphere-like Lambert shading, lit from the upper left."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs - centre[0]) / axes[0]
    v = (ys - centre[1]) / axes[1]
    r2 = u * u + v * v
    inside = r2 <= 1.0
    nz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    light = np.array([-0.45 + 0.3 * math.sin(math.radians(yaw)), -0.5, 0.74])
    light /= np.linalg.norm(light)
    shade = 0.55 + 0.5 * np.clip(u * light[0] + v * light[1] + nz * light[2], 0.0, 1.0)
    face = np.clip(shade[..., None] * skin[None, None, :], 0, 255)
    img[inside] = face[inside]


def _eye(img: np.ndarray, centre: tuple[float, float], width: float, openness: float, look: Look, s: float) -> None:
    cx, cy = centre
    height = max(width * 0.55 * openness, 0.0)
    lid = _c(look.skin * 0.6)
    if height < 1.5 * s:
        cv2.ellipse(img, (int(cx), int(cy)), (int(width), int(2 * s)), 0, 0, 180, lid, max(int(2 * s), 1))
        return
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(width), int(height)), 0, 0, 360, 255, -1)
    layer = img.copy()
    cv2.ellipse(layer, (int(cx), int(cy)), (int(width), int(height)), 0, 0, 360, (245, 243, 238), -1)
    iris_r = int(width * 0.5)
    cv2.circle(layer, (int(cx), int(cy)), iris_r, _c(look.iris), -1)
    cv2.circle(layer, (int(cx), int(cy)), int(iris_r * 0.45), (12, 12, 14), -1)
    cv2.circle(layer, (int(cx - iris_r * 0.35), int(cy - iris_r * 0.35)), max(int(iris_r * 0.18), 1), (255, 255, 255), -1)
    img[mask > 0] = layer[mask > 0]
    cv2.ellipse(img, (int(cx), int(cy)), (int(width), int(height)), 0, 180, 360, lid, max(int(2.5 * s), 1))


def draw_portrait(seed: int = 0, size: int = 512, yaw: float = 0.0, mouth_open: float = 0.0, eye_open: float = 1.0) -> np.ndarray:
    """An H x W x 3 uint8 RGB head-and-shoulders portrait. ``yaw`` is in degrees (clamped to +-60),
    ``mouth_open`` and ``eye_open`` in [0, 1]."""
    look = _look(seed)
    yaw = float(np.clip(yaw, -60.0, 60.0))
    mouth_open = float(np.clip(mouth_open, 0.0, 1.0))
    eye_open = float(np.clip(eye_open, 0.0, 1.0))
    n = size * SUPERSAMPLE
    s = n / 512.0  # stroke unit
    sy, cyaw = math.sin(math.radians(yaw)), math.cos(math.radians(yaw))

    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None, None]
    img = ((1 - t) * look.bg_top + t * look.bg_bottom).repeat(n, axis=1).astype(np.float32)
    img = np.ascontiguousarray(img)

    cx, cy = 0.5 * n + 0.03 * n * sy, 0.45 * n
    fw, fh = look.face_w * n * (1 - 0.08 * abs(sy)), look.face_h * n
    # Hair behind the head, shoulders, neck.
    back_h = fh * (1.15 + 0.5 * look.hair_len)
    cv2.ellipse(img, (int(cx - 0.02 * n * sy), int(cy + 0.05 * n * look.hair_len)), (int(fw * 1.28), int(back_h)), 0, 0, 360, _c(look.hair), -1)
    cv2.ellipse(img, (int(0.5 * n), int(1.02 * n)), (int(0.36 * n), int(0.2 * n)), 0, 180, 360, _c(look.cloth), -1)
    cv2.rectangle(img, (int(0.5 * n - 0.17 * n), int(0.95 * n)), (int(0.5 * n + 0.17 * n), n), _c(look.cloth), -1)
    cv2.rectangle(img, (int(cx - 0.55 * fw), int(cy + 0.5 * fh)), (int(cx + 0.55 * fw), int(0.88 * n)), _c(look.skin * 0.78), -1)
    cv2.ellipse(img, (int(0.5 * n), int(0.86 * n)), (int(0.62 * fw), int(0.05 * n)), 0, 0, 180, _c(look.skin * 0.78), -1)
    # Ears: the one turned away hides behind the face.
    for side in (-1, 1):
        visible = 1.0 - max(0.0, side * sy) * 1.6
        if visible > 0.1:
            ex = cx + side * fw * (0.98 - 0.1 * sy * side)
            cv2.ellipse(img, (int(ex), int(cy + 0.02 * n)), (int(0.028 * n * visible), int(0.05 * n)), 0, 0, 360, _c(look.skin * 0.85), -1)
    _shaded_face(img, (cx, cy), (fw, fh), look.skin, yaw)
    # Fringe over the forehead.
    cv2.ellipse(img, (int(cx - 0.01 * n * sy), int(cy - 0.55 * fh)), (int(fw * 1.06), int(fh * 0.52)), 0, 180, 360, _c(look.hair), -1)
    cv2.ellipse(img, (int(cx + 0.3 * fw), int(cy - 0.62 * fh)), (int(fw * 0.7), int(fh * 0.22)), -12, 0, 180, _c(look.hair), -1)

    # Features move with the yaw (the nose most: it sticks out) and foreshorten on the far side.
    fx = cx + 0.55 * fw * sy
    ey = look.eye_y * n
    for side in (-1, 1):
        squash = 1.0 - 0.45 * max(0.0, side * sy)
        ex = fx + side * look.eye_dx * n * cyaw
        ew = look.eye_w * n * squash
        _eye(img, (ex, ey), ew, eye_open, look, s)
        brow_y = ey - (0.045 + 0.012 * eye_open) * n
        pts = np.array([[ex - ew * 1.1, brow_y + 4 * s], [ex, brow_y - 4 * s], [ex + ew * 1.1, brow_y + 2 * s]], np.int32)
        cv2.polylines(img, [pts], False, _c(look.hair * 0.8), max(int(7 * s * squash), 1))

    nose_x = cx + 0.75 * fw * sy
    nose_tip = (int(nose_x + 0.012 * n * sy), int(0.53 * n))
    cv2.line(img, (int(fx + 0.01 * n * sy), int(ey + 0.02 * n)), nose_tip, _c(look.skin * 0.7), max(int(3 * s), 1))
    for side in (-1, 1):
        cv2.circle(img, (int(nose_tip[0] + side * 0.014 * n * cyaw), nose_tip[1] + int(3 * s)), max(int(4 * s), 1), _c(look.skin * 0.5), -1)

    mx, my = int(fx + 0.1 * fw * sy), int(look.mouth_y * n)
    mw = int(look.mouth_w * n * (1 - 0.25 * abs(sy)) * (1 - 0.15 * mouth_open))
    mh = int(0.045 * n * mouth_open)
    if mh >= 2 * s:
        cv2.ellipse(img, (mx, my), (mw, mh), 0, 0, 360, (60, 18, 24), -1)
        cv2.ellipse(img, (mx, my - int(0.6 * mh)), (int(mw * 0.7), max(int(0.3 * mh), 1)), 0, 0, 180, (236, 232, 222), -1)
        cv2.ellipse(img, (mx, my), (mw, mh), 0, 0, 360, _c(look.lips), max(int(5 * s), 1))
    else:
        cv2.ellipse(img, (mx, my - int(8 * s)), (mw, int(10 * s)), 0, 20, 160, _c(look.lips), max(int(6 * s), 1))

    rng = np.random.default_rng([seed, 1])  # film grain: flat colour regions are unlike real photos
    img += rng.normal(0.0, 3.0, img.shape).astype(np.float32)
    img = cv2.resize(np.clip(img, 0, 255), (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def driving_poses(frames: int) -> list[tuple[float, float, float]]:
    """(yaw, mouth_open, eye_open) per frame of the demo driving clip: a head turn there and back, the
    mouth opening and closing twice, one blink in the middle."""
    poses = []
    for i in range(frames):
        phase = i / max(1, frames - 1)
        yaw = 20.0 * math.sin(2 * math.pi * phase)
        mouth = 0.5 - 0.5 * math.cos(4 * math.pi * phase)
        eye = 0.1 if abs(phase - 0.5) < 0.6 / max(1, frames) else 1.0
        poses.append((yaw, mouth, eye))
    return poses

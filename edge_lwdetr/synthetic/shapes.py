"""Synthetic detection scenes: coloured shapes of five classes on a cluttered background.

A scene is resolution-free geometry (coordinates in [0, 1] of the image side), sampled from a seed, so the same
scene renders at any size and a moving scene renders a video. Each shape is a polygon, so its box is exact: the
extent of its vertices. The class is the shape, never the colour: colours are drawn independently of the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

# Category ids follow the COCO convention (0 is unused), so model labels equal category ids as in COCO checkpoints.
CATEGORIES = {1: "circle", 2: "square", 3: "triangle", 4: "cross", 5: "star"}
MIN_SIZE, MAX_SIZE = 0.09, 0.38  # object extent, as a fraction of the image side
MAX_COVERED = 0.3  # no object is more than this fraction hidden behind the objects drawn after it
MAX_OBJECTS = 8
_SUBPIXEL_BITS = 4  # cv2 polygon vertices in 1/16 pixel


@dataclass(frozen=True)
class Shape:
    category: int
    center: tuple[float, float]  # x, y in [0, 1]
    size: float  # radius of the circumscribed circle, in image sides
    aspect: float  # y / x scale
    angle: float  # radians
    colour: tuple[int, int, int]  # BGR
    velocity: tuple[float, float] = (0.0, 0.0)  # image sides per second (videos)
    spin: float = 0.0  # radians per second (videos)

    def polygon(self) -> np.ndarray:
        """Vertices [N, 2] in [0, 1] image coordinates."""
        outline = _OUTLINES[self.category]
        scaled = outline * np.array([self.size, self.size * self.aspect])
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        rotated = scaled @ np.array([[cos, sin], [-sin, cos]])
        return rotated + np.array(self.center)

    def box(self) -> tuple[float, float, float, float]:
        """x1, y1, x2, y2 in [0, 1], clipped to the image."""
        points = np.clip(self.polygon(), 0.0, 1.0)
        return (*points.min(0).tolist(), *points.max(0).tolist())

    def at(self, seconds: float) -> Shape:
        """This shape after `seconds` of motion, bouncing off the image borders."""
        center = tuple(_bounce(c + v * seconds, self.size) for c, v in zip(self.center, self.velocity))
        return replace(self, center=center, angle=self.angle + self.spin * seconds)


def _bounce(position: float, margin: float) -> float:
    low, high = margin, 1.0 - margin
    span = high - low
    phase = (position - low) % (2 * span)
    return low + (phase if phase <= span else 2 * span - phase)


def _regular(n: int, radius_pairs: tuple[float, ...] = (1.0,), offset: float = 0.0) -> np.ndarray:
    radii = np.resize(np.array(radius_pairs), n)
    angles = offset + 2 * np.pi * np.arange(n) / n
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


_CROSS_ARM = 0.33
_OUTLINES = {
    1: _regular(64),
    2: _regular(4, offset=np.pi / 4),
    3: _regular(3, offset=-np.pi / 2),
    4: np.array(
        [(x, y) for x, y in [(-1, -_CROSS_ARM), (-_CROSS_ARM, -_CROSS_ARM), (-_CROSS_ARM, -1), (_CROSS_ARM, -1),
                              (_CROSS_ARM, -_CROSS_ARM), (1, -_CROSS_ARM), (1, _CROSS_ARM), (_CROSS_ARM, _CROSS_ARM),
                              (_CROSS_ARM, 1), (-_CROSS_ARM, 1), (-_CROSS_ARM, _CROSS_ARM), (-1, _CROSS_ARM)]]
    ) / math.hypot(1, _CROSS_ARM),
    5: _regular(10, (1.0, 0.45), offset=-np.pi / 2),
}  # fmt: skip


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]  # in drawing order: later shapes occlude earlier ones
    background_seed: int

    def at(self, seconds: float) -> Scene:
        return replace(self, shapes=tuple(shape.at(seconds) for shape in self.shapes))


def sample_scene(rng: np.random.Generator, moving: bool = False) -> Scene:
    """Up to MAX_OBJECTS shapes of random class, size, aspect, angle and colour, placed so none is mostly hidden."""
    shapes: list[Shape] = []
    wanted = int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(wanted * 20):
        if len(shapes) == wanted:
            break
        extent = rng.uniform(MIN_SIZE, MAX_SIZE)
        size = extent / 2
        center = tuple(rng.uniform(size, 1 - size, 2).tolist())
        speed = rng.uniform(0.05, 0.2) if moving else 0.0
        heading = rng.uniform(0, 2 * np.pi)
        candidate = Shape(
            category=int(rng.integers(1, len(CATEGORIES) + 1)),
            center=center,
            size=size,
            aspect=float(rng.uniform(0.75, 1.33)),
            angle=float(rng.uniform(0, 2 * np.pi)),
            colour=_vivid_colour(rng),
            velocity=(speed * math.cos(heading), speed * math.sin(heading)),
            spin=float(rng.uniform(-1.0, 1.0)) if moving else 0.0,
        )
        if _placeable(candidate, shapes):
            shapes.append(candidate)
    return Scene(tuple(shapes), int(rng.integers(2**31)))


def _vivid_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(120, 256), rng.integers(110, 256)]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _placeable(candidate: Shape, placed: list[Shape]) -> bool:
    """The candidate hides at most MAX_COVERED of each placed box and no placed box hides much of it."""
    box = candidate.box()
    for other in placed:
        other_box = other.box()
        inter = _intersection(box, other_box)
        if inter > MAX_COVERED * min(_area(box), _area(other_box)):
            return False
    return True


def _area(box: tuple[float, ...]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def _intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def render(scene: Scene, width: int, height: int | None = None) -> np.ndarray:
    """The scene as an HxWx3 uint8 BGR image: clutter first, then the shapes in order, anti-aliased."""
    height = height or width
    image = _background(np.random.default_rng(scene.background_seed), width, height)
    for shape in scene.shapes:
        # Pixel i covers [i, i + 1) in box coordinates (COCO) but is centred on i in cv2 drawing coordinates.
        points = np.round((shape.polygon() * [width, height] - 0.5) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        cv2.fillPoly(image, [points], shape.colour, cv2.LINE_AA, _SUBPIXEL_BITS)
    return image


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth colour field with lines, specks and sensor noise: clutter that is not any of the classes."""
    coarse = rng.uniform(40, 200, (3, 3, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    side = min(width, height)
    for _ in range(int(rng.integers(3, 12))):
        start = (rng.uniform(0, 1, 2) * [width, height]).astype(int)
        end = (rng.uniform(0, 1, 2) * [width, height]).astype(int)
        cv2.line(image, tuple(start.tolist()), tuple(end.tolist()), rng.uniform(0, 255, 3).tolist(),
                 int(rng.integers(1, 3)), cv2.LINE_AA)  # fmt: skip
    for _ in range(int(rng.integers(10, 40))):
        center = (rng.uniform(0, 1, 2) * [width, height]).astype(int)
        radius = max(1, int(rng.uniform(0.003, 0.02) * side))
        cv2.circle(image, tuple(center.tolist()), radius, rng.uniform(0, 255, 3).tolist(), -1, cv2.LINE_AA)
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)

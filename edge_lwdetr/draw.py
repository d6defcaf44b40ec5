"""Draw detections on an image (OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

from edge_lwdetr.processing import Detection


def label_colour(label: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class id (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_detections(image_bgr: np.ndarray, detections: list[Detection]) -> np.ndarray:
    """A copy of the image with each detection's box, name and score."""
    canvas = image_bgr.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 320))
    for det in reversed(detections):  # the best on top
        colour = label_colour(det.label)
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"{det.name} {det.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, thickness)
        top = max(y1 - th - base, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + tw, top + th + base), colour, -1)
        cv2.putText(canvas, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 0, 0), thickness)
    return canvas

"""Draw detections on an image (OpenCV), legibly: one label per box, inside the image, never over another label.

LW-DETR scores every (query, class) pair, so one query (one box) can be detected as several classes. Those share
one rectangle and one label, the best class first and the runners-up after it: "circle 0.91 | star 0.12"; with
tracking, the object's track id first: "#3 circle 0.91".
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_lwdetr.processing import Detection

FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_colour(label: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class id (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place(box: tuple[int, int, int, int], size: tuple[int, int], placed: list, shape: tuple[int, int]) -> tuple:
    """Where a label of `size` goes: above the box, else inside its top edge, moved down past labels already placed,
    and kept inside the image."""
    (w, h), (height, width) = size, shape
    x = min(max(box[0], 0), max(width - w, 0))
    y = box[1] - h if box[1] - h >= 0 else max(box[1], 0)
    for _ in range(len(placed) + 1):
        rect = (x, y, x + w, y + h)
        hit = next((p for p in placed if _overlaps(rect, p)), None)
        if hit is None:
            break
        y = hit[3]
    y = min(y, max(height - h, 0))
    return x, y, x + w, y + h


def label_text(detections: list[Detection]) -> str:
    """The label of one box: its classes, best first (up to three), after its track id when it has one."""
    text = " | ".join(f"{d.name} {d.score:.2f}" for d in detections[:3])
    track = detections[0].track_id
    return f"#{track} {text}" if track is not None and track >= 0 else text


def draw_detections(image_bgr: np.ndarray, detections: list[Detection]) -> np.ndarray:
    """A copy of the image with each box, and one label per box naming its classes and scores."""
    canvas = image_bgr.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 320))
    scale = 0.4 * thickness
    groups: dict[tuple, list[Detection]] = {}
    for det in detections:  # sorted by score: the first of each box is its best class
        groups.setdefault(tuple(round(v, 1) for v in det.box), []).append(det)
    boxes = [(dets[0], tuple(int(round(v)) for v in dets[0].box), dets) for dets in groups.values()]
    for best, (x1, y1, x2, y2), _ in reversed(boxes):  # the best on top
        cv2.rectangle(canvas, (x1, y1), (x2, y2), label_colour(best.label), thickness)
    placed: list[tuple[int, int, int, int]] = []
    for best, box, dets in boxes:
        text = label_text(dets)
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
        x1, y1, x2, y2 = _place(box, (tw + 2, th + base + 2), placed, canvas.shape[:2])
        placed.append((x1, y1, x2, y2))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), label_colour(best.label), -1)
        cv2.putText(canvas, text, (x1 + 1, y1 + th + 1), FONT, scale, (0, 0, 0), thickness)
    return canvas


def draw_badge(image_bgr: np.ndarray, text: str) -> np.ndarray:
    """`text` in a small dark badge at the bottom-left corner (in place), where it hides the least of the scene."""
    thickness = max(1, round(min(image_bgr.shape[:2]) / 320))
    (tw, th), base = cv2.getTextSize(text, FONT, 0.5 * thickness, thickness)
    height = image_bgr.shape[0]
    top = max(height - th - base - 6, 0)
    region = image_bgr[top:height, 0 : tw + 8]
    region[:] = (region * 0.35).astype(np.uint8)  # darkened, still see-through
    cv2.putText(image_bgr, text, (4, height - base - 3), FONT, 0.5 * thickness, (255, 255, 255), thickness)
    return image_bgr

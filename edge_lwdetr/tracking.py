"""Multi-object tracking for `run --track` and `Detector.predict(track=True)`: ByteTrack, one tracker per source.

ByteTrack (Zhang et al., ECCV 2022, arXiv 2110.06864) comes from Roboflow's `trackers` package (the `track` extra),
pinned to 2.1: the last release that does not require `opencv-python`. From 2.2 on it does, and `opencv-python`
beside our `opencv-python-headless` is a second package writing the same `cv2` module (removing either breaks the
other), and on a Jetson it would shadow JetPack's OpenCV and its GStreamer (CSI cameras, NVENC). supervision's own
`ByteTrack` is deprecated and gone in 0.31; norfair pins numpy < 2 (our OpenCV 5 needs numpy 2); boxmot needs
`opencv-python` < 5 and torch. ByteTrack's code (its matching, Kalman filter and track life cycle) runs unchanged
in 2.1; only scipy and supervision come with it.

LW-DETR scores every (query, class) pair, so one object is often reported under several classes with the same box.
Those detections are grouped (IoU above SAME_BOX_IOU) and only the best class of each group is tracked; the
runners-up get its id, so an id never jumps between the classes of one object.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import Detection

SAME_BOX_IOU = 0.95  # above this, two detections are one object under two classes (one query: the same box)
NOT_TRACKED = -1  # the id of a detection not (yet) on a confirmed track: seen once, or below the activation score
TRACK_EXTRA = "pip install 'edge-lwdetr[track]'"


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` [N, 4] with every box of `b` [M, 4] (x1, y1, x2, y2)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def same_box_groups(detections: list[Detection], threshold: float = SAME_BOX_IOU) -> list[int]:
    """For each detection, the index of the detection leading its group: the best-scoring one whose box it repeats
    (IoU above `threshold`), itself when it repeats none. Detections come sorted by score, as postprocess gives them."""
    boxes = np.array([d.box for d in detections], np.float64).reshape(-1, 4)
    overlap = iou_matrix(boxes, boxes)
    leaders: list[int] = []
    for index in range(len(detections)):
        best = (j for j in range(index) if leaders[j] == j and overlap[index, j] > threshold)
        leaders.append(next(best, index))
    return leaders


def require_tracking():
    """ByteTrack's class and supervision, or the one-line error naming the extra to install."""
    try:
        import supervision
        from trackers import ByteTrackTracker
    except ImportError:
        raise EdgeLwdetrError(f"--track needs the tracking extra (the trackers package): {TRACK_EXTRA}") from None
    return ByteTrackTracker, supervision


class Tracker:
    """ByteTrack over one source's frames: update() takes a frame's detections and returns them with track ids.

    Ids count from 1 per tracker (one per source), whatever other trackers in the process do. `frame_rate` scales
    how long a lost track is kept (`lost_seconds`); detections scoring `new_track_score` or more start tracks, those
    below `high_score` are only matched to existing tracks (ByteTrack's second association).
    """

    def __init__(
        self, frame_rate: float = 30.0, lost_seconds: float = 1.0, new_track_score: float = 0.6, high_score: float = 0.5
    ):
        ByteTrackTracker, self._sv = require_tracking()
        frame_rate = frame_rate if frame_rate and frame_rate > 0 else 30.0
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(lost_seconds * 30)),  # frames at 30 FPS; the tracker scales by frame_rate
            frame_rate=frame_rate,
            track_activation_threshold=new_track_score,
            high_conf_det_threshold=high_score,
        )
        self._ids: dict[int, int] = {}  # the package's ids (one counter for the whole process) -> ours

    def update(self, detections: list[Detection]) -> list[Detection]:
        """The frame's detections, in the same order, each with its `track_id` (NOT_TRACKED when on no track)."""
        leaders = same_box_groups(detections)
        tracked = sorted(set(leaders))
        xyxy = np.array([detections[i].box for i in tracked], np.float32).reshape(-1, 4)
        frame = self._sv.Detections(
            xyxy=xyxy,
            confidence=np.array([detections[i].score for i in tracked], np.float32),
            class_id=np.array([detections[i].label for i in tracked], int),
            data={"index": np.array(tracked, int)},  # the tracker reorders and drops: find each one back
        )
        result = self._tracker.update(frame)
        ids = {leader: NOT_TRACKED for leader in tracked}
        if len(result):
            for index, track in zip(result.data["index"], result.tracker_id):
                if track >= 0:
                    ids[int(index)] = self._ids.setdefault(int(track), len(self._ids) + 1)
        return [replace(det, track_id=ids[leader]) for det, leader in zip(detections, leaders)]

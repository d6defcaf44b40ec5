"""The detections of one frame, as NumPy arrays, with the frame they came from (Ultralytics' results, for LW-DETR)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_lwdetr.processing import Detection


@dataclass
class Result:
    xyxy: np.ndarray  # [N, 4] float32: x1, y1, x2, y2 in the source frame's pixels, best score first
    scores: np.ndarray  # [N] float32 in [0, 1]
    labels: np.ndarray  # [N] int64 class ids (keys of `names`)
    names: dict[int, str]  # class id -> name
    source: str  # the file, URI or "array" the frame came from
    frame: int  # the frame's index in its source (0 for an image)
    shape: tuple[int, int]  # (height, width) of the source frame
    image: np.ndarray | None = field(default=None, repr=False)  # the BGR frame, for plot()
    track_ids: np.ndarray | None = None  # [N] int64 with tracking (predict(track=True)), -1: on no track; else None

    @classmethod
    def from_detections(
        cls,
        detections: list[Detection],
        names: dict[int, str],
        source: str,
        frame: int,
        image: np.ndarray,
        tracked: bool = False,
    ) -> Result:
        """`tracked`: the detections went through a tracking.Tracker (their track_id is set)."""
        return cls(
            xyxy=np.array([d.box for d in detections], np.float32).reshape(-1, 4),
            scores=np.array([d.score for d in detections], np.float32),
            labels=np.array([d.label for d in detections], np.int64),
            names=names,
            source=source,
            frame=frame,
            shape=(int(image.shape[0]), int(image.shape[1])),
            image=image,
            track_ids=np.array([d.track_id for d in detections], np.int64) if tracked else None,
        )

    def __len__(self) -> int:
        return len(self.scores)

    def detections(self) -> list[Detection]:
        track_ids = [None] * len(self) if self.track_ids is None else [int(t) for t in self.track_ids]
        return [
            Detection(int(label), self.names.get(int(label), str(label)), float(score), [float(v) for v in box], track)
            for box, score, label, track in zip(self.xyxy, self.scores, self.labels, track_ids)
        ]

    def plot(self) -> np.ndarray:
        """A copy of the frame with the detections drawn (BGR, as OpenCV writes and shows it)."""
        from edge_lwdetr.draw import draw_detections

        if self.image is None:
            raise ValueError("this result keeps no image to draw on")
        return draw_detections(self.image, self.detections())

    def to_json(self) -> dict:
        """The record `edge-lwdetr predict --save-json` writes for an image."""
        return {
            "source": self.source,
            "frame": self.frame,
            "size": [self.shape[1], self.shape[0]],
            "detections": [d.to_json() for d in self.detections()],
        }

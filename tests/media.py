"""Generated media for the runtime tests: videos with objects at known places, decoding helpers."""

import cv2
import numpy as np


def write_video(path, count, size=(320, 240), fps=15):
    """Frames with a red box sliding right and a blue disc (MJPG AVI, written by OpenCV, not by the code tested)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(count):
        frame = np.full((size[1], size[0], 3), 70, np.uint8)
        cv2.rectangle(frame, (10 + 4 * i, 40), (90 + 4 * i, 120), (0, 0, 255), -1)
        cv2.circle(frame, (220, 170), 35, (255, 120, 0), -1)
        writer.write(frame)
    writer.release()
    return path


def read_frames(path):
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def decode_all(path) -> int:
    """Frames in a video, decoded by FFmpeg (PyAV) to the end; raises if any packet does not decode."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))

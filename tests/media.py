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


INDEX_BASE, INDEX_STEP = 20, 12  # frame i of an indexed video is level 20 + 12 i: robust to JPEG and H.264 rounding


def write_indexed_video(path, count, size, channel, fps=15):
    """Frames that carry their index as the level of one colour channel (the source's mark), the others at 30."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(count):
        frame = np.full((size[1], size[0], 3), 30, np.uint8)
        frame[..., channel] = INDEX_BASE + INDEX_STEP * i
        writer.write(frame)
    writer.release()
    return path


def frame_index(frame, channel) -> int:
    """The index an indexed frame carries, read at the top-right corner (where no detection or badge is drawn)."""
    height, width = frame.shape[:2]
    level = float(frame[height // 10, width * 9 // 10, channel])
    return round((level - INDEX_BASE) / INDEX_STEP)

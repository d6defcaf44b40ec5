"""H.264 recordings keep the colours of what is drawn: the writer's BGR -> I420 conversion against FFmpeg's own."""

import av
import cv2
import numpy as np

from edge_lwdetr.video import VideoWriter, bgr_to_i420


def test_bgr_to_i420_matches_ffmpeg_swscale():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (242, 322, 3), dtype=np.uint8)
    frame[1::7] = (0, 200, 255)  # 1-pixel lines on odd rows and columns: the chroma of a 2x2 block is their mean
    frame[:, 1::5] = (255, 0, 0)
    ffmpeg = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(format="yuv420p").to_ndarray()
    ours = bgr_to_i420(frame)
    assert ours.shape == ffmpeg.shape == (242 * 3 // 2, 322)
    assert np.abs(ours.astype(int) - ffmpeg).max() <= 2


def test_a_one_pixel_coloured_line_keeps_its_colour_in_the_recording(tmp_path):
    frame = np.full((120, 160, 3), 128, np.uint8)
    cv2.rectangle(frame, (41, 31), (121, 91), (0, 200, 255), 1)  # odd corners: each edge is the odd pixel of a block
    writer = VideoWriter(tmp_path / "line.mp4", 10)
    for _ in range(3):
        writer.write(frame)
    writer.close()
    capture = cv2.VideoCapture(str(tmp_path / "line.mp4"))
    ok, decoded = capture.read()
    capture.release()
    assert ok
    blue, _, red = decoded[31, 60:100].astype(int).mean(axis=0)  # the top edge, away from the corners
    assert red - blue > 40, f"the orange line came back grey: B {blue:.0f}, R {red:.0f}"

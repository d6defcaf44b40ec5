"""A demo video of moving synthetic shapes, made by the same generator the bundled model was trained on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.synthetic.shapes import render, sample_scene

FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


def write_video(path: Path, seconds: float = 8.0, fps: int = 15, size: int = 384, seed: int = 0) -> Path:
    """Moving, spinning shapes over a fixed cluttered background; one new scene every 4 seconds."""
    if path.suffix not in FOURCC:
        raise EdgeLwdetrError(f"{path}: the demo video must be .mp4 or .avi")
    if seconds <= 0 or fps <= 0 or size < 64:
        raise EdgeLwdetrError(f"a demo video needs seconds > 0, fps > 0 and size >= 64 (got {seconds}, {fps}, {size})")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), fps, (size, size))
    if not writer.isOpened():
        raise EdgeLwdetrError(f"OpenCV cannot write {path} (codec {FOURCC[path.suffix]})")
    rng = np.random.default_rng([seed, 2])
    frames = int(seconds * fps)
    scene = None
    for frame in tqdm(range(frames), desc=f"writing {path}", unit="frame"):
        if frame % (4 * fps) == 0:
            scene = sample_scene(rng, moving=True)
        writer.write(render(scene.at((frame % (4 * fps)) / fps), size))
    writer.release()
    return path

"""A demo video of moving synthetic shapes, made by the same generator the bundled model was trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.outputs import atomic_file
from edge_lwdetr.synthetic.shapes import render, sample_scene
from edge_lwdetr.video import SUFFIXES, VideoWriter
from edge_lwdetr.progress import progress_bar


def write_video(path: Path, seconds: float = 8.0, fps: int = 15, size: int = 384, seed: int = 0) -> Path:
    """Moving, spinning shapes over a fixed cluttered background; one new scene every 4 seconds."""
    if path.suffix.lower() not in SUFFIXES:
        raise EdgeLwdetrError(f"{path}: the demo video must be .mp4 or .avi (H.264 or Motion JPEG)")
    if seconds <= 0 or fps <= 0 or size < 64:
        raise EdgeLwdetrError(f"a demo video needs seconds > 0, fps > 0 and size >= 64 (got {seconds}, {fps}, {size})")
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2])
    frames = max(1, int(seconds * fps))
    scene = None
    with atomic_file(path) as temporary:
        writer = VideoWriter(temporary, fps)
        for frame in progress_bar(f"writing {path}", "frame", iterable=range(frames)):
            if frame % (4 * fps) == 0:
                scene = sample_scene(rng, moving=True)
            writer.write(render(scene.at((frame % (4 * fps)) / fps), size))
        writer.close()
    return path

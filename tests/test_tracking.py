"""`run --track` / `Detector.predict(track=True)`: ByteTrack ids per detection, stable for an object across frames.

Unit tests feed synthesized detections; the end-to-end tests run the bundled model on a generated video of shapes
moving apart (no occlusion, so an id change would be the tracker's fault, not the scene's)."""

import json
import sys

import cv2
import numpy as np
import pytest

from edge_lwdetr.draw import label_text
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import Detection
from edge_lwdetr.tracking import NOT_TRACKED, same_box_groups

NAMES = {1: "circle", 2: "square", 3: "triangle", 4: "cross", 5: "star"}
FPS = 8


def detection(label, score, box):
    return Detection(label, NAMES[label], score, [float(v) for v in box])


def moving_objects(frame: int) -> list[Detection]:
    """Two objects moving 12 px a frame in opposite directions; object A is also reported as a second class with
    the same box (LW-DETR: one query, two classes), and object B is missed in frames 6 and 7."""
    a = (20 + 12 * frame, 30, 80 + 12 * frame, 90)
    b = (400 - 12 * frame, 200, 470 - 12 * frame, 260)
    found = [detection(1, 0.9, a), detection(4, 0.4, a)]
    if frame not in (6, 7):
        found.insert(1, detection(2, 0.8, b))
    return sorted(found, key=lambda d: -d.score)


def test_same_box_groups_lead_by_the_best_class():
    box = (10, 10, 50, 50)
    found = [detection(1, 0.9, box), detection(2, 0.7, (200, 200, 240, 240)), detection(4, 0.3, (10.2, 10, 50, 50.3))]
    assert same_box_groups(found) == [0, 1, 0]
    assert same_box_groups([]) == []


def test_ids_stable_through_moving_objects_and_shared_by_a_box_classes():
    pytest.importorskip("trackers")
    from edge_lwdetr.tracking import Tracker

    tracker = Tracker(frame_rate=FPS)
    ids: dict[str, set[int]] = {"A": set(), "B": set()}
    for frame in range(14):
        tracked = tracker.update(moving_objects(frame))
        by_label = {d.label: d.track_id for d in tracked}
        assert by_label[4] == by_label[1]  # the runner-up class of A's box carries A's id
        ids["A"].add(by_label[1])
        if 2 in by_label:
            ids["B"].add(by_label[2])
        if frame == 0:
            assert set(by_label.values()) == {NOT_TRACKED}  # a track is confirmed on its second frame
    ids = {name: found - {NOT_TRACKED} for name, found in ids.items()}
    assert ids == {"A": {1}, "B": {2}}  # one id each through the gap, counted from 1 by this tracker


def test_trackers_count_ids_on_their_own():
    """One tracker per source: a second tracker's ids start at 1 whatever the first has handed out."""
    pytest.importorskip("trackers")
    from edge_lwdetr.tracking import Tracker

    first, second = Tracker(), Tracker()
    for frame in range(3):
        first.update(moving_objects(frame))
    assert {d.track_id for d in first.update(moving_objects(3))} == {1, 2}
    second.update(moving_objects(0))
    assert {d.track_id for d in second.update(moving_objects(1))} == {1, 2}


def test_missing_extra_fails_in_one_line_naming_it(monkeypatch, tmp_path, capsys):
    from edge_lwdetr.cli import main
    from edge_lwdetr.tracking import Tracker

    monkeypatch.setitem(sys.modules, "trackers", None)  # import trackers -> ImportError
    with pytest.raises(EdgeLwdetrError, match=r"--track needs the tracking extra .*pip install 'edge-lwdetr\[track\]'"):
        Tracker()
    # The CLI says so before opening the source or the model.
    assert main(["run", "--source", str(tmp_path / "never_opened.mp4"), "--track"]) == 2
    error = capsys.readouterr().err
    assert "pip install 'edge-lwdetr[track]'" in error and len(error.strip().splitlines()) == 1


def test_track_id_in_label_and_records():
    tracked = detection(1, 0.91, (0, 0, 5, 5))
    tracked.track_id = 3
    assert label_text([tracked]) == "#3 circle 0.91"
    assert tracked.to_json()["track_id"] == 3
    untracked = detection(1, 0.91, (0, 0, 5, 5))
    assert label_text([untracked]) == "circle 0.91" and "track_id" not in untracked.to_json()


@pytest.fixture(scope="module")
def shapes_video(tmp_path_factory):
    """12 frames (256 px, 8 FPS) of three shapes moving apart in their own rows, and their true boxes per frame."""
    from edge_lwdetr.synthetic.shapes import Scene, Shape, render

    shapes = (
        Shape(1, (0.25, 0.2), 0.11, 1.0, 0.0, (40, 40, 230), velocity=(0.3, 0.0)),
        Shape(2, (0.75, 0.5), 0.12, 1.0, 0.3, (230, 120, 30), velocity=(-0.3, 0.0)),
        Shape(5, (0.3, 0.8), 0.12, 1.0, 0.0, (40, 200, 40), velocity=(0.25, -0.05)),
    )
    scene = Scene(shapes, background_seed=3)
    path = tmp_path_factory.mktemp("tracking") / "shapes.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (256, 256))
    truth = []
    for frame in range(12):
        moved = scene.at(frame / FPS)
        writer.write(render(moved, 256))
        truth.append(np.array([s.box() for s in moved.shapes]) * 256)
    writer.release()
    return path, truth


def ids_per_object(frames, truth) -> dict[int, list[tuple[int, int]]]:
    """For each true object, (frame, track id) of each detection that finds it (IoU > 0.5)."""
    from edge_lwdetr.tracking import iou_matrix

    found: dict[int, list[tuple[int, int]]] = {}
    for frame, ((boxes, ids), true_boxes) in enumerate(zip(frames, truth)):
        if len(boxes):
            overlap = iou_matrix(np.asarray(boxes, np.float64), true_boxes)
            for row, track in zip(overlap, ids):
                if row.max() > 0.5:
                    found.setdefault(int(row.argmax()), []).append((frame, int(track)))
    return found


def assert_stable(found: dict[int, list[tuple[int, int]]], objects: int, frames: int) -> None:
    assert sorted(found) == list(range(objects))  # every object is detected
    ids = {obj: {track for _, track in seen} - {NOT_TRACKED} for obj, seen in found.items()}
    assert all(len(tracks) == 1 for tracks in ids.values()), ids  # one id per object through the video
    assert len(set.union(*ids.values())) == objects  # and no two objects share one
    for seen in found.values():
        assert {frame for frame, _ in seen} == set(range(frames))  # detected in every frame (a clean scene)
        assert {frame for frame, track in seen if track == NOT_TRACKED} <= {0}  # tracked from the second frame on


def test_run_track_writes_ids_in_jsonl(shapes_video, bundled_onnx, tmp_path, capsys):
    pytest.importorskip("trackers")
    from edge_lwdetr.cli import main

    path, truth = shapes_video
    out = tmp_path / "tracks.jsonl"
    argv = ["run", "--model", str(bundled_onnx), "--source", str(path), "--track"]
    assert main(argv + ["--save-json", str(out), "--save", str(tmp_path / "tracks.mp4")]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 12 and all("track_id" in d for r in records for d in r["detections"])
    frames = [([d["box"] for d in r["detections"]], [d["track_id"] for d in r["detections"]]) for r in records]
    assert_stable(ids_per_object(frames, truth), 3, 12)


def test_predict_track_gives_result_track_ids(shapes_video, bundled_onnx):
    pytest.importorskip("trackers")
    from edge_lwdetr.api import Detector

    path, truth = shapes_video
    with Detector(bundled_onnx) as detector:
        results = list(detector.predict(str(path), stream=True, track=True))
        untracked = detector.predict(str(path), stream=True)
        assert next(untracked).track_ids is None
    assert all(r.track_ids.dtype == np.int64 and r.track_ids.shape == (len(r),) for r in results)
    assert results[3].detections()[0].track_id == results[3].track_ids[0]
    assert_stable(ids_per_object([(r.xyxy, r.track_ids) for r in results], truth), 3, 12)


def test_track_refuses_a_single_image(tmp_path):
    from edge_lwdetr.cli import main

    image = tmp_path / "one.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    assert main(["run", "--source", str(image), "--track"]) == 2

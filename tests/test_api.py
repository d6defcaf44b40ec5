"""The Python API: `from edge_lwdetr import Detector`, results as NumPy arrays, equal to what the CLI writes."""

import json

import cv2
import numpy as np
import pytest

from edge_lwdetr.cli import main
from edge_lwdetr.errors import EdgeLwdetrError
from media import read_frames, write_video


@pytest.fixture(scope="module")
def detector():
    from edge_lwdetr import Detector

    with Detector(conf=0.3) as detector:  # the bundled model
        yield detector


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from edge_lwdetr.synthetic.dataset import scene_at
    from edge_lwdetr.synthetic.shapes import render

    path = tmp_path_factory.mktemp("api") / "scene.png"
    cv2.imwrite(str(path), render(scene_at(5, 0), 320))
    return path


def test_image_file_array_and_list(detector, scene, tmp_path):
    result = detector.predict(str(scene))[0]
    assert len(result) > 0 and result.xyxy.shape == (len(result), 4) and result.xyxy.dtype == np.float32
    assert result.scores.shape == result.labels.shape == (len(result),)
    assert list(result.scores) == sorted(result.scores, reverse=True) and (result.scores > 0.3).all()
    assert result.shape == (320, 320) and result.source == str(scene) and result.frame == 0
    assert set(result.names.values()) >= {"circle", "square", "triangle", "cross", "star"}
    image = cv2.imread(str(scene))
    from_array = detector.predict(image)[0]
    np.testing.assert_array_equal(from_array.xyxy, result.xyxy)
    assert from_array.source == "array"
    both = detector.predict([image, str(scene)])
    assert len(both) == 2 and np.array_equal(both[1].labels, result.labels)
    plotted = result.plot()
    assert plotted.shape == image.shape and (plotted != image).any() and (result.image == image).all()

    # The same as the CLI writes for the image.
    assert main(["predict", "--source", str(scene), "--save-json", str(tmp_path / "d.json")]) == 0
    cli = json.loads((tmp_path / "d.json").read_text())
    assert cli["size"] == [320, 320] and len(cli["detections"]) == len(result)
    for got, want in zip(cli["detections"], result.detections()):
        assert got["label"] == want.label and got["score"] == pytest.approx(want.score, abs=1e-6)
        assert got["box"] == pytest.approx(want.box, abs=1e-3)


def test_video_stream_and_folder(detector, tmp_path):
    video = write_video(tmp_path / "v.avi", 6)
    stream = detector.predict(str(video), stream=True)
    assert not isinstance(stream, list)
    results = list(stream)
    assert [r.frame for r in results] == list(range(6)) and all(r.shape == (240, 320) for r in results)

    assert main(["run", "--source", str(video), "--save-json", str(tmp_path / "v.jsonl"), "--conf", "0.3"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [line["size"] for line in lines] == [[320, 240]] * 6 and lines[0]["source"] == str(video)
    for line, result in zip(lines, results):
        assert [d["label"] for d in line["detections"]] == result.labels.tolist()
        np.testing.assert_allclose([d["box"] for d in line["detections"]], result.xyxy.reshape(-1, 4), atol=1e-3)

    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(read_frames(video)[:3]):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    results = detector.predict(str(folder))
    assert [r.source for r in results] == [str(folder / f"{i}.png") for i in range(3)]


def test_bad_sources_raise_one_clear_error(detector, tmp_path):
    with pytest.raises(EdgeLwdetrError, match="H x W x 3 uint8"):
        detector.predict(np.zeros((10, 10), np.float32))
    with pytest.raises(EdgeLwdetrError, match="no such file"):
        detector.predict(str(tmp_path / "missing.mp4"))
    with pytest.raises(EdgeLwdetrError, match="conf"):
        from edge_lwdetr import Detector

        Detector(conf=2.0)


def test_export_mirrors_the_cli(detector, scene, tmp_path):
    from edge_lwdetr import Detector

    exported = detector.export(output=tmp_path / "m.onnx")
    assert exported.graph == tmp_path / "m.onnx" and exported.engine is None
    with Detector(exported.graph) as onnx_detector:  # ONNX Runtime
        got, want = onnx_detector.predict(str(scene))[0], detector.predict(str(scene))[0]
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_allclose(got.xyxy, want.xyxy, atol=0.05)
    with pytest.raises(EdgeLwdetrError, match="only weights"):
        with Detector(exported.graph) as onnx_detector:
            onnx_detector.export(output=tmp_path / "again.onnx")

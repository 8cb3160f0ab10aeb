"""``detect-cars`` end to end on real footage with the real Yolo-Fastest-1.1-xl weights.

OpenCV's own Darknet pipeline (``cv2.dnn_DetectionModel``) on the same decoded frames is
the independent check that cars are found where they should be.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from apps.car_detection import detector
from apps.car_detection.cli import main
from apps.car_detection.tracker import TrackerSettings
from shared import weights
from shared.images import read_image
from shared.video import VideoReader, VideoWriter

CLIP_FRAMES = 10


@pytest.fixture(scope="module")
def dashcam_clip(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Ten consecutive real dashcam frames assembled into a video (halved to 640x360)."""
    path = tmp_path_factory.mktemp("clip") / "dashcam.avi"
    with VideoWriter(path, 10.0, 640, 360) as writer:
        for number in range(1, CLIP_FRAMES + 1):
            frame = read_image(data_dir / f"cars/driveai/images/{number:04d}.jpg")
            writer.write(cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA))
    return path


def opencv_car_counts(video: Path, weights_dir: Path) -> list[int]:
    """Cars per frame by OpenCV's Darknet reader and detection model, score 0.25, NMS 0.45."""
    folder = weights_dir / "yolo-fastest"
    net = cv2.dnn.readNetFromDarknet(
        str(folder / "yolo-fastest-1.1-xl.cfg"), str(folder / "yolo-fastest-1.1-xl.weights")
    )
    model = cv2.dnn_DetectionModel(net)
    model.setInputParams(scale=1 / 255, size=(320, 320), swapRB=True, crop=False)
    counts = []
    with VideoReader(video) as reader:
        for rgb in reader:
            class_ids, _, _ = model.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 0.25, 0.45)
            counts.append(int(np.sum(np.asarray(class_ids).reshape(-1) == 2)))
    return counts


def run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


def test_a_dashcam_video_gives_every_frame_and_finds_the_cars_opencv_finds(
    offline_weights: Path, dashcam_clip: Path, tmp_path: Path
):
    annotated, lines = tmp_path / "out.mp4", tmp_path / "cars.jsonl"
    code, stdout, stderr = run(
        [
            str(dashcam_clip),
            "-o",
            str(annotated),
            "--detections",
            str(lines),
            "--json",
            "--batch",
            "4",
        ]
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["frames"] == CLIP_FRAMES and not summary["interrupted"]

    with VideoReader(annotated) as reader:
        assert (reader.width, reader.height) == (640, 360)
        assert sum(1 for _ in reader) == CLIP_FRAMES

    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(CLIP_FRAMES))
    assert records[1]["time"] == pytest.approx(0.1)
    for record in records:
        for detection in record["detections"]:
            assert detection["label"] in {"car", "truck", "bus"}
            x1, y1, x2, y2 = detection["box"]
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
            assert 0.25 < detection["score"] <= 1

    ours = [sum(d["label"] == "car" for d in r["detections"]) for r in records]
    theirs = opencv_car_counts(dashcam_clip, offline_weights)
    assert sum(theirs) > 0, "the clip should hold cars"
    assert [n > 0 for n in ours] == [n > 0 for n in theirs]
    # Both keep one class per box; a score within float noise of 0.25 may fall either side.
    assert all(abs(a - b) <= 1 for a, b in zip(ours, theirs, strict=True)), (ours, theirs)
    boxes = [tuple(d["box"]) for r in records for d in r["detections"]]
    assert len(set(boxes)) == len(boxes), "one box, one label"
    assert summary["most_at_once"]["car"]["count"] == max(ours)


def test_tensorflow_and_a_machine_without_openvino_find_what_openvino_finds(
    offline_weights: Path, dashcam_clip: Path, tmp_path: Path, monkeypatch
):
    """The default (OpenVINO, from the cache), ``--runtime tensorflow``, and a machine where
    ``import openvino`` fails (one note, then TensorFlow): the same detections."""

    def detections(*options: str) -> tuple[list, str]:
        lines = tmp_path / "cars.jsonl"
        code, _, stderr = run(  # each run replaces the previous one's lines
            [str(dashcam_clip), "--no-draw", "--detections", str(lines), "--exist-ok", *options]
        )
        assert code == 0, stderr
        found = [json.loads(line)["detections"] for line in lines.read_text().splitlines()]
        return found, stderr

    default, quiet = detections()
    assert quiet == "" and sum(map(len, default)) > 0
    tensorflow, _ = detections("--runtime", "tensorflow")
    monkeypatch.setitem(sys.modules, "openvino", None)
    fallback, note = detections()
    assert note.count("\n") == 1 and "OpenVINO is not installed" in note
    assert "running on TensorFlow" in note
    code, _, stderr = run([str(dashcam_clip), "--no-draw", "--runtime", "openvino"])
    assert code == 2 and stderr.count("\n") == 1 and "OpenVINO is not installed" in stderr
    for other in (tensorflow, fallback):
        for ours, theirs in zip(default, other, strict=True):
            assert [d["label"] for d in ours] == [d["label"] for d in theirs]
            for a, b in zip(ours, theirs, strict=True):
                assert a["score"] == pytest.approx(b["score"], abs=1e-4)
                assert a["box"] == pytest.approx(b["box"], abs=0.05)


def test_track_gives_ids_in_the_csv_and_unique_counts_in_the_summary(
    offline_weights: Path, dashcam_clip: Path, tmp_path: Path
):
    table = tmp_path / "cars.csv"
    args = [str(dashcam_clip), "--no-draw", "--csv", str(table), "--json", "--batch", "5"]
    code, stdout, stderr = run([*args, "--count-line", "0.5,0,0.5,1", "--min-track-frames", "5"])
    assert code == 0, stderr
    tracking = json.loads(stdout)["tracking"]
    rows = [row.split(",") for row in table.read_text().splitlines()]
    assert rows[0][-1] == "track"
    # Every row belongs to a track; each track has one box per frame at most.
    frames_of: dict[int, list[int]] = {}
    for row in rows[1:]:
        frames_of.setdefault(int(row[-1]), []).append(int(row[0]))
    assert all(len(set(f)) == len(f) for f in frames_of.values())
    assert set(frames_of) == set(range(1, tracking["tracks"] + 1))
    # A track is seen min_hits - 1 frames before it is first reported.
    born = TrackerSettings().min_hits - 1
    long_tracks = sum(len(f) + born >= 5 for f in frames_of.values())
    assert sum(tracking["unique"].values()) == long_tracks >= 1
    assert set(tracking["line"]["total"]) == {"left", "right"}
    assert min(float(row[5]) for row in rows[1:]) >= 0.1  # --track lowers --conf to 0.1


def test_help_says_which_labelling_rule_is_on():
    code, stdout, _ = run(["--help"])
    assert code == 0
    assert "--multi-label" in stdout and "one label per box" in " ".join(stdout.split())


def test_a_real_video_keeps_its_size_rate_and_frame_count(
    offline_weights: Path, data_dir: Path, tmp_path: Path
):
    video = data_dir / "cars/video/udacity_test_video.mp4"
    annotated, table = tmp_path / "annotated.mp4", tmp_path / "cars.csv"
    code, _, stderr = run(
        [str(video), "-o", str(annotated), "--csv", str(table), "--vid-stride", "3"]
    )
    assert code == 0, stderr
    with VideoReader(video) as source, VideoReader(annotated) as written:
        assert (written.width, written.height) == (source.width, source.height)
        assert written.fps == pytest.approx(source.fps)
        assert sum(1 for _ in written) == sum(1 for _ in source) == 38
    rows = table.read_text().splitlines()
    assert rows[0] == "frame,time,image,label,class_id,score,x1,y1,x2,y2"
    assert {int(row.split(",")[0]) % 3 for row in rows[1:]} == {0}
    assert any(",car," in row for row in rows[1:])


def test_a_folder_of_images_writes_annotated_copies(
    offline_weights: Path, data_dir: Path, tmp_path: Path
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("test.jpg", "0001.jpg"):
        (folder / name).write_bytes((data_dir / "cars/driveai/images" / name).read_bytes())
    out = tmp_path / "annotated"
    code, stdout, stderr = run([str(folder), "-o", str(out), "--detections", "-"])
    assert code == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["image"] for r in records] == ["0001.jpg", "test.jpg"]
    assert all(r["time"] is None for r in records)
    assert sorted(p.name for p in out.iterdir()) == ["0001.jpg", "test.jpg"]
    assert read_image(out / "test.jpg").shape == (720, 1280, 3)


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: [str(tmp / "missing.mp4")], "missing.mp4: no such file"),
        (lambda tmp: [str(tmp / "notes.mp4")], "notes.mp4: not a video"),
        (lambda tmp: [str(tmp / "empty")], "folder holds no images"),
        (lambda tmp: [str(tmp / "photo.png"), "--cfg", "x.cfg"], "--cfg needs --weights"),
        (lambda tmp: [str(tmp / "photo.png"), "--classes", "car,zeppelin"], "zeppelin"),
        (lambda tmp: [str(tmp / "photo.png"), "--conf", "1.5"], "--conf"),
        (lambda tmp: [str(tmp / "photo.png"), "--count-line", "0,0.5,1"], "--count-line"),
        (lambda tmp: [str(tmp / "photo.png"), "--count-line", "a,b,c,d"], "--count-line"),
        (lambda tmp: [str(tmp / "photo.png"), "--count-line", "0,5,90,5"], "--count-line"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    offline_weights, monkeypatch, tmp_path: Path, make_args, message
):
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "empty").mkdir()
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    monkeypatch.chdir(tmp_path)  # where an annotated copy would go by default
    code, _, stderr = run(make_args(tmp_path))
    assert code == 2
    assert stderr.count("\n") == 1 and message in stderr, stderr
    left = {p.name for p in tmp_path.iterdir()} - {"cache"}  # the resolver's cache may appear
    assert left == {"empty", "notes.mp4", "photo.png"}


def test_corrupt_weights_are_one_line_and_no_output(offline_weights, tmp_path: Path):
    cfg = offline_weights / "yolo-fastest/yolo-fastest-1.1-xl.cfg"
    truncated = tmp_path / "broken.weights"
    real = (offline_weights / "yolo-fastest/yolo-fastest-1.1-xl.weights").read_bytes()
    truncated.write_bytes(real[: len(real) // 2])
    image = offline_weights / "yolo-fastest/sample_images/dog.jpg"
    output = tmp_path / "dog_out.jpg"
    code, _, stderr = run(
        [str(image), "--cfg", str(cfg), "--weights", str(truncated), "-o", str(output)]
    )
    assert code == 2 and "broken.weights" in stderr and stderr.count("\n") == 1
    assert not output.exists()


def test_the_input_is_never_overwritten(offline_weights, tmp_path: Path):
    image = tmp_path / "dog.jpg"
    original = (offline_weights / "yolo-fastest/sample_images/dog.jpg").read_bytes()
    image.write_bytes(original)
    for output in (["-o", str(image)], ["--csv", str(image), "--exist-ok"]):
        code, _, stderr = run([str(image), *output])
        assert code == 2 and "overwrite the input" in stderr
    assert image.read_bytes() == original


def _port_nobody_listens_on() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda: "7", "camera 7: cannot be opened"),
        (
            lambda: f"http://127.0.0.1:{_port_nobody_listens_on()}/live.mp4",
            "/live.mp4: cannot open the stream (is the network reachable",
        ),
    ],
    ids=["camera", "stream"],
)
def test_a_source_that_cannot_be_opened_fails_before_any_model_loads(
    monkeypatch, tmp_path: Path, make_source, message
):
    if Path("/dev/video7").exists():
        pytest.skip("this machine has a /dev/video7")
    monkeypatch.setattr(detector, "load_detector", lambda **_: pytest.fail("model loaded"))
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run([make_source(), "--detections", "cars.jsonl"])
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and message in stderr, stderr
    assert list(tmp_path.iterdir()) == []


def test_yolov2_without_its_weights_says_how_to_provide_them(
    offline_weights: Path, monkeypatch, tmp_path: Path
):
    """The cfg resolves from the shared folder; the 194 MB weights do not, and offline the
    download fails: one line naming the file, where to put it and its URL (no "weights option":
    --weights is for one's own --cfg)."""

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    image = offline_weights / "yolo-fastest/sample_images/dog.jpg"
    output = tmp_path / "dog_cars.jpg"
    code, _, stderr = run([str(image), "--model", "yolov2", "--size", "608", "-o", str(output)])
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "yolov2.weights (model yolov2) not found" in stderr
    assert "download failed (no network)" in stderr
    assert "option" not in stderr and weights.ENV_WEIGHTS_DIR in stderr
    assert str(tmp_path / "cache" / "weights" / "yolov2.weights") in stderr
    assert "https://pjreddie.com/media/files/yolov2.weights" in stderr
    assert not output.exists()

"""Tracking evaluation: label files in both formats, and the synthetic scene scored end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from apps.car_detection.results import Detection
from apps.car_detection.track_eval import evaluate_tracking, read_track_labels, render
from apps.car_detection.tracking import Tracking
from shared.errors import InputError
from tests.apps.car_detection import synthetic_scene as scene
from tests.apps.car_detection.test_tracking_pipeline import (
    SETTINGS,
    CountingSceneDetector,
    SceneDetector,
    scene_source,
    write_scene_video,
)

NAMES = {name: number for number, name in enumerate(scene.VEHICLES, start=1)}


def write_mot(path: Path) -> Path:
    """The scene's vehicles as a MOTChallenge gt.txt (frames from 1), noise as an ignored row."""
    lines = []
    for frame in range(scene.FRAMES):
        for name, detection in scene.objects_in(frame):
            x1, y1, x2, y2 = detection.box
            consider = 0 if name == "noise" else 1
            number = NAMES.get(name, 99)
            lines.append(f"{frame + 1},{number},{x1},{y1},{x2 - x1},{y2 - y1},{consider},3,1.0")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_kitti(path: Path) -> Path:
    """The scene as KITTI tracking labels (frames from 0); noise as DontCare."""
    lines = []
    for frame in range(scene.FRAMES):
        for name, detection in scene.objects_in(frame):
            kind = {"car": "Car", "truck": "Truck"}[detection.label]
            track = NAMES.get(name, -1)
            kind = "DontCare" if name == "noise" else kind
            box = " ".join(f"{value:.2f}" for value in detection.box)
            lines.append(f"{frame} {track} {kind} 0 0 -10 {box} -1 -1 -1 -1000 -1000 -1000 -10")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("writer", [write_mot, write_kitti])
def test_both_formats_read_the_same_tracks(tmp_path: Path, writer):
    labels = read_track_labels(writer(tmp_path / "labels.txt"))
    assert labels.format == ("mot" if writer is write_mot else "kitti")
    frames = labels.tracks.frames - labels.first_frame
    # A: 35 visible frames, B and C: 40, D: 37, F: 5.
    assert labels.tracks.frames.size == 35 + 40 + 40 + 37 + 5
    assert np.count_nonzero(labels.tracks.ids == NAMES["D"]) == 37
    assert frames.min() == 0 and frames.max() == scene.FRAMES - 1
    first_b = labels.tracks.boxes[(labels.tracks.ids == NAMES["B"]) & (frames == 0)]
    np.testing.assert_allclose(first_b, [[560, 300, 620, 340]])
    assert labels.ignore.frames.size == 6  # the noise: frame 7, and frames 20-24


@pytest.mark.parametrize("writer", [write_mot, write_kitti])
def test_the_scene_scores_what_the_tracker_reports(tmp_path: Path, writer):
    labels = read_track_labels(writer(tmp_path / "labels.txt"))
    scores = evaluate_tracking(scene_source(), SceneDetector(), labels, Tracking(SETTINGS), batch=4)
    # Every reported box is a labelled one with one id per vehicle. What is missed: the two
    # frames before each track is confirmed (5 vehicles) = 10 of 157 labelled boxes.
    assert (scores.num_truth, scores.matches, scores.misses) == (157, 147, 10)
    assert (scores.false_positives, scores.id_switches) == (0, 0)
    assert scores.mota == pytest.approx(1 - 10 / 157)
    assert scores.idf1 == pytest.approx(2 * 147 / (157 + 147))
    assert scores.motp == pytest.approx(1.0)


class StillDetector:
    """A parked car at (20, 100) and a confident stray box at (300, 380) in every frame."""

    def detect(self, frames):
        car = Detection("car", 2, 0.9, (20.0, 100.0, 80.0, 140.0))
        stray = Detection("car", 2, 0.9, (310.0, 390.0, 390.0, 450.0))
        return [[car, stray] for _ in frames]


@pytest.mark.parametrize(("consider", "false_positives"), [(1, 0), (0, 0), (None, 38)])
def test_predictions_inside_ignored_regions_are_dropped(tmp_path: Path, consider, false_positives):
    # The stray is labelled as a car (consider 1), as a region to ignore (0), or not at all.
    # It is followed from frame 2 on like the parked car: 38 boxes.
    rows = [f"{f + 1},1,20,100,60,40,1,3,1" for f in range(scene.FRAMES)]
    if consider is not None:
        rows += [f"{f + 1},9,300,380,100,80,{consider},3,1" for f in range(scene.FRAMES)]
    path = tmp_path / "gt.txt"
    path.write_text("\n".join(rows))
    scores = evaluate_tracking(scene_source(), StillDetector(), read_track_labels(path))
    assert scores.false_positives == false_positives
    assert scores.matches == 38 + (38 if consider == 1 else 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no labelled rows"),
        ("1,2,three,4,5,6,1,3,1\n", "not a MOTChallenge row"),
        ("0 1 Car 0 0 -10 1 2\n", "four box values"),
        ("x 1 Car 0 0 -10 1 2 3 4\n", "not a KITTI tracking row"),
        ("0 1 Pedestrian 0 0 -10 1 2 3 4\n", "no labelled object"),
    ],
)
def test_bad_label_files_name_the_file_and_line(tmp_path: Path, text: str, message: str):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        read_track_labels(path)
    assert str(path) in str(caught.value)


def test_render_gives_the_scores_and_the_counts(tmp_path: Path):
    labels = read_track_labels(write_mot(tmp_path / "gt.txt"))
    text = render(evaluate_tracking(scene_source(), SceneDetector(), labels, Tracking(SETTINGS)))
    assert f"MOTA {1 - 10 / 157:.3f}" in text
    assert "147 of 157 labelled boxes found in 40 frames: 10 missed, 0 false" in text


# --- detect-cars-eval --track -------------------------------------------------------------

# What the command reports on the scene (its own tracker settings: birth after 3 frames, as in
# SETTINGS): every box found but the two before each of the 5 tracks is confirmed, one id each.
SCENE_MOTA = 1 - 10 / 157
SCENE_IDF1 = 2 * 147 / (157 + 147)


def write_frames(folder: Path) -> Path:
    from shared.images import write_image

    folder.mkdir(parents=True)
    for frame in scene_source().frames:
        write_image(folder / f"{frame.index + 1:06d}.png", frame.rgb)
    return folder


def evaluate_track(args: list[str]):
    from click.testing import CliRunner

    from apps.car_detection.eval_cli import main

    return CliRunner().invoke(main, ["--track", *args])


@pytest.fixture
def stand_in(monkeypatch) -> None:
    from apps.car_detection import detector

    monkeypatch.setattr(detector, "load_detector", lambda **_: SceneDetector())


def test_eval_track_scores_a_motchallenge_sequence(tmp_path: Path, stand_in, monkeypatch):
    """``MOT17-13/img1`` + ``MOT17-13/gt/gt.txt``: the sequence folder alone is enough."""
    sequence = tmp_path / "SCENE-01"
    write_frames(sequence / "img1")
    (sequence / "gt").mkdir()
    write_mot(sequence / "gt" / "gt.txt")
    monkeypatch.chdir(tmp_path)
    result = evaluate_track([str(sequence), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert (scores["num_truth"], scores["matches"], scores["id_switches"]) == (157, 147, 0)
    assert scores["mota"] == pytest.approx(SCENE_MOTA, abs=5e-5)  # JSON keeps 4 places
    assert scores["idf1"] == pytest.approx(SCENE_IDF1, abs=5e-5)
    assert scores["format"] == "mot" and scores["labels"] == str(sequence / "gt" / "gt.txt")
    report = Path(scores["outputs"]["report"])
    assert report == Path("SCENE-01_eval/report.json")
    assert json.loads(report.read_text())["mota"] == pytest.approx(SCENE_MOTA, abs=5e-5)


def test_eval_track_finds_kitti_labels_beside_the_frames(tmp_path: Path, stand_in):
    frames = write_frames(tmp_path / "training" / "image_02" / "0003")
    (tmp_path / "training" / "label_02").mkdir()
    write_kitti(tmp_path / "training" / "label_02" / "0003.txt")
    result = evaluate_track([str(frames), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert f"MOTA {SCENE_MOTA:.3f}  IDF1 {SCENE_IDF1:.3f}" in result.stdout
    assert "(kitti)" in result.stdout and (tmp_path / "out" / "report.json").is_file()


def test_eval_track_scores_a_video(tmp_path: Path, monkeypatch):
    from apps.car_detection import detector

    video = write_scene_video(tmp_path / "scene.avi")
    monkeypatch.setattr(detector, "load_detector", lambda **_: CountingSceneDetector())
    labels = write_mot(tmp_path / "scene_gt.txt")
    result = evaluate_track([str(video), "--labels", str(labels), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert f"MOTA {SCENE_MOTA:.3f}  IDF1 {SCENE_IDF1:.3f}" in result.stdout
    assert "147 of 157 labelled boxes found in 40 frames" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{frames}", "--labels", "{bad}"], "bad.txt:1: not a MOTChallenge row"),
        (["{frames}"], "no tracking labels found"),
        (["{tmp}/missing.mp4", "--labels", "{bad}"], "missing.mp4: no such video or folder"),
        (["{frames}", "--split", "valid"], "--split is for datasets"),
        (["{frames}", "--class-map", "Car=car"], "--class-map is for datasets"),
    ],
    ids=["bad-labels", "no-labels", "no-sequence", "split", "class-map"],
)
def test_eval_track_bad_input_is_one_line_before_the_model_loads(
    tmp_path: Path, monkeypatch, args: list[str], message: str
):
    from apps.car_detection import detector

    monkeypatch.setattr(detector, "load_detector", lambda **_: pytest.fail("model loaded"))
    frames = write_frames(tmp_path / "img1")
    (tmp_path / "bad.txt").write_text("1,2,3\n")
    given = [a.format(frames=frames, bad=tmp_path / "bad.txt", tmp=tmp_path) for a in args]
    result = evaluate_track(given)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert message in result.stderr and result.stderr.startswith("error: ")


def test_eval_without_track_names_what_a_video_needs(tmp_path: Path):
    from click.testing import CliRunner

    from apps.car_detection.eval_cli import main

    video = tmp_path / "road.mp4"
    video.write_bytes(b"not read")
    for args, message in (
        ([str(video)], "road.mp4: a file, not a dataset folder (a video needs --track)"),
        ([str(tmp_path), "--labels", str(video)], "--labels needs --track"),
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1
        assert message in result.stderr

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
from tests.apps.car_detection.test_tracking_pipeline import SETTINGS, SceneDetector, scene_source

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


def test_the_entry_scores_a_folder_of_frames(tmp_path: Path, monkeypatch):
    from click.testing import CliRunner

    from apps.car_detection import detector, track_eval_cli
    from shared.images import write_image

    frames = tmp_path / "img1"
    frames.mkdir()
    for frame in scene_source().frames:
        write_image(frames / f"{frame.index + 1:06d}.png", frame.rgb)
    monkeypatch.setattr(detector, "load_detector", lambda **_: SceneDetector())
    labels = write_mot(tmp_path / "gt.txt")
    result = CliRunner().invoke(track_eval_cli.main, [str(frames), str(labels), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    # The command's own settings (birth after 3 frames, as in SETTINGS): the same figures.
    assert (scores["num_truth"], scores["matches"], scores["id_switches"]) == (157, 147, 0)

    (tmp_path / "bad.txt").write_text("1,2,3\n")
    result = CliRunner().invoke(track_eval_cli.main, [str(frames), str(tmp_path / "bad.txt")])
    assert result.exit_code == 2 and "bad.txt:1: not a MOTChallenge row" in result.stderr

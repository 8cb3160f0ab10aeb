"""The tracker on the hand-made scene of ``synthetic_scene``: ids, counts and crossings exact."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from apps.car_detection.results import Detection, FrameResult
from apps.car_detection.tracker import ByteTracker, TrackerSettings
from apps.car_detection.tracking import CountLine, LineCounter, Tracking
from shared.errors import InputError
from shared.frames import Frame
from tests.apps.car_detection import synthetic_scene as scene

# The scene is drawn for these settings (weak B at 0.25 lies between low and high).
SETTINGS = TrackerSettings(high=0.4, low=0.1, birth=0.5, min_hits=3, lost_seconds=1.0)


def track_scene(stride: int = 1) -> tuple[ByteTracker, dict[str, list[tuple[int, int]]]]:
    """Run the scene; per object, the ``(frame, track id)`` of each detection reported for it."""
    tracker = ByteTracker(SETTINGS)
    seen = defaultdict(list)
    for frame in range(0, scene.FRAMES, stride):
        objects = scene.objects_in(frame)
        reported = tracker.update(frame, [detection for _, detection in objects])
        for detection in reported:
            name = next(n for n, d in objects if d.box == detection.box)
            seen[name].append((frame, detection.track))
    return tracker, seen


@pytest.mark.parametrize(
    ("stride", "vehicles"),
    [(1, scene.VEHICLES), (2, scene.VEHICLES), (3, ("A", "B", "C", "D"))],  # F: 2 sightings
)
def test_each_vehicle_keeps_one_id_through_crossing_occlusion_and_weak_frames(stride, vehicles):
    tracker, seen = track_scene(stride)
    ids = {name: {track for _, track in seen[name]} for name in vehicles}
    assert all(len(ids[name]) == 1 for name in vehicles), ids
    ordered = sorted(track for (track,) in ids.values())
    assert ordered == list(range(1, len(vehicles) + 1))  # one id each, no gaps
    assert set(seen) == set(vehicles) and len(tracker.tracks) == len(vehicles)


def test_when_tracks_are_reported():
    _, seen = track_scene()
    frames = {name: [frame for frame, _ in seen[name]] for name in scene.VEHICLES}
    # Born after 3 matched frames; A comes back the frame it reappears, with its id.
    assert frames["A"] == [*range(2, 15), *range(20, 40)]
    # B's weak frames 10-13 are kept by the second association stage.
    assert frames["B"] == list(range(2, 40))
    assert frames["D"] == [*range(2, 16), *range(19, 40)]
    assert frames["F"] == [32, 33, 34]


def test_without_the_second_stage_weak_frames_are_lost():
    tracker = ByteTracker(TrackerSettings(high=0.4, low=0.3, birth=0.5))
    reported_b = []
    for frame in range(scene.FRAMES):
        for detection in tracker.update(frame, scene.detections(frame)):
            if detection.box[1] == 300:  # B's row
                reported_b.append(frame)
    assert not set(range(10, 14)) & set(reported_b)


def test_unique_counts_use_the_track_length_and_the_majority_class():
    tracker, _ = track_scene()
    assert tracker.unique(min_frames=10) == scene.UNIQUE
    assert tracker.unique(min_frames=1) == scene.UNIQUE_ANY_LENGTH


@pytest.mark.parametrize("stride", [1, 2])
def test_line_crossings_per_direction_and_class(stride: int):
    tracking = Tracking(SETTINGS, CountLine.parse(scene.LINE), min_frames=10)
    tracker = tracking.tracker
    counter = LineCounter(*tracking.line.in_pixels(scene.WIDTH, scene.HEIGHT))
    names = {}
    for frame in range(0, scene.FRAMES, stride):
        objects = scene.objects_in(frame)
        for detection in tracker.update(frame, [d for _, d in objects]):
            names[detection.track] = next(n for n, d in objects if d.box == detection.box)
        counter.update({track.id: track.trail[-1] for track in tracker.active})
    assert {names[track]: way for track, way in counter.crossed.items()} == scene.CROSSINGS
    assert counter.totals() == {"right": 2, "left": 2}


def test_the_summary_files_crossings_under_the_track_class():
    tracking = Tracking(SETTINGS, CountLine.parse("0.5,0,0.5,1"), min_frames=10)
    blank = np.zeros((scene.HEIGHT, scene.WIDTH, 3), np.uint8)
    stream = (
        (Frame(f, f / 25, None, blank), FrameResult(f, f / 25, None, scene.detections(f)), True)
        for f in range(scene.FRAMES)
    )
    results = [result for _, result, _ in tracking.follow(stream)]
    assert all(d.track is not None for r in results for d in r.detections)
    assert results[-1].count_line.totals == {"right": 2, "left": 2}
    summary = tracking.summary()
    assert summary["unique"] == scene.UNIQUE and summary["tracks"] == 5
    assert summary["line"]["from"] == [320.0, 0.0]
    assert summary["line"]["crossings"] == {
        "car": {"right": 1, "left": 2},
        "truck": {"right": 1, "left": 0},
    }


@pytest.mark.parametrize(
    ("start", "end", "names"),
    [
        ((0, 100), (640, 100), ("down", "up")),
        ((640, 100), (0, 100), ("up", "down")),
        ((320, 0), (320, 480), ("left", "right")),
    ],
)
def test_direction_names_follow_the_motion(start, end, names):
    counter = LineCounter(start, end)
    counter.update({1: (50, 50), 2: (60, 150), 3: (300, 10)})
    counter.update({1: (50, 150), 2: (60, 50), 3: (340, 10)})
    ways = counter.crossed
    if start[1] == end[1]:  # horizontal: 1 goes down, 2 goes up, 3 stays above
        assert (ways[1], ways[2], 3 in ways) == ("down", "up", False)
    else:  # vertical: 3 goes right; 1 and 2 never reach x = 320
        assert ways == {3: "right"}
    assert set(counter.directions) == set(names)


def test_a_crossing_beyond_the_ends_of_the_line_does_not_count():
    counter = LineCounter((0, 100), (200, 100))
    counter.update({1: (300, 50), 2: (150, 50)})
    counter.update({1: (300, 150), 2: (150, 150)})
    counter.update({2: (150, 50)})  # back up again: still counted once
    assert counter.crossed == {2: "down"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3", "expected x1,y1,x2,y2"),
        ("a,b,c,d", "expected x1,y1,x2,y2"),
        ("0,nan,1,1", "expected x1,y1,x2,y2"),
        ("10,-5,20,30", "negative"),
        ("0.5,0.5,0.5,0.5", "same point"),
    ],
)
def test_a_malformed_count_line_names_the_option(text: str, message: str):
    with pytest.raises(InputError, match=f"--count-line.*{message}"):
        CountLine.parse(text)


def test_count_line_in_pixels_or_fractions():
    assert CountLine.parse("0,0.5,1,0.5").in_pixels(640, 480) == ((0, 240), (640, 240))
    assert CountLine.parse("10,20,300,20").in_pixels(640, 480) == ((10, 20), (300, 20))
    with pytest.raises(InputError, match="outside the 640x480 frame"):
        CountLine.parse("10,20,700,20").in_pixels(640, 480)


def test_frames_must_increase_and_settings_are_checked():
    tracker = ByteTracker()
    tracker.update(3, [Detection("car", 2, 0.9, (0, 0, 10, 10))])
    with pytest.raises(ValueError, match="frames must increase"):
        tracker.update(3, [])
    with pytest.raises(InputError, match="low <= high"):
        TrackerSettings(high=0.2, low=0.3)


def test_a_car_box_and_a_truck_box_on_one_van_make_one_track():
    tracker = ByteTracker(SETTINGS)
    for frame in range(12):
        x = 100 + 5 * frame
        van = [
            Detection("truck", 7, 0.6, (x, 100, x + 80, 160)),
            Detection("car", 2, 0.55, (x + 2, 101, x + 80, 161)),  # IoU 0.95 with the truck
        ]
        reported = tracker.update(frame, van)
    assert [d.label for d in reported] == ["truck"] and len(tracker.tracks) == 1


@pytest.mark.parametrize(("fps", "same_id"), [(30.0, True), (10.0, False)])
def test_a_lost_track_waits_a_time_not_a_number_of_frames(fps: float, same_id: bool):
    # Hidden for frames 5-19 (15 frames): 0.5 s at 30 frames/s, 1.5 s at 10 frames/s.
    tracker = ByteTracker(SETTINGS, fps=fps)
    assert tracker.max_age == round(fps * SETTINGS.lost_seconds)
    ids = set()
    for frame in range(25):
        car = [] if 5 <= frame < 20 else [Detection("car", 2, 0.9, (100, 100, 160, 140))]
        found = tracker.update(frame, car)
        ids |= {d.track for d in found}
    assert ids == ({1} if same_id else {1, 2})


def test_a_second_box_on_part_of_a_tracked_car_starts_no_track():
    tracker = ByteTracker(SETTINGS)
    for frame in range(12):
        x = 100 + 5 * frame
        car = Detection("car", 2, 0.9, (x, 100, x + 100, 160))
        rear = Detection("car", 2, 0.6, (x + 60, 105, x + 100, 160))  # IoU 0.37, nested
        reported = tracker.update(frame, [car, rear] if frame >= 3 else [car])
    assert [d.box for d in reported] == [car.box] and len(tracker.tracks) == 1
    # A car beside it, touching it, is a car.
    tracker.update(12, [car, Detection("car", 2, 0.9, (x + 100, 100, x + 200, 160))])
    assert len(tracker.tentative) == 1

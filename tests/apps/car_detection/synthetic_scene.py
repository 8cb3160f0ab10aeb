"""A 40-frame road scene drawn by hand, whose ids, counts and line crossings are known exactly.

Frame 640x480. A vertical counting line at x = 320 (``LINE``).
- A, car: drives right along y = 100; hidden in frames 15-19; crosses the line rightwards.
- B, car: drives left along y = 300; detected only weakly (score 0.25) in frames 10-13;
  crosses leftwards.
- C, truck (one frame seen as a car): drives right along y = 200, crossing the line at frame 15.
- D, car: drives left along y = 212, overlapping C as they pass; hidden behind C in frames
  16-18, when it crosses the line leftwards.
- F, car: parked at the bottom, seen in frames 30-34 only: a real track, too short to count.
- noise: a confident false detection in frame 7 only, and a weak one in frames 20-24:
  neither may become a track.
"""

from __future__ import annotations

from apps.car_detection.results import Detection

WIDTH, HEIGHT, FRAMES = 640, 480, 40
LINE = "320,0,320,480"
VEHICLES = ("A", "B", "C", "D", "F")
UNIQUE = {"car": 3, "truck": 1}  # tracks of at least 10 frames; F lives 5
UNIQUE_ANY_LENGTH = {"car": 4, "truck": 1}
CROSSINGS = {"A": "right", "B": "left", "C": "right", "D": "left"}


def _box(x: float, y: float, width: float, height: float) -> tuple[float, float, float, float]:
    return (float(x), float(y), float(x + width), float(y + height))


def objects_in(frame: int) -> list[tuple[str, Detection]]:
    """``(name, detection)`` of every object the detector finds in ``frame``."""
    found = []
    if not 15 <= frame <= 19:
        found.append(("A", Detection("car", 2, 0.9, _box(20 + 10 * frame, 100, 60, 40))))
    score_b = 0.25 if 10 <= frame <= 13 else 0.85
    found.append(("B", Detection("car", 2, score_b, _box(560 - 10 * frame, 300, 60, 40))))
    label_c = ("car", 2) if frame == 5 else ("truck", 7)
    found.append(("C", Detection(*label_c, 0.8, _box(100 + 12 * frame, 200, 70, 50))))
    if not 16 <= frame <= 18:
        found.append(("D", Detection("car", 2, 0.7, _box(500 - 12 * frame, 212, 70, 50))))
    if 30 <= frame <= 34:
        found.append(("F", Detection("car", 2, 0.9, _box(100, 420, 60, 40))))
    if frame == 7:
        found.append(("noise", Detection("car", 2, 0.6, _box(300, 400, 50, 30))))
    if 20 <= frame <= 24:
        found.append(("noise", Detection("car", 2, 0.2, _box(600, 20, 30, 30))))
    return found


def detections(frame: int) -> list[Detection]:
    return [detection for _, detection in objects_in(frame)]

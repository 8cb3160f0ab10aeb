"""What ``--track`` costs: ``detect-cars VIDEO`` against ``detect-cars VIDEO --track``.

Both run the whole pipeline as the command does (decoding ahead, batched detection, drawing
and encoding the annotated video in the background writer), with the command's own settings:
score threshold 0.25 without tracking, 0.1 with it (the tracker's second stage needs the weak
boxes), and the counting line drawn when ``--count-line`` is given. Rounds alternate which
mode goes first; the figure is the median of the per-round ratios, so load that comes and
goes on a shared machine touches both sides alike. The goal: tracking keeps at least 90 % of
the frame rate.

Also timed apart: the tracker alone (``ByteTracker.update`` plus the line counter) on the
detections of the same video, in milliseconds per frame.

Usage (repository root, ../shared beside it):
    python bench/bench_track.py [--video PATH] [--rounds 5] [--count-line 0,0.6,1,0.6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from apps.car_detection.cli import DEFAULT_CONF
from apps.car_detection.detector import load_detector
from apps.car_detection.pipeline import detect_stream, run
from apps.car_detection.sinks import AnnotatedVideoSink
from apps.car_detection.tracker import TrackerSettings
from apps.car_detection.tracking import CountLine, Tracking
from shared.frames import open_source

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONVNET_APPS_SHARED", REPO_ROOT.parent / "shared"))


def detect_cars(video: Path, detector, line: CountLine | None, track: bool, out: Path) -> float:
    """Frames per second of one whole run, as ``detect-cars`` does it."""
    source = open_source(str(video), prefetch=16)
    sink = AnnotatedVideoSink(out, source.fps, source.width, source.height)
    tracking = Tracking(line=line, fps=source.fps) if track else None
    started = time.perf_counter()
    summary = run(source, detector, [sink], batch=8, tracking=tracking)
    return summary.frames / (time.perf_counter() - started)


def tracker_alone(video: Path, detector, line: CountLine | None, repeats: int = 5) -> float:
    """Milliseconds per frame of tracking and line counting on precomputed detections."""
    source = open_source(str(video))
    frames = [(frame, result, True) for frame, result, _ in detect_stream(source.frames, detector)]
    source.close()
    best = float("inf")
    for _ in range(repeats):
        tracking = Tracking(line=line, fps=source.fps)
        started = time.perf_counter()
        for _ in tracking.follow(iter(frames)):
            pass
        best = min(best, time.perf_counter() - started)
    return 1000 * best / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--video", type=Path, default=SHARED / "data/cars/video/udacity_solidWhiteRight.mp4"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count-line", default="0,0.6,1,0.6")
    args = parser.parse_args()
    os.environ.setdefault("CONVNET_APPS_WEIGHTS_DIR", str(SHARED / "weights"))
    line = CountLine.parse(args.count_line) if args.count_line else None

    plain = load_detector(conf=DEFAULT_CONF)
    tracked = load_detector(conf=TrackerSettings.low)
    print(f"{args.video.name}, load average before: {os.getloadavg()[0]:.2f}")
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.mp4"
        detect_cars(args.video, plain, None, False, out)  # warm-up: tracing, caches
        for index in range(args.rounds):
            order = (False, True) if index % 2 == 0 else (True, False)
            rates = {}
            for track in order:
                detector = tracked if track else plain
                rates[track] = detect_cars(args.video, detector, line, track, out)
            ratios.append(rates[True] / rates[False])
            print(
                f"round {index + 1}: detect-cars {rates[False]:6.1f} frames/s, "
                f"--track {rates[True]:6.1f} frames/s, ratio {ratios[-1]:.3f}"
            )
    milliseconds = tracker_alone(args.video, tracked, line)
    print(f"tracker + line counter alone: {milliseconds:.2f} ms per frame")
    print(
        f"median ratio --track / without: {statistics.median(ratios):.3f} "
        f"(goal >= 0.90), load average after: {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()

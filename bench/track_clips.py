"""``detect-cars --track`` on the real road footage in ../shared: unique counts to check by eye.

Runs the command on ``udacity_test_video.mp4``, ``udacity_solidWhiteRight.mp4`` and the 120
driveai dashcam frames assembled into a video (at 10 frames/s: the frames are about a second
apart, so a car moves far between two of them), each with ``--track`` and a counting line,
and prints the summary's unique vehicles and crossings. The annotated videos and JSON lines go
to ``--out`` to be looked at; ``--frames`` also saves a few annotated frames there as PNG.

Usage (repository root, ../shared beside it):
    python bench/track_clips.py [--out track_clips] [--vid-stride 1] [--frames 30,120,200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

from shared.images import read_image
from shared.video import VideoReader, VideoWriter

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONVNET_APPS_SHARED", REPO_ROOT.parent / "shared"))
DRIVEAI_FPS = 10.0


def driveai_video(folder: Path) -> Path:
    """The 120 consecutive driveai frames (1280x720) as one video."""
    path = folder / "driveai_0001_0120.mp4"
    with VideoWriter(path, DRIVEAI_FPS, 1280, 720) as writer:
        for number in range(1, 121):
            writer.write(read_image(SHARED / f"data/cars/driveai/images/{number:04d}.jpg"))
    return path


def save_frames(video: Path, numbers: list[int], stem: Path) -> None:
    with VideoReader(video) as reader:
        for index, rgb in enumerate(reader):
            if index in numbers:
                cv2.imwrite(f"{stem}_{index:04d}.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("track_clips"))
    parser.add_argument("--vid-stride", type=int, default=1)
    parser.add_argument("--frames", default="", help="frame numbers to save as PNG")
    parser.add_argument("--count-line", default="0,0.75,1,0.75")
    args = parser.parse_args()
    os.environ.setdefault("CONVNET_APPS_WEIGHTS_DIR", str(SHARED / "weights"))
    args.out.mkdir(parents=True, exist_ok=True)
    numbers = [int(n) for n in args.frames.split(",") if n]
    with tempfile.TemporaryDirectory() as folder:
        clips = [
            SHARED / "data/cars/video/udacity_test_video.mp4",
            SHARED / "data/cars/video/udacity_solidWhiteRight.mp4",
            driveai_video(Path(folder)),
        ]
        for clip in clips:
            annotated = args.out / f"{clip.stem}_track.mp4"
            command = [
                *(sys.executable, "-m", "apps.car_detection.cli", str(clip), "--track"),
                *("--count-line", args.count_line, "--vid-stride", str(args.vid_stride)),
                *("-o", str(annotated), "--detections", str(args.out / f"{clip.stem}.jsonl")),
            ]
            print("$ detect-cars " + " ".join(command[3:]), flush=True)
            subprocess.run(command, check=True)
            if numbers:
                save_frames(annotated, numbers, args.out / clip.stem)


if __name__ == "__main__":
    main()

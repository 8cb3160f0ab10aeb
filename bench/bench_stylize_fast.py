"""How fast a trained style paints, against ``stylize``'s optimisation of the same frame.

Figures, all measured in the same run:

1. The peer: ``stylize`` (SqueezeNet, its default 300 L-BFGS iterations) on one 640x360
   frame of ``udacity_solidWhiteRight.mp4``, wall-clock seconds (``--peer-iterations`` fewer
   for a quick check; the ratio is then printed as measured, per iteration and scaled to 300).
2. One 640x360 frame through each network width (``full``, ``light``): the median of
   ``--repeats`` forward passes after a warm-up, and the ratio peer / ours (goal: at least 500).
3. The whole video (960x540, 221 frames) end to end with ``stylize --model``'s own function
   (decode, paint, encode, write), light network: frames per second (goal: at least 10).

The networks are untrained unless ``--light`` / ``--full`` name ``.keras`` files from
``stylize-train`` (the arithmetic is the same). The load average is printed before and after,
since the machine may be shared.

    CONVNET_APPS_WEIGHTS_DIR=../shared/weights PYTHONPATH=. python bench/bench_stylize_fast.py \\
        [--light starry_light.keras] [--peer-iterations 300] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from apps.style_transfer import features as feature_networks
from apps.style_transfer.fast import StyleNetwork
from apps.style_transfer.feedforward import load_painter, stylize_with_model
from apps.style_transfer.optimize import stylize_image
from apps.style_transfer.settings import TransferSettings
from shared.images import read_image
from shared.video import VideoReader

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIDEO = SHARED / "data" / "cars" / "video" / "udacity_solidWhiteRight.mp4"
STYLE = SHARED / "data" / "style" / "neural_style_inputs" / "starry_night.jpg"


def load() -> str:
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def frame_640x360() -> np.ndarray:
    with VideoReader(VIDEO) as reader:
        frame = next(iter(reader))
    return cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA)


def model_file(path: str | None, width: str) -> str:
    """``path``, or an untrained network of ``width`` saved in a temporary folder."""
    if path:
        return path
    model = StyleNetwork(width, style_name=f"untrained-{width}")
    model(np.zeros((1, 32, 32, 3), np.float32))
    saved = str(Path(tempfile.mkdtemp()) / f"untrained-{width}.keras")
    model.save(saved)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--light", help="a light .keras style [default: untrained]")
    parser.add_argument("--full", help="a full .keras style [default: untrained]")
    parser.add_argument("--peer-iterations", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-video", action="store_true")
    args = parser.parse_args()

    print(f"start: {load()}, {os.cpu_count()} cores", flush=True)
    frame = frame_640x360()
    style = read_image(STYLE)
    chosen, weights = feature_networks.choose_network("squeezenet", print)
    features, _, _ = feature_networks.build_features(chosen, weights)
    settings = TransferSettings(size=640, iterations=args.peer_iterations)
    started = time.perf_counter()
    stylize_image(features, frame, [style], settings)
    peer = time.perf_counter() - started
    per_iteration = peer / args.peer_iterations
    peer_300 = per_iteration * 300
    scaled = "" if args.peer_iterations == 300 else f" (scaled from {args.peer_iterations})"
    print(
        f"peer: stylize 640x360, SqueezeNet, {args.peer_iterations} L-BFGS iterations: "
        f"{peer:.1f} s ({per_iteration * 1000:.0f} ms an iteration; 300 iterations "
        f"{peer_300:.1f} s{scaled}); {load()}",
        flush=True,
    )

    batch = frame[np.newaxis]
    for width, path in (("full", args.full), ("light", args.light)):
        stylizer = load_painter(model_file(path, width))
        stylizer(batch)  # compile and warm up
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            stylizer(batch)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(
            f"{width}: one 640x360 frame {median * 1000:.1f} ms (median of {args.repeats}, "
            f"fastest {min(times) * 1000:.1f} ms): {peer_300 / median:.0f}x faster than "
            f"300 iterations of stylize (goal 500x); {load()}",
            flush=True,
        )

    if args.skip_video:
        return
    light_path = model_file(args.light, "light")
    with tempfile.TemporaryDirectory() as folder:
        cpu = time.process_time()
        started = time.perf_counter()
        result = stylize_with_model(str(VIDEO), light_path, Path(folder) / "out.mp4")
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
    print(
        f"video: {VIDEO.name} {result.size[1]}x{result.size[0]}, {result.frames} frames, light "
        f"network, end to end {result.frames_per_second:.1f} frames/s (goal 10; "
        f"{result.seconds:.1f} s painting and writing, {wall:.1f} s with loading; "
        f"CPU time {cpu:.1f} s); {load()}",
        flush=True,
    )


if __name__ == "__main__":
    main()

"""How fast a trained style paints, against ``stylize``'s optimisation; where a video's ms go.

Every measurement runs in a fresh process of its own; the load average is printed with each.

1. Ratio (goal: one 640x360 frame at least 500x faster than a 300-iteration ``stylize``).
   ``--rounds`` rounds, each starting two processes one after the other, the first of the two
   alternating between rounds:
   - the peer: ``stylize``'s optimisation (SqueezeNet, L-BFGS, ``--peer-iterations``, by
     default its 300) of the first frame of ``udacity_solidWhiteRight.mp4`` at 640x360;
   - ours: the same frame through the trained style (``load_painter``: OpenVINO with the
     compiled model cached, as ``stylize --model`` runs it): median of ``--repeats`` passes
     after a warm-up, light and full width.
   The summary is the median of the rounds' ratios (a peer run with fewer iterations is
   scaled to 300, per iteration, and says so).
2. Video (goal: at least 10 frames/s end to end on that video, 960x540, light network):
   the stages alone, then the whole of ``stylize --model``'s function (decoding ahead,
   painting, encoding in a background writer), each as wall-clock frames/s and CPU time per
   frame (all threads of the process: on a busy machine the steadier figure).

The networks are untrained unless ``--light`` / ``--full`` name ``.keras`` files from
``stylize-train`` (the arithmetic is the same).

    CONVNET_APPS_WEIGHTS_DIR=../shared/weights python bench/bench_stylize_fast.py \\
        [--light starry_light.keras] [--rounds 3] [--peer-iterations 300] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONVNET_APPS_SHARED", REPO_ROOT.parent / "shared"))
VIDEO = SHARED / "data" / "cars" / "video" / "udacity_solidWhiteRight.mp4"
STYLE = SHARED / "data" / "style" / "neural_style_inputs" / "starry_night.jpg"


def load() -> str:
    return "load " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def frame_640x360():
    import cv2

    from shared.video import VideoReader

    with VideoReader(VIDEO) as reader:
        frame = next(iter(reader))
    return cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA)


def model_file(path: str | None, width: str, folder: Path) -> str:
    """``path``, or an untrained network of ``width`` saved in ``folder``."""
    if path:
        return path
    import numpy as np

    from apps.style_transfer.fast import StyleNetwork

    model = StyleNetwork(width, style_name=f"untrained-{width}")
    model(np.zeros((1, 32, 32, 3), np.float32))
    saved = folder / f"untrained-{width}.keras"
    model.save(saved)
    return str(saved)


def peer_child(args: argparse.Namespace, folder: Path) -> dict:
    """``stylize``'s optimisation of the 640x360 frame: wall-clock seconds."""
    from apps.style_transfer import features as feature_networks
    from apps.style_transfer.optimize import stylize_image
    from apps.style_transfer.settings import TransferSettings
    from shared.images import read_image

    frame, style = frame_640x360(), read_image(STYLE)
    chosen, weights = feature_networks.choose_network("squeezenet", lambda message: None)
    features, _, _ = feature_networks.build_features(chosen, weights)
    settings = TransferSettings(size=640, iterations=args.peer_iterations)
    started = time.perf_counter()
    stylize_image(features, frame, [style], settings)
    return {"seconds": time.perf_counter() - started}


def ours_child(args: argparse.Namespace, folder: Path) -> dict:
    """The 640x360 frame through each width: median and fastest ms of ``--repeats`` passes."""
    from apps.style_transfer.feedforward import load_painter

    batch = frame_640x360()[None]
    result = {}
    for width, path in (("light", args.light), ("full", args.full)):
        paint = load_painter(model_file(path, width, folder), notify=lambda message: None)
        paint(batch)  # OpenVINO allocates on the first pass
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            paint(batch)
            times.append(time.perf_counter() - started)
        result[width] = {"ms": 1000 * statistics.median(times), "fastest_ms": 1000 * min(times)}
        result["runtime"] = paint.runtime
    return result


def _timed(work) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process) of ``work()``."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    work()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


def video_child(args: argparse.Namespace, folder: Path) -> dict:
    """The stages of a video alone, then end to end: frames/s and CPU ms a frame each."""
    import numpy as np

    from apps.style_transfer.feedforward import VIDEO_BATCH, load_painter, stylize_with_model
    from shared.video import VideoReader, VideoWriter

    light = model_file(args.light, "light", folder)
    with VideoReader(VIDEO) as reader:  # warms the file cache and gives the frames to paint
        frames = list(reader)
        fps, width, height = reader.fps, reader.width, reader.height
    count = len(frames)
    stages = {}

    def decode() -> None:
        with VideoReader(VIDEO, prefetch=0) as reader:
            for _ in reader:
                pass

    stages["decode"] = _timed(decode)
    for hint, batch in (("throughput", VIDEO_BATCH), ("latency", 1)):
        paint = load_painter(light, hint=hint, notify=lambda message: None)
        paint(np.stack(frames[:batch]))  # allocate

        def infer(paint=paint, batch=batch) -> None:
            for start in range(0, count, batch):
                paint(np.stack(frames[start : start + batch]))

        stages[f"paint ({paint.runtime}, {hint}, {batch} at once)"] = _timed(infer)

    def encode() -> None:
        with VideoWriter(folder / "encoded.mp4", fps, width, height) as writer:
            for frame in frames:
                writer.write(frame)

    stages["encode"] = _timed(encode)
    result = {}
    stages["end to end (stylize --model)"] = _timed(
        lambda: result.update(
            stylize_with_model(
                str(VIDEO), light, folder / "out.mp4", notify=lambda m: None
            ).as_dict()
        )
    )
    assert result["frames"] == count, result
    return {
        "frames": count,
        "size": f"{width}x{height}",
        "stages": {
            name: {"fps": count / wall, "cpu_ms": 1000 * cpu / count}
            for name, (wall, cpu) in stages.items()
        },
    }


CHILDREN = {"peer": peer_child, "ours": ours_child, "video": video_child}


def _child(kind: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", kind]
    command += ["--peer-iterations", str(args.peer_iterations), "--repeats", str(args.repeats)]
    for flag in ("light", "full"):
        if getattr(args, flag):
            command += [f"--{flag}", getattr(args, flag)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--light", help="a light .keras style [default: untrained]")
    parser.add_argument("--full", help="a full .keras style [default: untrained]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-iterations", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-ratio", action="store_true", help="the video figures only")
    parser.add_argument("--skip-video", action="store_true", help="the ratio only")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("CONVNET_APPS_WEIGHTS_DIR", str(SHARED / "weights"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.child:
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(CHILDREN[args.child](args, Path(folder))))
        return

    print(f"start: {load()}, {os.cpu_count()} cores", flush=True)
    _child("ours", args)  # compiles the networks into the cache, outside the timed rounds
    scale = 300 / args.peer_iterations
    ratios: dict[str, list[float]] = {"light": [], "full": []}
    for number in range(0 if args.skip_ratio else args.rounds):
        before = load()
        order = ["peer", "ours"] if number % 2 == 0 else ["ours", "peer"]
        runs = {kind: _child(kind, args) for kind in order}
        peer_300 = runs["peer"]["seconds"] * scale
        line = (
            f"round {number + 1} ({before}, {order[0]} first): stylize 640x360 "
            f"{args.peer_iterations} iterations {runs['peer']['seconds']:.1f} s"
        )
        line += "" if scale == 1 else f" (x{scale:g} for 300: {peer_300:.1f} s)"
        for width in ("light", "full"):
            ms = runs["ours"][width]["ms"]
            ratios[width].append(peer_300 / (ms / 1000))
            line += f"; {width} {ms:.1f} ms = {ratios[width][-1]:.0f}x"
        print(f"{line} ({runs['ours']['runtime']})", flush=True)
    if ratios["light"]:
        print(
            f"median of {args.rounds} rounds: one 640x360 frame "
            f"{statistics.median(ratios['light']):.0f}x (light), "
            f"{statistics.median(ratios['full']):.0f}x (full) faster than a 300-iteration "
            f"stylize (goal 500x); {load()}",
            flush=True,
        )
    if args.skip_video:
        return
    before = load()
    video = _child("video", args)
    print(f"video {VIDEO.name} {video['size']}, {video['frames']} frames, light ({before}):")
    for name, figures in video["stages"].items():
        print(f"  {name}: {figures['fps']:.1f} frames/s, CPU {figures['cpu_ms']:.1f} ms a frame")
    print(f"goal: end to end at least 10 frames/s; {load()}")


if __name__ == "__main__":
    main()

"""detect-cars against OpenCV DNN, each in its own process, alternating: frames per second.

Both run the same Darknet model (Yolo-Fastest-1.1-xl at 320x320 by default) on the same real
video, played ``--repeat`` times in a row. Every round starts two fresh processes, one after
the other, the first of the two alternating between rounds:

- the peer imports only OpenCV and NumPy (it checks that TensorFlow and OpenVINO are absent):
  OpenCV's usual loop, read a frame, ``blobFromImage`` + ``forward`` (``readNetFromDarknet``),
  (row, class) pairs over 0.25, ``NMSBoxesBatched`` at 0.45, draw, write the video with the
  codec detect-cars uses; then inference alone on the decoded frames held in memory.
- ours runs the ``detect-cars`` pipeline (``pipeline.run``: decoding ahead, batched detection,
  drawing and encoding in a background writer) on its default runtime with the compiled model
  cached, with Darknet's multi-label rule like the peer; then inference alone (``preprocess``
  + the network on batches of ``--batch`` frames).

Each round prints both rates and their ratio; the summary is the median of the per-round
ratios. The CPU time a frame costs (all threads of the process) is printed too: on a machine
busy with other jobs it is the steadier figure, since a process with more threads than the
other also gets a larger share of busy cores. Start-up is timed too: the whole
``detect-cars one.jpg`` process, cache warm. The load average is printed before every round.

Usage (from the repository root, with the suite installed and ../shared beside it):
    python bench/bench_detect_cars.py [--rounds 5] [--repeat 3] [--batch 8] [--video PATH]
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
MODEL = "yolo-fastest-1.1-xl"
CONF, IOU = 0.25, 0.45


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: what a frame costs whatever else the machine runs."""
    times = os.times()
    return times.user + times.system


def _rates(frames: int, loop: float, cpu: float, held: int, inference: float) -> dict:
    return {"loop": frames / loop, "cpu_ms": 1000 * cpu / frames, "inference": held / inference}


def _decoded_frames(video: Path, repeat: int):
    import cv2

    for _ in range(repeat):
        capture = cv2.VideoCapture(str(video))
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield frame
        capture.release()


def opencv_child(args: argparse.Namespace, output: Path) -> dict:
    """OpenCV's read-detect-draw-write loop, then its inference alone; no TensorFlow here."""
    import cv2
    import numpy as np

    from shared.video import FOURCCS_BY_SUFFIX

    folder = SHARED / "weights/yolo-fastest"
    net = cv2.dnn.readNetFromDarknet(str(folder / f"{MODEL}.cfg"), str(folder / f"{MODEL}.weights"))
    names = net.getUnconnectedOutLayersNames()
    size = (args.size, args.size)

    def forward(frame):
        net.setInput(cv2.dnn.blobFromImage(frame, 1 / 255, size, swapRB=True, crop=False))
        return net.forward(names)

    def boxes_of(outputs, width, height):
        rows = np.concatenate(outputs)
        picked, classes = np.nonzero(rows[:, 5:] > CONF)
        scores = rows[picked, 5 + classes]
        centre = rows[picked, :2] * [width, height]
        extent = rows[picked, 2:4] * [width, height]
        boxes = np.concatenate([centre - extent / 2, extent], axis=1)
        keep = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), classes.tolist(), CONF, IOU)
        keep = np.asarray(keep, dtype=int).reshape(-1)
        return boxes[keep].round().astype(int).tolist(), classes[keep].tolist()

    capture = cv2.VideoCapture(str(args.video))
    fps = capture.get(cv2.CAP_PROP_FPS)
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    _, first = capture.read()
    capture.release()
    forward(first)  # OpenCV allocates on the first forward
    for code in FOURCCS_BY_SUFFIX[".mp4"]:  # the codec detect-cars ends up with
        writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*code), fps, (width, height))
        if writer.isOpened():
            break
    else:  # a peer that cannot encode would skip the encoding and look faster
        sys.exit(f"OpenCV cannot write {output} with any of {FOURCCS_BY_SUFFIX['.mp4']}")
    started, cpu = time.perf_counter(), _cpu_seconds()
    frames = 0
    for frame in _decoded_frames(args.video, args.repeat):
        boxes, class_ids = boxes_of(forward(frame), width, height)
        for (x, y, w, h), class_id in zip(boxes, class_ids, strict=True):
            cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
            cv2.putText(frame, str(class_id), (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0))
        writer.write(frame)
        frames += 1
    writer.release()
    loop, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    held = list(_decoded_frames(args.video, 1))
    started = time.perf_counter()
    for frame in held:
        forward(frame)
    inference = time.perf_counter() - started
    assert not {"tensorflow", "keras", "openvino"} & set(sys.modules), "the peer must be alone"
    return _rates(frames, loop, cpu, len(held), inference)


def our_child(args: argparse.Namespace, output: Path) -> dict:
    """The detect-cars pipeline on its default runtime, then its inference alone."""
    from apps.car_detection.decode import preprocess
    from apps.car_detection.detector import load_detector
    from apps.car_detection.pipeline import run
    from apps.car_detection.sinks import AnnotatedVideoSink
    from shared.frames import open_source

    detector = load_detector(MODEL, size=args.size, classes="all", multi_label=True)
    network = detector.network
    held = [frame[:, :, ::-1] for frame in _decoded_frames(args.video, 1)]
    network.predict_heads(preprocess(held[: args.batch], args.size, args.size))  # warm-up
    frames = 0
    started, cpu = time.perf_counter(), _cpu_seconds()
    for _ in range(args.repeat):  # as detect-cars run on the video several times, once loaded
        source = open_source(str(args.video), prefetch=2 * args.batch)
        sink = AnnotatedVideoSink(output, source.fps, source.width, source.height)
        frames += run(source, detector, [sink], batch=args.batch).frames
    loop, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    started = time.perf_counter()
    for start in range(0, len(held), args.batch):
        network.predict_heads(preprocess(held[start : start + args.batch], args.size, args.size))
    inference = time.perf_counter() - started
    return _rates(frames, loop, cpu, len(held), inference) | {"runtime": network.runtime}


def _child(kind: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--video", str(args.video)]
    command += ["--repeat", str(args.repeat), "--batch", str(args.batch), "--size", str(args.size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _startup_seconds(image: Path, folder: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        # What the detect-cars command runs, with this interpreter (no PATH lookup); every
        # round writes the same output again.
        [
            sys.executable,
            "-m",
            "apps.car_detection.cli",
            str(image),
            "-o",
            str(folder / "a.jpg"),
            "--exist-ok",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video", type=Path, default=SHARED / "data/cars/video/udacity_solidWhiteRight.mp4"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="times the video is played")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--child", choices=["opencv", "ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("CONVNET_APPS_WEIGHTS_DIR", str(SHARED / "weights"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            child = opencv_child if args.child == "opencv" else our_child
            print(json.dumps(child(args, Path(tmp) / "out.mp4")))
        return

    image = SHARED / "data/cars/driveai/images/test.jpg"
    with tempfile.TemporaryDirectory() as tmp:
        _startup_seconds(image, Path(tmp))  # builds the compiled-model cache if it is cold
        print(f"{args.video.name} x{args.repeat}, {MODEL} at {args.size}, batch {args.batch}")
        ratios: dict[str, list[float]] = {"loop": [], "inference": [], "cpu": []}
        startups = []
        for number in range(args.rounds):
            load = os.getloadavg()[0]
            order = ["opencv", "ours"] if number % 2 == 0 else ["ours", "opencv"]
            rates = {kind: _child(kind, args) for kind in order}
            startups.append(_startup_seconds(image, Path(tmp)))
            cv, ours = rates["opencv"], rates["ours"]
            for key in ("loop", "inference"):
                ratios[key].append(ours[key] / cv[key])
            ratios["cpu"].append(cv["cpu_ms"] / ours["cpu_ms"])
            print(
                f"round {number + 1} (load {load:.1f}, {order[0]} first): "
                f"loop OpenCV {cv['loop']:.1f} / ours ({ours['runtime']}) {ours['loop']:.1f} "
                f"frames/s = {ratios['loop'][-1]:.2f}x, CPU {cv['cpu_ms']:.1f} / "
                f"{ours['cpu_ms']:.1f} ms a frame; inference {cv['inference']:.1f} / "
                f"{ours['inference']:.1f} frames/s = {ratios['inference'][-1]:.2f}x; "
                f"detect-cars one.jpg {startups[-1]:.2f} s"
            )
    median = {key: statistics.median(values) for key, values in ratios.items()}
    print(
        f"median of {args.rounds} rounds, ours against OpenCV DNN: "
        f"whole loop {median['loop']:.2f}x (CPU time a frame {median['cpu']:.2f}x less), "
        f"inference {median['inference']:.2f}x; "
        f"start-up (detect-cars one.jpg, cache warm) {statistics.median(startups):.2f} s"
    )


if __name__ == "__main__":
    main()

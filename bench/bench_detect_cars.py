"""Frames per second of car detection: this suite's Keras import against OpenCV DNN.

Both run the same Darknet model (Yolo-Fastest-1.1-xl, 320x320 by default) on the same real
video, one after the other in this process:

- inference: preprocessing + network only (OpenCV: ``blobFromImage`` + ``forward`` per frame;
  Keras: ``preprocess`` + the traced model on batches of ``--batch`` frames);
- start-up: converting the Darknet files against loading a cached Keras model;
- loop: read, detect (threshold 0.25, NMS 0.45, every class), draw, encode an .mp4 —
  OpenCV's usual single-threaded sample loop against the ``detect-cars`` pipeline itself
  (``pipeline.run``: decoding ahead in a thread, batched detection, drawing and encoding in
  a background writer).

Usage (from the repository root, with the suite installed or PYTHONPATH=., ../shared beside it):
    python bench/bench_detect_cars.py [--video PATH] [--batch 8] [--frames 0]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2
import keras
import numpy as np

from apps.car_detection.catalogue import darknet_files, read_class_names
from apps.car_detection.darknet import load_darknet
from apps.car_detection.decode import DEFAULT_CONF, DEFAULT_IOU, preprocess
from apps.car_detection.detector import YoloDetector
from apps.car_detection.pipeline import open_source, run
from apps.car_detection.sinks import AnnotatedVideoSink

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONVNET_APPS_SHARED", REPO_ROOT.parent / "shared"))
CONF, IOU = DEFAULT_CONF, DEFAULT_IOU


def read_frames(video: Path, limit: int) -> list[np.ndarray]:
    """Decoded BGR frames held in memory, so inference timings exclude decoding."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    while limit <= 0 or len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def opencv_postprocess(outputs, width: int, height: int) -> tuple[list, list, list]:
    """(row, class) pairs over CONF, per-class NMS: what an OpenCV user writes."""
    rows = np.concatenate(outputs)
    picked, classes = np.nonzero(rows[:, 5:] > CONF)
    scores = rows[picked, 5 + classes]
    centre = rows[picked, :2] * [width, height]
    extent = rows[picked, 2:4] * [width, height]
    boxes = np.concatenate([centre - extent / 2, extent], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), classes.tolist(), CONF, IOU)
    keep = np.asarray(keep, dtype=int).reshape(-1)
    return boxes[keep].round().astype(int).tolist(), scores[keep].tolist(), classes[keep].tolist()


def opencv_loop(net, names, video: Path, output: Path, size: int, limit: int) -> int:
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS)
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    count = 0
    while limit <= 0 or count < limit:
        ok, frame = capture.read()
        if not ok:
            break
        net.setInput(cv2.dnn.blobFromImage(frame, 1 / 255, (size, size), swapRB=True, crop=False))
        boxes, _, class_ids = opencv_postprocess(net.forward(names), width, height)
        for (x, y, w, h), class_id in zip(boxes, class_ids, strict=True):
            cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
            cv2.putText(frame, str(class_id), (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0))
        writer.write(frame)
        count += 1
    capture.release()
    writer.release()
    return count


def pipeline_loop(model, labels, video: Path, output: Path, batch: int, limit: int) -> int:
    """The detect-cars pipeline itself: decoding ahead, batched detection, background writer."""
    source = open_source(str(video), prefetch=2 * batch)
    if limit > 0:
        source.frames = itertools.islice(source.frames, limit)
    sink = AnnotatedVideoSink(output, source.fps, source.width, source.height)
    # Darknet's multi-label rule, as the OpenCV peer above, so both do the same work.
    detector = YoloDetector(model, labels, CONF, IOU, multi_label=True)
    summary = run(source, detector, [sink], batch=batch)
    return summary.frames


def timed(label: str, run: Callable[[], int]) -> float:
    start = time.perf_counter()
    frames = run()
    seconds = time.perf_counter() - start
    rate = frames / seconds
    print(f"{label:<44} {frames:4d} frames {seconds:7.2f} s {rate:7.1f} frames/s")
    return rate


def startup_times(cfg: Path, weights: Path):
    """Converting from Darknet against loading a cached Keras file: why nothing is cached.

    Both build the same Keras layers; the cache only adds unzipping and HDF5 on top. Each is
    timed twice, alternating, and the faster run kept, so TensorFlow's one-off start-up
    favours neither.
    """
    model = load_darknet(cfg, weights)
    convert, cached = [], []
    with tempfile.TemporaryDirectory() as tmp:
        model.model.save(Path(tmp) / "model.keras")
        for _ in range(2):
            start = time.perf_counter()
            load_darknet(cfg, weights)
            convert.append(time.perf_counter() - start)
            start = time.perf_counter()
            keras.saving.load_model(Path(tmp) / "model.keras")
            cached.append(time.perf_counter() - start)
    print(f"start-up: convert Darknet {min(convert):.2f} s, load cached .keras {min(cached):.2f} s")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video", type=Path, default=SHARED / "data/cars/video/udacity_solidWhiteRight.mp4"
    )
    parser.add_argument("--model", default="yolo-fastest-1.1-xl")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=0, help="stop after N frames (0: all)")
    args = parser.parse_args()
    os.environ.setdefault("CONVNET_APPS_WEIGHTS_DIR", str(SHARED / "weights"))
    cfg, weights = darknet_files(args.model)
    labels = read_class_names()

    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = net.getUnconnectedOutLayersNames()
    model = startup_times(cfg, weights)
    size = model.width
    frames = read_frames(args.video, args.frames)
    rgb = [frame[:, :, ::-1] for frame in frames]
    # Warm-up: OpenCV allocates on the first forward, TensorFlow traces the graph.
    net.setInput(cv2.dnn.blobFromImage(frames[0], 1 / 255, (size, size), swapRB=True))
    net.forward(names)
    model.predict_heads(preprocess(rgb[: args.batch], size, size))

    def opencv_inference() -> int:
        for frame in frames:
            net.setInput(cv2.dnn.blobFromImage(frame, 1 / 255, (size, size), swapRB=True))
            net.forward(names)
        return len(frames)

    def keras_inference() -> int:
        for start in range(0, len(rgb), args.batch):
            model.predict_heads(preprocess(rgb[start : start + args.batch], size, size))
        return len(rgb)

    print(f"{args.video.name}, {args.model} at {size}x{size}, batch {args.batch}")
    cv_infer = timed("OpenCV DNN inference (blob + forward)", opencv_inference)
    keras_infer = timed("Keras inference (preprocess + model)", keras_inference)
    with tempfile.TemporaryDirectory() as tmp:
        cv_loop = timed(
            "OpenCV loop (read, detect, draw, write)",
            lambda: opencv_loop(net, names, args.video, Path(tmp) / "cv.mp4", size, args.frames),
        )
        keras_rate = timed(
            "detect-cars pipeline (read, detect, draw, write)",
            lambda: pipeline_loop(
                model, labels, args.video, Path(tmp) / "k.mp4", args.batch, args.frames
            ),
        )
    print(
        f"Keras/OpenCV: inference {keras_infer / cv_infer:.2f}x, "
        f"whole pipeline {keras_rate / cv_loop:.2f}x"
    )


if __name__ == "__main__":
    main()

"""The detector's network through the inference runtime: OpenVINO computes what Keras computes.

Heads are compared value by value (boxes, objectness, class scores) on real photos with the
real weights, and on a Darknet cfg with operations Yolo-Fastest does not use (YOLOv2-tiny's
``region`` head with its softmax, stride-1 max pooling) with random weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from apps.car_detection.cfg import read_cfg
from apps.car_detection.darknet import load_darknet, plan_network
from apps.car_detection.decode import preprocess
from apps.car_detection.network import load_network

TOLERANCE = 1e-4
REPO_ROOT = Path(__file__).resolve().parents[3]


def frames(paths: list[Path]) -> list[np.ndarray]:
    return [cv2.imread(str(path))[:, :, ::-1] for path in paths]


def assert_heads_equal(ours: list[np.ndarray], keras_heads: list[np.ndarray]) -> None:
    assert [o.shape for o in ours] == [k.shape for k in keras_heads]
    for mine, reference in zip(ours, keras_heads, strict=True):
        np.testing.assert_allclose(mine, reference, rtol=0, atol=TOLERANCE)


def test_openvino_heads_equal_keras_on_real_photos(openvino_xl, offline_weights, test_images):
    folder = offline_weights / "yolo-fastest"
    keras_model = load_darknet(
        folder / "yolo-fastest-1.1-xl.cfg", folder / "yolo-fastest-1.1-xl.weights"
    )
    assert (openvino_xl.width, openvino_xl.height, openvino_xl.classes) == (320, 320, 80)
    batch = preprocess(frames(test_images), 320, 320)
    ours = openvino_xl.predict_heads(batch)
    assert_heads_equal(ours, keras_model.predict_heads(batch))
    assert max(float(head[..., 5:].max()) for head in ours) > 0.5  # real objects, real scores
    assert_heads_equal(openvino_xl.predict_heads(batch[1:]), keras_model.predict_heads(batch[1:]))


def test_openvino_heads_equal_keras_on_a_region_head(offline_weights, random_weights, test_images):
    name, size = "yolov2-tiny", 128
    cfg = offline_weights / "darknet-cfg" / f"{name}.cfg"
    weights = random_weights(plan_network(read_cfg(cfg), (size, size)), seed=3)
    network = load_network(cfg, weights, size, runtime="openvino")
    batch = preprocess(frames(test_images), size, size)
    keras_heads = load_darknet(cfg, weights, input_size=(size, size)).predict_heads(batch)
    assert_heads_equal(network.predict_heads(batch), keras_heads)
    assert all(np.ptp(head[..., 5:]) > 1e-3 for head in keras_heads)


def test_a_warm_cache_detects_without_importing_tensorflow(offline_weights, data_dir, tmp_path):
    """What `detect-cars one.jpg` runs after the first time: no TensorFlow in the process."""
    script = (
        "import json, sys\n"
        "from apps.car_detection.cli import main\n"
        "main.main(sys.argv[1:], standalone_mode=False)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(json.dumps(loaded))\n"
    )
    image = data_dir / "cars/driveai/images/test.jpg"
    out = tmp_path / "test_cars.jpg"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(image), "-o", str(out), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary_line, modules_line = done.stdout.strip().splitlines()
    assert json.loads(summary_line)["detections"]["car"] >= 3
    assert json.loads(modules_line) == [] and done.stderr == ""
    assert out.is_file()

"""detect-cars-train on a handful of tiny images: the loss falls, the result is usable everywhere.

A small Darknet cfg (two [yolo] heads, 64x64 input) with random weights written in Darknet's
format stands in for a pretrained model, so the import path is the real one and a run takes
seconds. Its classes are car and bus; the dataset's are car and truck, so the head is replaced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from apps.car_detection.cfg import read_cfg
from apps.car_detection.cli import main as detect_cars
from apps.car_detection.darknet import plan_network
from apps.car_detection.datasets import open_dataset
from apps.car_detection.decode import select_detections
from apps.car_detection.results import Detection
from apps.car_detection.train import TrainSettings, export, pseudo_sample, train
from apps.car_detection.train_cli import main as train_command
from apps.car_detection.yolo import load_task
from shared.images import write_image
from tests.multi_worker import run_local_workers

TINY_CFG = """[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=3,4,5
anchors=6,6, 10,14, 16,10, 20,20, 28,18, 40,40
classes=2
num=6

[route]
layers=-3

[upsample]
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=0,1,2
anchors=6,6, 10,14, 16,10, 20,20, 28,18, 40,40
classes=2
num=6
"""


@pytest.fixture
def tiny_model(tmp_path: Path, random_weights) -> tuple[Path, Path, Path]:
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    weights = random_weights(plan_network(read_cfg(cfg)), 0)
    names = tmp_path / "tiny.names"
    names.write_text("car\nbus\n")
    return cfg, weights, names


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Six 64x64 images per split with bright 'cars' (class 0) and dark 'trucks' (class 1)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir()
        for number in range(6):
            image = np.full((64, 64, 3), 90, np.uint8)
            lines = []
            for cls in (0, 1):
                w, h = rng.integers(12, 24, 2)
                x, y = rng.integers(0, 64 - w), rng.integers(0, 64 - h)
                image[y : y + h, x : x + w] = 240 if cls == 0 else 20
                lines.append(f"{cls} {(x + w / 2) / 64} {(y + h / 2) / 64} {w / 64} {h / 64}")
            write_image(root / split / "images" / f"{number}.png", image)
            (root / split / "labels" / f"{number}.txt").write_text("\n".join(lines))
    (root / "data.yaml").write_text("names: [car, truck]\n")
    return root


def event_tags(logdir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in logdir.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0, "images": 0})
        accumulator.Reload()
        tags |= set(accumulator.Tags()["tensors"]) | set(accumulator.Tags()["images"])
    return tags


def test_training_learns_checkpoints_resumes_and_logs(tmp_path, tiny_model, tiny_dataset):
    cfg, weights, names = tiny_model
    train_set = open_dataset(tiny_dataset, "train")
    valid_set = open_dataset(tiny_dataset, "valid")
    settings = TrainSettings(
        epochs=4,
        freeze_epochs=1,
        batch=3,
        lr=0.01,
        backbone_lr=0.5,
        warmup_epochs=0,
        augment=False,
        patience=10,
        sample_images=1,
    )
    out, logdir = tmp_path / "run", tmp_path / "tb"

    def interrupt_after_three(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    common = {"cfg": cfg, "weights": weights, "names": names, "logdir": logdir}
    with pytest.raises(KeyboardInterrupt):
        train(train_set, valid_set, out, settings, on_epoch=interrupt_after_three, **common)
    saved = json.loads((out / "state.json").read_text())["state"]
    assert saved["epoch"] == 3 and (out / "last.keras").is_file()
    # Ctrl-C at the end of epoch 3: --resume runs epoch 4 only, from the saved weights.
    state = train(train_set, valid_set, out, settings, resume=True, **common)
    assert [record["epoch"] for record in state.history] == [1, 2, 3, 4]
    losses = [record["loss"] for record in state.history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.97 * losses[0], losses

    model = load_task(out / "best.keras")
    assert model.names == ["car", "truck"] and model.input_size == (64, 64)
    assert model.anchors == [[[20, 20], [28, 18], [40, 40]], [[6, 6], [10, 14], [16, 10]]]

    tags = event_tags(logdir)
    expected = {
        "loss/box",
        "loss/obj",
        "loss/cls",
        "loss/total",
        "learning_rate",
        "valid/mAP50",
        "valid_AP50/car",
        "valid_AP50/truck",
        "pr/car",
        "pr/truck",
        "valid_images/0",
    }
    assert expected <= tags, expected - tags

    image = tiny_dataset / "valid/images/0.png"
    result = CliRunner().invoke(
        detect_cars,
        [
            str(image),
            "--model",
            str(out / "best.keras"),
            "--classes",
            "all",
            "--conf",
            "0.05",
            "--json",
            "-o",
            str(tmp_path / "drawn.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])  # after any runtime note
    assert summary["frames"] == 1 and (tmp_path / "drawn.png").is_file()


def test_tflite_export_gives_the_same_detections(tmp_path, tiny_model, tiny_dataset):
    import tensorflow as tf

    cfg, weights, names = tiny_model
    dataset = open_dataset(tiny_dataset, "train")
    settings = TrainSettings(epochs=1, freeze_epochs=0, batch=6, augment=False, sample_images=0)
    train(dataset, dataset, tmp_path, settings, cfg=cfg, weights=weights, names=names)
    network = load_task(tmp_path / "best.keras").detection_network()
    images = np.random.default_rng(1).random((1, 64, 64, 3)).astype(np.float32)
    expected = network.predict_heads(images)

    interpreter = tf.lite.Interpreter(model_path=str(export(tmp_path / "best.keras", "tflite")))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    outputs = [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]
    outputs.sort(
        key=lambda rows: (
            -rows.shape[1] if expected[0].shape[1] > expected[1].shape[1] else rows.shape[1]
        )
    )
    for ours, theirs in zip(expected, outputs, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    mine = select_detections(np.concatenate(expected, 1)[0], (64, 64), 0.01, 0.45)
    lite = select_detections(np.concatenate(outputs, 1)[0], (64, 64), 0.01, 0.45)
    assert len(mine) > 0
    np.testing.assert_allclose(mine.boxes, lite.boxes, atol=1e-3)
    assert mine.class_ids.tolist() == lite.class_ids.tolist()
    saved = export(tmp_path / "best.keras", "savedmodel")
    assert (saved / "saved_model.pb").is_file()


def test_pseudo_labels_teach_confident_detections_and_ignore_weak_ones():
    found = [
        Detection("car", 2, 0.9, (100.0, 50.0, 300.0, 150.0)),
        Detection("car", 2, 0.2, (10.0, 20.0, 30.0, 40.0)),  # a small far car: not background
    ]
    sample = pseudo_sample(Path("frame.jpg"), (200, 400, 3), found)
    assert sample.boxes.tolist() == [[0.25, 0.25, 0.75, 0.75], [0.025, 0.1, 0.075, 0.2]]
    assert sample.classes.tolist() == [2, 2]
    assert sample.ignore.tolist() == [False, True]
    empty = pseudo_sample(Path("frame.jpg"), (200, 400, 3), [])
    assert empty.boxes.shape == (0, 4) and len(empty.classes) == len(empty.ignore) == 0


def test_bad_training_input_is_one_line(tmp_path, tiny_dataset):
    label = tiny_dataset / "train/labels/0.txt"
    good = label.read_text()
    label.write_text("0 0.5 0.5 0.1\n")
    result = CliRunner().invoke(train_command, [str(tiny_dataset), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.strip().endswith(
        "train/labels/0.txt:1: expected 'class cx cy w h', got '0 0.5 0.5 0.1'"
    )
    label.write_text(good)
    result = CliRunner().invoke(
        train_command, [str(tiny_dataset), "--class-map", "Ambulance=ignore"]
    )
    assert result.exit_code == 2 and "'Ambulance' is not a class of the dataset" in result.output
    result = CliRunner().invoke(train_command, [str(tmp_path / "none")])
    assert result.exit_code == 2 and "dataset folder not found" in result.output
    result = CliRunner().invoke(train_command, [str(tiny_dataset), "--valid-split", "val"])
    assert result.exit_code == 2 and "val: no such split folder" in result.output


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from click.testing import CliRunner
from apps.car_detection.train_cli import main
result = CliRunner().invoke(main, sys.argv[1:], catch_exceptions=False)
print(result.output)
"""


def test_mirrored_training_on_two_logical_cpus(tmp_path, tiny_model, tiny_dataset):
    cfg, weights, names = tiny_model
    arguments = [
        str(tiny_dataset),
        "--cfg",
        str(cfg),
        "--weights",
        str(weights),
        "--names",
        str(names),
        "--strategy",
        "mirrored",
        "--epochs",
        "2",
        "--freeze-epochs",
        "1",
        "--batch",
        "4",
        "--no-augment",
        "-o",
        str(tmp_path / "run"),
        "--json",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED, *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["epochs"] == 2 and Path(result["best"]).is_file()
    assert result["replicas"] == 2  # one per logical CPU device


@pytest.mark.slow
def test_multi_worker_training_on_two_local_processes(tmp_path, tiny_model, tiny_dataset):
    """--strategy multi-worker: two worker processes on this machine, the cluster in TF_CONFIG.
    Both finish, and their models are the same although each worker drew its own augmented
    batches: every update used both workers' gradients."""
    cfg, weights, names = tiny_model

    def arguments_of(index: int) -> list[str]:
        arguments = [str(tiny_dataset), "--cfg", str(cfg), "--weights", str(weights)]
        arguments += ["--names", str(names), "--strategy", "multi-worker", "--epochs", "2"]
        arguments += ["--freeze-epochs", "1", "--batch", "4", "--json"]
        return [*arguments, "-o", str(tmp_path / f"w{index}")]

    command = "from apps.car_detection.train_cli import main; main()"
    for returncode, out, err in run_local_workers(command, arguments_of):
        assert returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["replicas"] == 2 and result["epochs"] == 2
    first, second = (load_task(tmp_path / f"w{index}" / "last.keras") for index in (0, 1))
    for mine, theirs in zip(first.trainable_weights, second.trainable_weights, strict=True):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), atol=1e-6)

"""face-train: a few steps on real AT&T faces with a small backbone (the loss falls, the event
files hold the monitored tags, the saved model embeds under its own id), Ctrl-C and resume,
two logical CPU devices under MirroredStrategy, two worker processes under
MultiWorkerMirroredStrategy, P x K batches, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers

from apps.face_access import facesets
from apps.face_access.cli import check_command, enroll_command
from apps.face_access.detection import FaceDetector
from apps.face_access.embedding import FaceEmbedder
from apps.face_access.eval_cli import main as face_eval
from apps.face_access.face_model import FaceEmbeddingTask, new_model_id
from apps.face_access.models import DLIB, trained_spec
from apps.face_access.pipeline import FacePipeline
from apps.face_access.store import FaceStore
from apps.face_access.train_cli import main as face_train
from apps.face_access.training import (
    STATE_FILE,
    EpochCheckpoint,
    VerificationMonitor,
    pk_batches,
    train,
)
from shared.backbones.layers import LocalResponseNormalization
from shared.images import write_image
from tests.multi_worker import run_local_workers


def small_task(mining: str = "semi_hard", own_layer: bool = False) -> FaceEmbeddingTask:
    """A task around a small CNN: the training machinery at a fraction of dlib's cost.
    ``own_layer``: with an LRN layer, one of the project's own (as in nn4.small2), which a
    process loading the file must know."""
    inputs = keras.Input((150, 150, 3))
    x = layers.AveragePooling2D(5)(inputs)  # 30x30
    if own_layer:
        x = LocalResponseNormalization()(x)
    for filters in (16, 32):
        x = layers.Conv2D(filters, 3, strides=2, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, layers.Dense(16)(x), name="small")
    return FaceEmbeddingTask(backbone, "dlib", new_model_id("small"), mining=mining)


@pytest.fixture(scope="module")
def att_chips(request):
    """Aligned chips of 8 AT&T people: 6 to train on, 2 + 2 more ... to validate on."""
    pipeline = request.getfixturevalue("pipeline")
    root = request.getfixturevalue("data_dir") / "faces" / "att_faces"
    people = [f"s{i}" for i in range(1, 11)]
    chips = facesets.align_photos(facesets.list_photos(root, people), pipeline)
    assert not chips.skipped
    train_rows = [i for i, p in enumerate(chips.people) if p in people[:6]]
    val_rows = [i for i, p in enumerate(chips.people) if p in people[6:]]

    def part(rows):
        return facesets.Chips(chips.chips[rows], [chips.photos[i] for i in rows])

    return part(train_rows), part(val_rows)


def _tags(logdir) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in logdir.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        tags |= {f"{events.parent.name}/{tag}" for tag in accumulator.Tags()["tensors"]}
    return tags


class StopAt(keras.callbacks.Callback):
    """Ctrl-C in the middle of an epoch."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current_epoch == self.epoch and batch == 1:
            raise KeyboardInterrupt

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch


def test_training_lowers_the_loss_and_logs_the_tags(att_chips, tmp_path, yunet_onnx, dlib_dat):
    train_chips, val_chips = att_chips
    report = train(
        train_chips,
        val_chips,
        output=tmp_path / "model.keras",
        checkpoints=tmp_path / "ckpt",
        people=3,
        photos=4,
        epochs=3,
        steps_per_epoch=8,
        logdir=tmp_path / "logs",
        augment=False,
        learning_rate=3e-3,
        task_factory=small_task,
    )
    history = report.history
    assert len(history["loss"]) == 3 and report.epochs_run == 3
    assert history["loss"][-1] < 0.8 * history["loss"][0]  # measured: 0.077 -> 0.032
    assert history["active_triplets"][-1] < history["active_triplets"][0]
    assert history["negative_distance"][-1] > history["positive_distance"][-1]
    # On the 4 people it never saw, pairs separate better than before training
    # (measured AUC 0.70 -> 0.90).
    assert len(report.validation) == 3
    assert report.validation[-1]["auc"] > report.initial_validation["auc"] + 0.05
    best = max(row["tar_at_far"] for row in report.validation)
    assert report.improved == (best > report.initial_validation["tar_at_far"])

    tags = _tags(tmp_path / "logs")
    for tag in (
        "loss",
        "active_triplets",
        "positive_distance",
        "negative_distance",
        "learning_rate",
    ):
        assert f"train/epoch_{tag}" in tags, tags
    for tag in ("tar_at_far", "auc"):
        assert f"validation/epoch_{tag}" in tags, tags
    projector = tmp_path / "logs" / "projector"
    assert (projector / "projector_config.pbtxt").is_file()
    assert (projector / "sprite.png").is_file()

    # The saved model is one more embedder spec: dlib's chip, its own id, and as threshold
    # the distance of the validation FAR at its best epoch.
    spec = trained_spec(tmp_path / "model.keras")
    assert spec.model_id == report.model_id and spec.model_id.startswith("face-train/")
    assert spec.chip_layout == DLIB.chip_layout and spec.mirror
    best = report.validation[report.best_epoch - 1]
    assert spec.threshold == pytest.approx(best["threshold"]) and 0 < spec.threshold < 2
    embedder = FaceEmbedder(spec, tmp_path / "model.keras")
    vectors = embedder.embed(val_chips.chips[:3])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(
        vectors[0], embedder.embed(val_chips.chips[:1])[0], atol=1e-5
    )  # batch-independent: inference mode

    # The commands take it as --model PATH; its embeddings are kept apart from dlib's.
    db, photos = tmp_path / "door.db", [str(p.path) for p in val_chips.photos]
    trained = ["--model", str(tmp_path / "model.keras"), "--detector-model", str(yunet_onnx)]
    enrolled = CliRunner().invoke(enroll_command, ["s7", *photos[:2], "--db", str(db), *trained])
    assert enrolled.exit_code == 0, enrolled.output
    with FaceStore(db) as store:
        assert store.people()[0].model_ids == (report.model_id,)
    checked = CliRunner().invoke(check_command, [photos[3], "--db", str(db), *trained, "--json"])
    assert checked.exit_code in (0, 1), checked.output
    assert json.loads(checked.stdout)["threshold"] == pytest.approx(spec.threshold)
    dlib = ["--db", str(db), "--model", str(dlib_dat), "--detector-model", str(yunet_onnx)]
    checked = CliRunner().invoke(check_command, [photos[3], *dlib])
    assert checked.exit_code == 2 and "never compared" in checked.stderr, checked.output
    checked = CliRunner().invoke(check_command, [photos[3], "--db", str(db)])
    assert checked.exit_code == 2 and "pass the same file with --model PATH" in checked.stderr
    folder = tmp_path / "people"
    for person in ("s7", "s8"):
        (folder / person).mkdir(parents=True)
        for photo in [p.path for p in val_chips.photos if p.person == person][:4]:
            (folder / person / photo.name).symlink_to(photo)
    out = ["--report", str(tmp_path / "r.json"), "--roc", str(tmp_path / "r.png")]
    evaluated = CliRunner().invoke(
        face_eval, [str(folder), "--json", "--folds", "2", "--enrol", "1", *trained, *out]
    )
    assert evaluated.exit_code == 0, evaluated.output
    figures = json.loads(evaluated.stdout)
    assert figures["model_id"] == report.model_id and figures["pairs"]["genuine_pairs"] == 12


def test_fine_tuning_sface_on_arcface_chips(tmp_path, data_dir, yunet_onnx, sface_onnx):
    """The door's default embedder as a starting point: learnt on its own 112x112 ArcFace
    chips, the blocks before ``--freeze-until`` and its batch normalisation left as they were,
    and saved as a model that cuts SFace's chips."""
    from apps.face_access.face_model import build_task
    from apps.face_access.models import SFACE

    pipeline = FacePipeline(FaceDetector(yunet_onnx), FaceEmbedder("sface", sface_onnx))
    root = data_dir / "faces" / "att_faces"
    chips = facesets.align_photos(facesets.list_photos(root, ["s1", "s2", "s3", "s4"]), pipeline)
    assert chips.chips.shape[1:] == (112, 112, 3)
    train_rows = [i for i, p in enumerate(chips.people) if p in ("s1", "s2", "s3")]
    val_rows = [i for i, p in enumerate(chips.people) if p == "s4"] + train_rows[:4]

    def part(rows):
        return facesets.Chips(chips.chips[rows], [chips.photos[i] for i in rows])

    started = {}

    def task_factory():
        task = build_task("sface", freeze_until="conv_10", weights=sface_onnx)
        started.update({w.path: w.numpy().copy() for w in task.backbone.weights})
        return task

    report = train(
        part(train_rows),
        part(val_rows),
        output=tmp_path / "sface-ft.keras",
        checkpoints=tmp_path / "ckpt",
        mining="batch_all",
        people=3,
        photos=2,
        epochs=1,
        steps_per_epoch=2,
        augment=False,
        learning_rate=1e-3,
        task_factory=task_factory,
    )
    assert np.isfinite(report.history["loss"]).all()
    task = keras.models.load_model(tmp_path / "ckpt" / "last.keras")
    moved = {w.path for w in task.backbone.weights if not np.allclose(w.numpy(), started[w.path])}
    names = [layer.name for layer in task.backbone.layers]
    first_trained = next(i for i, name in enumerate(names) if name.startswith("conv_10"))
    frozen = set(names[:first_trained]) | {"bn1"}  # and the batch norm at the end
    assert moved and not {path.split("/")[0] for path in moved} & frozen, sorted(moved)[:5]

    spec = trained_spec(tmp_path / "sface-ft.keras")
    assert spec.chip_layout == SFACE.chip_layout and spec.model_id == report.model_id
    # Never a looser threshold than SFace's own, chosen on millions of pairs.
    validation = report.validation[report.best_epoch - 1]["threshold"]
    assert spec.threshold == report.threshold == min(validation, SFACE.threshold)
    vectors = FaceEmbedder(spec, tmp_path / "sface-ft.keras").embed(chips.chips[:2])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)


def test_ctrl_c_saves_a_checkpoint_that_resume_continues(att_chips, tmp_path):
    train_chips, val_chips = att_chips
    common = dict(
        output=tmp_path / "model.keras",
        checkpoints=tmp_path / "ckpt",
        people=3,
        photos=4,
        epochs=3,
        steps_per_epoch=3,
        augment=False,
        task_factory=small_task,
    )
    report = train(train_chips, val_chips, **common, extra_callbacks=[StopAt(1)])
    assert report.interrupted and report.epochs_run == 1 and report.history == {}
    state = json.loads((tmp_path / "ckpt" / STATE_FILE).read_text())
    first = report.validation[0]
    assert state == {
        "epochs_done": 1,
        "best": {
            "by": "tar_at_far",
            "value": first["tar_at_far"],
            "epoch": 1,
            "threshold": first["threshold"],
        },
    }
    resumed = train(train_chips, val_chips, **common, resume=True, learning_rate=5e-4)
    assert not resumed.interrupted and resumed.epochs_run == 2  # epochs 2 and 3
    assert resumed.model_id == report.model_id  # the same model, carried on
    assert len(resumed.history["loss"]) == 2
    assert resumed.history["learning_rate"] == pytest.approx([5e-4, 5e-4])  # a new one on resume
    state = json.loads((tmp_path / "ckpt" / STATE_FILE).read_text())
    assert state["epochs_done"] == 3
    # Epochs 2 and 3 replaced epoch 1's output only by beating it (not from -inf again).
    best = first
    for row in resumed.validation:
        best = row if row["tar_at_far"] > best["tar_at_far"] else best
    assert resumed.best_epoch == best["epoch"] and state["best"]["epoch"] == best["epoch"]
    assert trained_spec(tmp_path / "model.keras").threshold == pytest.approx(best["threshold"])
    # Resumed without --select-by, a run goes on choosing by the checkpoint's figure.
    state["best"]["by"] = "auc"
    (tmp_path / "ckpt" / STATE_FILE).write_text(json.dumps(state))
    again = train(train_chips, val_chips, **{**common, "epochs": 4}, resume=True)
    assert again.select_by == "auc" and again.epochs_run == 1


class ScriptedMonitor(VerificationMonitor):
    """The monitor's choice of epoch, on validation figures given in advance."""

    def __init__(self, figures, **kwargs):
        chips, labels, names = np.zeros((2, 4, 4, 3)), [0, 1], ["a", "b"]
        super().__init__(chips, labels, names, far=1e-3, output=None, **kwargs)
        self.script = iter(figures)

    def measure(self):
        return {"threshold": 1.0, **next(self.script)}

    @classmethod
    def started(cls, figures, **kwargs):
        """The monitor at the start of training a small model (the first figures measured)."""
        monitor = cls(figures, **kwargs)
        model = keras.Sequential([keras.Input((2,)), layers.Dense(1)])
        model.compile(optimizer="adam")
        monitor.set_model(model)
        monitor.on_train_begin()
        return monitor


@pytest.mark.parametrize(("select_by", "best_epoch"), [("tar_at_far", 1), ("auc", 2)])
def test_the_best_epoch_is_chosen_by_the_selected_validation_figure(select_by, best_epoch):
    figures = [  # TAR near zero jumps about while AUC climbs, as from scratch
        {"tar_at_far": 0.0, "auc": 0.60},
        {"tar_at_far": 0.014, "auc": 0.68},
        {"tar_at_far": 0.004, "auc": 0.77},
        {"tar_at_far": 0.004, "auc": 0.70},
    ]
    monitor = ScriptedMonitor.started(figures, select_by=select_by)
    for epoch in range(3):
        logs = {}
        monitor.on_epoch_end(epoch, logs)
        assert logs["val_auc"] == figures[epoch + 1]["auc"]  # what EarlyStopping reads
    assert monitor.best_epoch == best_epoch
    with pytest.raises(ValueError, match="select_by"):
        ScriptedMonitor(figures, select_by="tar")


@pytest.mark.parametrize(("validation", "saved"), [(1.126, 0.95), (0.8, 0.8)])
def test_a_fine_tuned_model_never_gets_a_looser_threshold_than_its_base(validation, saved):
    figures = [{"tar_at_far": 0.8, "auc": 0.98}, {"tar_at_far": 0.9, "auc": 0.99}]
    figures = [{**row, "threshold": validation} for row in figures]
    monitor = ScriptedMonitor.started(figures, threshold_cap=0.95)  # SFace's
    monitor.on_epoch_end(0, {})
    assert monitor.model.threshold == monitor.best_threshold == saved


def test_pk_batches_hold_p_people_with_k_photos_each():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 6 + [3] * 1)  # person 3 cannot be an anchor
    batches = pk_batches(labels, people=3, photos=4, rng=np.random.default_rng(0))
    for _ in range(20):
        rows = next(batches)
        people = labels[rows].reshape(3, 4)
        assert np.all(people == people[:, :1])  # grouped by person, whole people per slice
        assert len(set(people[:, 0])) == 3 and 3 not in people
        for group in rows.reshape(3, 4):
            if labels[group[0]] in (0, 2):  # enough photos: no repeats
                assert len(set(group)) == 4


def test_mirrored_strategy_on_two_logical_cpu_devices(tmp_path, att_chips):
    """Two replicas, each with half of every P x K batch (whole people): the run trains."""
    train_chips, val_chips = att_chips
    np.savez(
        tmp_path / "chips.npz",
        train=train_chips.chips,
        val=val_chips.chips,
        train_people=train_chips.people,
        val_people=val_chips.people,
    )
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from pathlib import Path
        from apps.face_access.training import train
        from shared.distribute import split_cpu
        split_cpu(2)  # before TensorFlow touches a device
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from test_face_train import small_task
        from apps.face_access.facesets import Chips, Photo
        data = np.load({str(tmp_path / "chips.npz")!r})
        def chips(kind):
            people = [str(p) for p in data[kind + "_people"]]
            return Chips(data[kind], [Photo(Path(p), p) for p in people])
        report = train(chips("train"), chips("val"), output=Path({str(tmp_path / "m.keras")!r}),
                       checkpoints=Path({str(tmp_path / "ck")!r}), people=4, photos=3, epochs=1,
                       steps_per_epoch=3, strategy="mirrored", augment=True,
                       task_factory=small_task)
        print(json.dumps(report.to_dict()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert np.isfinite(report["history"]["loss"][0]) and report["epochs_run"] == 1
    assert (tmp_path / "m.keras").is_file()


def test_bad_input_is_one_line_and_exit_2(tmp_path, data_dir):
    att = data_dir / "faces" / "att_faces"
    runner = CliRunner()
    result = runner.invoke(face_train, [str(att), "--val", str(att), "-o", str(tmp_path / "m.h5")])
    assert (
        result.exit_code == 2
        and result.stderr == f"error: {tmp_path / 'm.h5'}: the output must end in .keras\n"
    )
    result = runner.invoke(face_train, [str(att), "--val", str(att), "--people", "1"])
    assert result.exit_code == 2 and result.stderr == "error: --people must be at least 2\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(face_train, [str(empty), "--val", str(att)])
    assert result.exit_code == 2 and result.stderr == f"error: {empty}: no person folders found\n"


def test_a_resumed_run_cuts_the_chips_its_checkpoint_learns_on(tmp_path):
    """face-train --resume takes the chip from the checkpoint, not from --backbone (whose
    default, sface, would feed 112x112 chips to a run that learns on dlib's 150x150)."""
    from apps.face_access.training import resumed_chip
    from shared.errors import InputError

    inputs = keras.Input((112, 112, 3))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(8, 3, strides=4)(inputs))
    arcface = keras.Model(inputs, layers.Dense(16)(x), name="small112")
    for chip, task in (
        ("sface", FaceEmbeddingTask(arcface, "raw", new_model_id("small112"), chip="sface")),
        ("dlib", small_task()),
    ):
        saver = EpochCheckpoint(tmp_path / chip)
        saver.set_model(task)
        saver.save(1)
        assert resumed_chip(tmp_path / chip) == chip
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        resumed_chip(tmp_path / "none")


def test_a_keras_file_is_a_trained_spec_only_if_face_train_saved_it(tmp_path):
    from apps.face_access.access import door_threshold
    from apps.face_access.models import resolve_model
    from shared.errors import InputError

    task = small_task(own_layer=True)
    task.save(tmp_path / "face.keras")
    # A fresh process (as face-check is) loads it: the backbone's own layers get registered.
    script = (
        "import sys, numpy as np; from pathlib import Path\n"
        "from apps.face_access.embedding import FaceEmbedder\n"
        "from apps.face_access.models import resolve_model\n"
        "spec, path = resolve_model(Path(sys.argv[1]))\n"
        "embedder = FaceEmbedder(spec, path, runtime='tensorflow')\n"
        "vectors = embedder.embed(np.zeros((2, 150, 150, 3), np.uint8))\n"
        "print(spec.model_id, vectors.shape)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "face.keras")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [task.model_id, "(2,", "16)"]
    # and resumes training from its checkpoint (it failed there on nn4.small2's LRN layer).
    checkpoints = tmp_path / "ckpt"
    task.compile(optimizer="adam")
    saver = EpochCheckpoint(checkpoints)
    saver.set_model(task)
    saver.save(4)
    resume = (
        "import sys; from pathlib import Path\n"
        "from apps.face_access.training import resume_point\n"
        "task, state = resume_point(Path(sys.argv[1]))\n"
        "print(task.model_id, state['epochs_done'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", resume, str(checkpoints)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [task.model_id, "4"]
    spec, path = resolve_model(tmp_path / "face.keras")
    assert path == tmp_path / "face.keras" and spec.model_id == task.model_id
    assert spec.threshold is None  # never validated: the database must supply one
    with FaceStore(tmp_path / "door.db") as store:

        class Pipeline:  # door_threshold reads only the embedder's spec
            embedder = type("Embedder", (), {"spec": spec})

        with pytest.raises(InputError, match=r"carries no threshold.*--recommend-threshold"):
            door_threshold(store, Pipeline)
        store.set_threshold(spec.model_id, 0.42)
        assert door_threshold(store, Pipeline) == 0.42
        assert door_threshold(store, Pipeline, 0.3) == 0.3
    # With the same file again, the same model: a database enrolled with it accepts it.
    assert resolve_model(tmp_path / "face.keras", [task.model_id])[0].model_id == task.model_id

    keras.Sequential([keras.Input((4,)), layers.Dense(2)]).save(tmp_path / "other.keras")
    with pytest.raises(InputError, match="not a face embedder saved by face-train"):
        resolve_model(tmp_path / "other.keras")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"broken\.keras: not a face model saved by face-train"):
        resolve_model(tmp_path / "broken.keras")


@pytest.mark.slow
def test_multi_worker_training_on_two_local_processes(tmp_path, offline_weights):
    """face-train --strategy multi-worker: two worker processes on this machine, the cluster
    in TF_CONFIG. Both finish, and their models are the same: every update used the gradients
    of both workers' batches."""
    rng = np.random.default_rng(0)
    for role, people, photos in (("train", 4, 3), ("val", 2, 2)):
        for person in range(people):
            folder = tmp_path / role / f"{role}{person}"
            folder.mkdir(parents=True)
            for number in range(photos):
                crop = rng.integers(0, 256, (112, 112, 3), np.uint8)
                write_image(folder / f"{number}.png", crop)

    def arguments_of(index: int) -> list[str]:
        arguments = [str(tmp_path / "train"), "--val", str(tmp_path / "val"), "--aligned"]
        arguments += ["--backbone", "nn4.small2", "--people", "4", "--photos", "2"]
        arguments += ["--epochs", "1", "--steps-per-epoch", "2", "--no-augment", "--json"]
        return [*arguments, "--strategy", "multi-worker", "-o", str(tmp_path / f"w{index}.keras")]

    command = "from apps.face_access.train_cli import main; main()"
    for returncode, out, err in run_local_workers(command, arguments_of):
        assert returncode == 0, err[-3000:]
        report = json.loads(out)  # stdout is the JSON alone: Keras's progress goes to stderr
        assert report["replicas"] == 2 and report["epochs_run"] == 1
        # Two people per replica: triplets to learn from on every replica.
        assert report["history"]["loss"][0] > 0 and report["history"]["negative_distance"][0] > 0
    first, second = (
        keras.models.load_model(tmp_path / f"w{index}.keras", compile=False) for index in (0, 1)
    )
    for mine, theirs in zip(first.trainable_weights, second.trainable_weights, strict=True):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), atol=1e-6)

"""TensorBoard helpers: the event files and projector files they write, read back."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.plugins.projector import projector_config_pb2

from shared import tensorboard as tb
from shared.images import read_image


def _events(logdir) -> list[tuple[str, int, tf.compat.v1.Summary.Value]]:
    """(tag, step, value) of every summary value in the event files below ``logdir``."""
    found = []
    for path in sorted(tf.io.gfile.glob(str(logdir / "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            found.extend((value.tag, event.step, value) for value in event.summary.value)
    return found


@pytest.fixture
def writer(tmp_path):
    summary_writer = tf.summary.create_file_writer(str(tmp_path))
    yield summary_writer
    summary_writer.close()


def test_scalars_are_logged_with_their_steps(tmp_path, writer):
    tb.scalars(writer, 3, {"loss": 0.25, "metrics/map50": 0.5})
    tb.scalars(writer, 4, {"loss": 0.125})
    writer.flush()
    logged = [
        (tag, step, float(tf.make_ndarray(value.tensor))) for tag, step, value in _events(tmp_path)
    ]
    assert logged == [("loss", 3, 0.25), ("metrics/map50", 3, 0.5), ("loss", 4, 0.125)]


def test_image_with_boxes_logs_the_drawn_image_at_its_size(tmp_path, writer):
    image = np.zeros((30, 50, 3), dtype=np.uint8)
    drawn = tb.image_with_boxes(writer, "detections", 7, image, [[5, 5, 40, 25]], ["car"])
    writer.flush()
    ((tag, step, value),) = _events(tmp_path)
    assert (tag, step) == ("detections", 7)
    width, height, encoded = tf.make_ndarray(value.tensor)
    assert (int(width), int(height)) == (50, 30)
    np.testing.assert_array_equal(tf.io.decode_png(encoded).numpy(), drawn)
    assert drawn[25, 20].any() and not drawn[15, 20].any()


def test_pr_curve_counts_match_direct_counting_per_threshold(writer):
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.4
    # Scores off the threshold grid, so "bucket >= i" and "score >= t_i" must agree exactly.
    scores = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)
    scores = (np.floor(scores * 10) + 0.5) / 11
    table = tb.pr_curve(writer, "pr", 0, labels, scores, num_thresholds=11)
    for index, threshold in enumerate(np.linspace(0, 1, 11)):
        predicted = scores >= threshold
        tp = np.sum(predicted & labels)
        fp = np.sum(predicted & ~labels)
        expected = [tp, fp, np.sum(~predicted & ~labels), np.sum(~predicted & labels)]
        np.testing.assert_array_equal(table[:4, index], expected)
        assert table[4, index] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert table[5, index] == pytest.approx(tp / labels.sum())


def test_pr_curve_hand_case_and_plugin_metadata(tmp_path, writer):
    # Scores 0.9 (positive), 0.6 (negative), 0.3 (positive); 3 thresholds: 0, 0.5, 1.
    table = tb.pr_curve(writer, "pr/car", 2, [True, False, True], [0.9, 0.6, 0.3], num_thresholds=3)
    writer.flush()
    expected = [
        [2, 1, 0],  # TP
        [1, 1, 0],  # FP
        [0, 0, 1],  # TN
        [0, 1, 2],  # FN
        [2 / 3, 0.5, 0],  # precision
        [1, 0.5, 0],  # recall
    ]
    np.testing.assert_allclose(table, expected, rtol=1e-6)
    ((tag, step, value),) = _events(tmp_path)
    assert (tag, step) == ("pr/car", 2)
    assert value.metadata.plugin_data.plugin_name == "pr_curves"
    np.testing.assert_allclose(tf.make_ndarray(value.tensor), expected, rtol=1e-6)


def test_pr_curve_rejects_scores_outside_unit_interval_and_mismatched_inputs(writer):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tb.pr_curve(writer, "pr", 0, [True], [1.5])
    with pytest.raises(ValueError, match="2 labels for 1 scores"):
        tb.pr_curve(writer, "pr", 0, [True, False], [0.5])


def test_embedding_projector_writes_checkpoint_metadata_sprite_and_config(tmp_path):
    embeddings = np.arange(12, dtype=np.float32).reshape(3, 4)
    chips = np.stack([np.full((8, 6, 3), value, np.uint8) for value in (10, 20, 30)])
    prefix = tb.embedding_projector(tmp_path / "proj", embeddings, ["ann", "bob\tjr", "cy"], chips)
    stored = tf.train.load_checkpoint(str(prefix)).get_tensor(tb.EMBEDDING_TENSOR_NAME)
    np.testing.assert_array_equal(stored, embeddings)
    assert (tmp_path / "proj" / "metadata.tsv").read_text() == "ann\nbob jr\ncy\n"
    config = text_format.Parse(
        (tmp_path / "proj" / "projector_config.pbtxt").read_text(),
        projector_config_pb2.ProjectorConfig(),
    )
    (embedding,) = config.embeddings
    assert embedding.tensor_name == tb.EMBEDDING_TENSOR_NAME
    assert embedding.metadata_path == "metadata.tsv"
    assert list(embedding.sprite.single_image_dim) == [6, 8]
    sprite = read_image(tmp_path / "proj" / embedding.sprite.image_path)
    assert sprite.shape == (16, 12, 3)  # a 2x2 grid, the fourth cell left white
    assert sprite[0, 0, 0] == 10 and sprite[0, 6, 0] == 20 and sprite[8, 0, 0] == 30
    assert sprite[8, 6, 0] == 255


def test_tensorboard_callback_logs_epoch_losses(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 2), np.float32)
    history = model.fit(
        x,
        x[:, :1],
        epochs=2,
        batch_size=4,
        verbose=0,
        validation_data=(x, x[:, :1]),
        callbacks=[tb.tensorboard_callback(tmp_path)],
    )
    train = [
        (step, float(tf.make_ndarray(value.tensor)))
        for tag, step, value in _events(tmp_path / "train")
        if tag == "epoch_loss"
    ]
    assert [step for step, _ in train] == [0, 1]
    np.testing.assert_allclose([loss for _, loss in train], history.history["loss"], rtol=1e-5)
    assert any(tag == "epoch_loss" for tag, _, _ in _events(tmp_path / "validation"))

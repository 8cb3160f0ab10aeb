"""Triplet losses: hand-computed 2-D cases, a brute-force NumPy oracle, gradients, Keras use."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from shared.losses import (
    TripletLoss,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semi_hard_triplet_loss,
    pairwise_squared_distances,
    triplet_loss,
)


def _value(tensor) -> float:
    return float(keras.ops.convert_to_numpy(tensor))


def test_course_triplet_loss_by_hand():
    anchor = np.array([[0.0, 0.0], [0.0, 0.0]], dtype="float32")
    positive = np.array([[1.0, 0.0], [0.0, 1.0]], dtype="float32")
    negative = np.array([[0.0, 2.0], [0.5, 0.5]], dtype="float32")
    # Triplet 1: 1 - 4 + 0.2 < 0 -> 0.  Triplet 2: 1 - 0.5 + 0.2 = 0.7.  Sum 0.7.
    assert _value(triplet_loss(anchor, positive, negative)) == pytest.approx(0.7)
    # alpha 0.5: 0 + (1 - 0.5 + 0.5).
    assert _value(triplet_loss(anchor, positive, negative, alpha=0.5)) == pytest.approx(1.0)


# Four 2-D embeddings, two identities:
#   e0 = (0, 0) and e1 = (1, 0) are person 0; e2 = (0, 1) and e3 = (2, 1) are person 1.
# Squared distances: d01 = 1, d02 = 1, d03 = 5, d12 = 2, d13 = 2, d23 = 4.
# With margin 0.2, the triplets (a, p, n) and d(a,p) - d(a,n) + 0.2:
#   (0,1,2)  1-1+.2 = 0.2    (0,1,3)  1-5+.2 < 0    (1,0,2)  1-2+.2 < 0    (1,0,3)  1-2+.2 < 0
#   (2,3,0)  4-1+.2 = 3.2    (2,3,1)  4-2+.2 = 2.2  (3,2,0)  4-5+.2 < 0    (3,2,1)  4-2+.2 = 2.2
# batch-all: mean of the 4 positive ones = (0.2 + 3.2 + 2.2 + 2.2) / 4 = 1.95.
# batch-hard, per anchor (farthest positive, closest negative):
#   a0: 1 vs min(1, 5) -> 0.2;  a1: 1 vs min(2, 2) -> 0;  a2: 4 vs min(1, 2) -> 3.2;
#   a3: 4 vs min(5, 2) -> 2.2;  mean = 5.6 / 4 = 1.4.
# semi-hard, per positive pair (closest negative farther than the positive, else farthest):
#   (0,1): d 1, negatives {1, 5} -> 5 -> 0;   (1,0): d 1, negatives {2, 2} -> 2 -> 0;
#   (2,3): d 4, negatives {1, 2}, none > 4 -> farthest 2 -> 2.2;
#   (3,2): d 4, negatives {5, 2} -> 5 -> 0;   mean = 2.2 / 4 = 0.55.
FOUR_POINTS = np.array([[0, 0], [1, 0], [0, 1], [2, 1]], dtype="float32")
FOUR_LABELS = np.array([0, 0, 1, 1])


def test_pairwise_squared_distances_by_hand():
    expected = np.array([[0, 1, 1, 5], [1, 0, 2, 2], [1, 2, 0, 4], [5, 2, 4, 0]])
    distances = keras.ops.convert_to_numpy(pairwise_squared_distances(FOUR_POINTS))
    np.testing.assert_allclose(distances, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        (batch_all_triplet_loss, 1.95),
        (batch_hard_triplet_loss, 1.4),
        (batch_semi_hard_triplet_loss, 0.55),
    ],
)
def test_mined_losses_by_hand(loss, expected):
    assert _value(loss(FOUR_LABELS, FOUR_POINTS)) == pytest.approx(expected, abs=1e-6)
    # Labels as a Keras column of floats give the same answer.
    column = FOUR_LABELS[:, None].astype("float32")
    assert _value(loss(column, FOUR_POINTS)) == pytest.approx(expected, abs=1e-6)


def _gradient_on_embeddings(loss, labels, embeddings):
    variable = tf.Variable(embeddings)
    with tf.GradientTape() as tape:
        value = loss(labels, variable, margin=0.5)
    return _value(value), tape.gradient(value, variable).numpy()


def test_semi_hard_picks_the_closest_negative_beyond_the_positive():
    # Anchor (0,0) and positive (1,0): d = 1 both ways. Four negatives of other people
    # on the line x = 0.5, at squared distance 0.25 + y² from both: 0.26 (harder than
    # the positive), 1.25 and 1.69 (semi-hard), 9.25 (easy).
    embeddings = np.array(
        [[0, 0], [1, 0], [0.5, 0.1], [0.5, 1], [0.5, 1.2], [0.5, 3]], dtype="float32"
    )
    labels = np.array([0, 0, 1, 2, 3, 4])
    value, gradient = _gradient_on_embeddings(batch_semi_hard_triplet_loss, labels, embeddings)
    assert value == pytest.approx(1 - 1.25 + 0.5, abs=1e-6)  # both pairs choose 1.25
    moved = np.flatnonzero(np.abs(gradient[2:]).sum(axis=1) > 1e-6) + 2
    np.testing.assert_array_equal(moved, [3])  # only the semi-hard negative is pushed
    # Batch-hard on the same batch pushes the hardest negative instead.
    value, gradient = _gradient_on_embeddings(batch_hard_triplet_loss, labels, embeddings)
    assert value == pytest.approx(1 - 0.26 + 0.5, abs=1e-6)
    moved = np.flatnonzero(np.abs(gradient[2:]).sum(axis=1) > 1e-6) + 2
    np.testing.assert_array_equal(moved, [2])


def _brute_force(labels, embeddings, margin):
    """The three mining rules written as plain loops over all triplets."""
    count = len(labels)
    distance = [[float(np.sum((e - f) ** 2)) for f in embeddings] for e in embeddings]
    all_losses, hard_losses, semi_hard_losses = [], [], []
    for anchor in range(count):
        positives = [p for p in range(count) if p != anchor and labels[p] == labels[anchor]]
        negatives = [n for n in range(count) if labels[n] != labels[anchor]]
        if not positives or not negatives:
            continue
        for positive, negative in itertools.product(positives, negatives):
            loss = distance[anchor][positive] - distance[anchor][negative] + margin
            if loss > 0:
                all_losses.append(loss)
        hardest_positive = max(distance[anchor][p] for p in positives)
        hardest_negative = min(distance[anchor][n] for n in negatives)
        hard_losses.append(max(hardest_positive - hardest_negative + margin, 0.0))
        for positive in positives:
            d_ap = distance[anchor][positive]
            beyond = [distance[anchor][n] for n in negatives if distance[anchor][n] > d_ap]
            chosen = min(beyond) if beyond else max(distance[anchor][n] for n in negatives)
            semi_hard_losses.append(max(d_ap - chosen + margin, 0.0))
    return {
        batch_all_triplet_loss: np.mean(all_losses) if all_losses else 0.0,
        batch_hard_triplet_loss: np.mean(hard_losses),
        batch_semi_hard_triplet_loss: np.mean(semi_hard_losses),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mined_losses_match_brute_force_on_random_unit_embeddings(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 16)
    labels[-1] = 9  # an identity with a single sample: it anchors nothing
    embeddings = rng.normal(size=(16, 8))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    expected = _brute_force(labels, embeddings, margin=0.2)
    for loss, value in expected.items():
        assert value > 0
        assert _value(loss(labels, embeddings.astype("float32"))) == pytest.approx(value, rel=1e-4)


@pytest.mark.parametrize(
    "loss", [batch_all_triplet_loss, batch_hard_triplet_loss, batch_semi_hard_triplet_loss]
)
def test_gradients_are_finite_even_for_identical_embeddings(loss):
    embeddings = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0.6, 0.8]], dtype="float32")
    labels = np.array([0, 0, 1, 1, 0])
    value, gradient = _gradient_on_embeddings(loss, labels, embeddings)
    assert np.isfinite(value) and value > 0
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0


def test_no_valid_triplet_gives_zero_not_nan():
    for loss in (batch_all_triplet_loss, batch_hard_triplet_loss, batch_semi_hard_triplet_loss):
        assert _value(loss(np.array([0, 1, 2]), FOUR_POINTS[:3])) == 0.0  # nobody has a positive


def test_triplet_loss_trains_a_keras_model_and_round_trips_its_config():
    loss = TripletLoss("hard", margin=0.3)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, TripletLoss) and restored.mining == "hard"
    assert restored.margin == 0.3
    assert _value(loss(FOUR_LABELS, FOUR_POINTS)) == pytest.approx(
        _value(batch_hard_triplet_loss(FOUR_LABELS, FOUR_POINTS, margin=0.3))
    )

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(4),
            keras.layers.UnitNormalization(),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=TripletLoss("semi_hard"))
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 4)
    inputs = rng.normal(size=(16, 6)).astype("float32") + labels[:, None]
    history = model.fit(inputs, labels, batch_size=16, epochs=5, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="mining must be one of"):
        TripletLoss("random")

"""Triplet losses for training face embeddings (FaceNet, Schroff et al. 2015).

A triplet is an anchor ``a``, a positive ``p`` (same person) and a negative ``n``
(someone else); the loss wants ``||a - p||² + alpha < ||a - n||²`` and charges
``max(||a - p||² - ||a - n||² + alpha, 0)`` otherwise. Distances are squared
Euclidean, as in FaceNet, on L2-normalised embeddings, so ``alpha`` (0.2 by
default, FaceNet's value) is on the scale of squared distances on the unit
sphere, which lie in [0, 4].

``triplet_loss`` takes triplets already formed. The three ``batch_*`` functions
form them inside a batch of labelled embeddings ("online mining"), which is how
FaceNet is trained; they have the signature of a Keras loss,
``loss(labels, embeddings)``, and ``TripletLoss`` wraps them for
``model.compile``. Everything is written with ``keras.ops``, so it runs on any
Keras 3 backend and differentiates everywhere (squared distances have no square
root whose gradient would blow up at 0).
"""

from __future__ import annotations

import keras
from keras import ops

DEFAULT_MARGIN = 0.2


def triplet_loss(anchor, positive, negative, alpha: float = DEFAULT_MARGIN):
    """Sum over the batch of ``max(||a - p||² - ||a - n||² + alpha, 0)`` (the course's loss).

    ``anchor``, ``positive`` and ``negative`` are ``(batch, dim)`` embeddings,
    row ``i`` of each forming one triplet.
    """
    positive_distance = ops.sum(ops.square(anchor - positive), axis=-1)
    negative_distance = ops.sum(ops.square(anchor - negative), axis=-1)
    return ops.sum(ops.relu(positive_distance - negative_distance + alpha))


def pairwise_squared_distances(embeddings):
    """``D[i, j] = ||e_i - e_j||²`` for a ``(batch, dim)`` tensor, via one matrix product.

    Rounding can make ``|e_i|² - 2 e_i·e_j + |e_j|²`` slightly negative; it is
    clipped at 0.
    """
    gram = ops.matmul(embeddings, ops.transpose(embeddings))
    squared_norms = ops.diagonal(gram)
    distances = ops.expand_dims(squared_norms, 1) - 2.0 * gram + ops.expand_dims(squared_norms, 0)
    return ops.maximum(distances, 0.0)


def _pair_masks(labels, batch_size):
    """Boolean ``(batch, batch)`` masks of valid (anchor, positive) and (anchor, negative) pairs."""
    labels = ops.reshape(labels, (-1,))
    same_label = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    not_itself = ops.logical_not(ops.cast(ops.eye(batch_size), "bool"))
    return ops.logical_and(same_label, not_itself), ops.logical_not(same_label)


def _mean_where(values, mask):
    """Mean of ``values`` where ``mask`` holds, 0 when it holds nowhere."""
    mask = ops.cast(mask, values.dtype)
    return ops.divide_no_nan(ops.sum(values * mask), ops.sum(mask))


def batch_all_triplet_loss(labels, embeddings, margin: float = DEFAULT_MARGIN):
    """Mean loss over every valid triplet of the batch that still violates the margin.

    Valid: ``a != p``, ``label(a) == label(p)``, ``label(n) != label(a)``.
    Averaging only over the triplets with a positive loss (Hermans et al. 2017)
    keeps the gradient from fading as most triplets become easy; 0 when none is
    left. Memory grows as ``batch³``.
    """
    distances = pairwise_squared_distances(embeddings)
    positive_pairs, negative_pairs = _pair_masks(labels, ops.shape(embeddings)[0])
    # losses[a, p, n] = d(a, p) - d(a, n) + margin
    losses = ops.expand_dims(distances, 2) - ops.expand_dims(distances, 1) + margin
    valid = ops.logical_and(ops.expand_dims(positive_pairs, 2), ops.expand_dims(negative_pairs, 1))
    losses = ops.relu(losses)
    return _mean_where(losses, ops.logical_and(valid, losses > 0.0))


def batch_hard_triplet_loss(labels, embeddings, margin: float = DEFAULT_MARGIN):
    """Per anchor, its farthest positive against its closest negative; mean over anchors.

    ``mean_a max(max_p d(a, p) - min_n d(a, n) + margin, 0)`` over the anchors
    that have both a positive and a negative in the batch (Hermans et al. 2017).
    """
    distances = pairwise_squared_distances(embeddings)
    positive_pairs, negative_pairs = _pair_masks(labels, ops.shape(embeddings)[0])
    farthest = ops.stop_gradient(ops.max(distances))  # a filler larger than any distance
    hardest_positive = ops.max(ops.where(positive_pairs, distances, 0.0), axis=1)
    hardest_negative = ops.min(ops.where(negative_pairs, distances, farthest), axis=1)
    losses = ops.relu(hardest_positive - hardest_negative + margin)
    has_both = ops.logical_and(ops.any(positive_pairs, axis=1), ops.any(negative_pairs, axis=1))
    return _mean_where(losses, has_both)


def batch_semi_hard_triplet_loss(labels, embeddings, margin: float = DEFAULT_MARGIN):
    """FaceNet's semi-hard mining: mean loss over all (anchor, positive) pairs.

    For each pair, the negative is the closest one that is still farther from
    the anchor than the positive (``d(a, p) < d(a, n)``, "semi-hard": it
    violates the margin without being harder than the positive). Picking the
    hardest negatives instead tends to collapse the embedding early in
    training, as FaceNet reports. When no negative is farther than the
    positive, the farthest negative is used (as TensorFlow Addons'
    ``triplet_semihard_loss`` does). Pairs whose anchor has no negative at all
    are left out.
    """
    distances = pairwise_squared_distances(embeddings)
    positive_pairs, negative_pairs = _pair_masks(labels, ops.shape(embeddings)[0])
    farthest = ops.stop_gradient(ops.max(distances))  # a filler larger than any distance
    positive_distance = ops.expand_dims(distances, 2)  # [a, p, 1]
    negative_distance = ops.expand_dims(distances, 1)  # [a, 1, n]
    is_negative = ops.expand_dims(negative_pairs, 1)
    semi_hard = ops.logical_and(is_negative, negative_distance > positive_distance)
    closest_semi_hard = ops.min(ops.where(semi_hard, negative_distance, farthest), axis=2)
    farthest_negative = ops.max(ops.where(negative_pairs, distances, 0.0), axis=1, keepdims=True)
    chosen = ops.where(ops.any(semi_hard, axis=2), closest_semi_hard, farthest_negative)
    losses = ops.relu(distances - chosen + margin)
    has_negative = ops.any(negative_pairs, axis=1, keepdims=True)
    return _mean_where(losses, ops.logical_and(positive_pairs, has_negative))


MINING_STRATEGIES = {
    "all": batch_all_triplet_loss,
    "hard": batch_hard_triplet_loss,
    "semi_hard": batch_semi_hard_triplet_loss,
}


@keras.saving.register_keras_serializable(package="convnet_apps")
class TripletLoss(keras.losses.Loss):
    """Online-mined triplet loss for ``model.compile(loss=TripletLoss("semi_hard"))``.

    ``y_true`` holds one integer identity per sample and ``y_pred`` the
    L2-normalised embeddings; the batch must contain several samples per
    identity for triplets to exist. The loss is already a mean over the mined
    triplets, so it is a scalar per batch.
    """

    def __init__(
        self, mining: str = "semi_hard", margin: float = DEFAULT_MARGIN, name: str = "triplet_loss"
    ):
        if mining not in MINING_STRATEGIES:
            raise ValueError(f"mining must be one of {sorted(MINING_STRATEGIES)}, got {mining!r}")
        super().__init__(name=name)
        self.mining = mining
        self.margin = margin

    def call(self, y_true, y_pred):
        return MINING_STRATEGIES[self.mining](y_true, y_pred, self.margin)

    def get_config(self) -> dict:
        return {"mining": self.mining, "margin": self.margin, "name": self.name}

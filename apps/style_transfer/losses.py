"""The costs of neural style transfer (Gatys et al.), as the deeplearning.ai course defines them.

Activations are ``(1, n_H, n_W, n_C)`` tensors (a batch of one, channels last), as the
course's ``compute_content_cost`` and ``compute_layer_style_cost`` take them.

Two families live here, and the relation between them is exact:

* The course's costs (``content_cost``, ``gram_matrix``, ``layer_style_cost``,
  ``style_cost``, ``total_cost``) keep the course's constants, so their values match the
  assignment's and can be checked by hand.
* The *relative* costs the optimiser uses (``relative_content_cost``,
  ``relative_style_cost`` on ``normalized_gram`` matrices). Each is the course cost
  divided by the course cost of an all-zero activation, i.e. a relative squared error::

      relative_content_cost(a_C, a_G) = content_cost(a_C, a_G) / content_cost(a_C, 0)
                                      = Σ(a_C − a_G)² / Σ a_C²
      relative_style_cost(gram(a_S), gram(a_G))
                                      = layer_style_cost(a_S, a_G) / layer_style_cost(a_S, 0)
                                      = Σ(G_S − G_G)² / Σ G_S²

  Why: the course's constants leave the content and each style layer on scales that differ by
  orders of magnitude from one network and image size to another (the course's first
  iteration prints a style cost of 1e8 next to a content cost of 8e3), so one pair of weights
  would not carry over between VGG-19 and SqueezeNet or between 256 and 512 pixels. Divided by
  their value at zero, every part starts near 1 and the same weights work everywhere.
  ``normalized_gram`` divides by n_H·n_W (the mean instead of the sum over positions), which
  keeps float32 Gram entries small; the ratio above does not depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

TensorLike = tf.Tensor | np.ndarray

COURSE_ALPHA = 10.0
COURSE_BETA = 40.0


def _shape(activation: tf.Tensor) -> tuple[int, int, int]:
    _, n_h, n_w, n_c = activation.shape
    return int(n_h), int(n_w), int(n_c)


def unroll(activation: TensorLike) -> tf.Tensor:
    """(1, n_H, n_W, n_C) → (n_C, n_H·n_W): one row per channel, as the course's Gram expects.

    Reshaping straight to (n_C, n_H·n_W) would interleave channels and positions; the
    transpose after the reshape keeps each row one channel.
    """
    activation = tf.convert_to_tensor(activation, tf.float32)
    n_h, n_w, n_c = _shape(activation)
    return tf.transpose(tf.reshape(activation, (n_h * n_w, n_c)))


def content_cost(a_c: TensorLike, a_g: TensorLike) -> tf.Tensor:
    """J_content = 1/(4·n_H·n_W·n_C) · Σ(a_C − a_G)² at one layer."""
    a_c = tf.convert_to_tensor(a_c, tf.float32)
    a_g = tf.convert_to_tensor(a_g, tf.float32)
    n_h, n_w, n_c = _shape(a_c)
    return tf.reduce_sum(tf.square(a_c - a_g)) / (4.0 * n_h * n_w * n_c)


def gram_matrix(unrolled: TensorLike) -> tf.Tensor:
    """G = A·Aᵀ for A of shape (n_C, n_H·n_W): channel correlations summed over positions."""
    unrolled = tf.convert_to_tensor(unrolled, tf.float32)
    return tf.matmul(unrolled, unrolled, transpose_b=True)


def layer_style_cost(a_s: TensorLike, a_g: TensorLike) -> tf.Tensor:
    """J_style_layer = 1/(4·n_C²·(n_H·n_W)²) · Σ(G_S − G_G)² at one layer."""
    a_s = tf.convert_to_tensor(a_s, tf.float32)
    n_h, n_w, n_c = _shape(a_s)
    difference = gram_matrix(unroll(a_s)) - gram_matrix(unroll(a_g))
    return tf.reduce_sum(tf.square(difference)) / (4.0 * n_c**2 * (n_h * n_w) ** 2)


def style_cost(
    style_activations: Sequence[TensorLike],
    generated_activations: Sequence[TensorLike],
    layer_weights: Sequence[float],
) -> tf.Tensor:
    """J_style = Σ_l λ_l · J_style_layer(l): the course's weighted sum over style layers."""
    if not len(style_activations) == len(generated_activations) == len(layer_weights):
        raise ValueError("style_cost needs one style activation, generated one and weight a layer")
    layers = zip(style_activations, generated_activations, layer_weights, strict=True)
    return tf.add_n([weight * layer_style_cost(a_s, a_g) for a_s, a_g, weight in layers])


def total_cost(
    j_content: TensorLike | float,
    j_style: TensorLike | float,
    alpha: float = COURSE_ALPHA,
    beta: float = COURSE_BETA,
):
    """J = α·J_content + β·J_style (the course's defaults α = 10, β = 40)."""
    return alpha * j_content + beta * j_style


def total_variation(image: TensorLike) -> tf.Tensor:
    """Mean squared difference between horizontal plus vertical neighbours of (1, H, W, C) pixels.

    Why squared and a mean: squared differences are smooth everywhere (L-BFGS needs that; the
    L1 form of ``tf.image.total_variation`` has a kink at every flat patch), and a mean keeps
    one ``--tv-weight`` meaning the same thing at every image size.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    horizontal = image[:, :, 1:, :] - image[:, :, :-1, :]
    vertical = image[:, 1:, :, :] - image[:, :-1, :, :]
    return tf.reduce_mean(tf.square(horizontal)) + tf.reduce_mean(tf.square(vertical))


def normalized_gram(activation: TensorLike) -> tf.Tensor:
    """Gram matrix averaged over positions: gram_matrix(unroll(a)) / (n_H·n_W).

    Works on a batch of one with unknown spatial size (inside a compiled function that is
    traced once per image size).
    """
    return _normalized_gram(tf.convert_to_tensor(activation, tf.float32))


@tf.custom_gradient
def _normalized_gram(activation: tf.Tensor):
    """``normalized_gram`` with a gradient of one matrix product instead of two.

    G = PᵀP / n for the (n, C) positions P. TensorFlow's generic gradient of a product whose
    two factors are the same tensor computes P·dGᵀ and P·dG separately and adds them; here it
    is P·(dG + dGᵀ) / n, half the work: on VGG-19 at 512x512 the style layers' Gram gradients
    took 0.14 s + 0.09 s + … with two products and about half with one (measured).
    """
    channels = tf.shape(activation)[-1]
    positions = tf.reshape(activation, (-1, channels))
    count = tf.cast(tf.shape(positions)[0], tf.float32)

    def gradient(upstream: tf.Tensor) -> tf.Tensor:
        symmetric = (upstream + tf.transpose(upstream)) / count
        return tf.reshape(tf.matmul(positions, symmetric), tf.shape(activation))

    return tf.matmul(positions, positions, transpose_a=True) / count, gradient


def relative_content_cost(a_c: TensorLike, a_g: TensorLike) -> tf.Tensor:
    """Σ(a_C − a_G)² / Σ a_C² = content_cost(a_C, a_G) / content_cost(a_C, 0)."""
    a_c = tf.convert_to_tensor(a_c, tf.float32)
    a_g = tf.convert_to_tensor(a_g, tf.float32)
    return tf.reduce_sum(tf.square(a_c - a_g)) / tf.reduce_sum(tf.square(a_c))


def relative_style_cost(target_gram: TensorLike, generated_gram: TensorLike) -> tf.Tensor:
    """Σ(G_S − G_G)² / Σ G_S² on Gram matrices of one layer (any common normalisation).

    With ``normalized_gram`` of a style and a generated activation this equals
    layer_style_cost(a_S, a_G) / layer_style_cost(a_S, 0). The target may also be a blend of
    several styles' Grams (see ``optimize``).
    """
    target_gram = tf.convert_to_tensor(target_gram, tf.float32)
    generated_gram = tf.convert_to_tensor(generated_gram, tf.float32)
    squared_error = tf.reduce_sum(tf.square(target_gram - generated_gram))
    return squared_error / tf.reduce_sum(tf.square(target_gram))

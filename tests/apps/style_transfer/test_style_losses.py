"""The course's costs against hand-computed values; the optimiser's relative costs against them."""

import numpy as np
import pytest
import tensorflow as tf

from apps.style_transfer import losses

# One position per pixel of a 1x2 image with 2 channels: pixel (0,0) = (1, 2), pixel (0,1) = (3, 4).
TWO_PIXELS = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])


def test_content_cost_by_hand():
    # Σ(a_C − 0)² = 1 + 4 + 9 + 16 = 30, divided by 4·n_H·n_W·n_C = 4·1·2·2 = 16.
    assert float(losses.content_cost(TWO_PIXELS, np.zeros_like(TWO_PIXELS))) == pytest.approx(1.875)
    # Moving every activation by 0.5: Σ = 4·0.25 = 1, / 16.
    assert float(losses.content_cost(TWO_PIXELS, TWO_PIXELS + 0.5)) == pytest.approx(1 / 16)


def test_unroll_keeps_one_channel_per_row():
    np.testing.assert_array_equal(losses.unroll(TWO_PIXELS).numpy(), [[1, 3], [2, 4]])


def test_gram_matrix_by_hand():
    # A = [[1, 2], [3, 4]]: A·Aᵀ = [[1+4, 3+8], [3+8, 9+16]].
    gram = losses.gram_matrix(np.array([[1.0, 2.0], [3.0, 4.0]])).numpy()
    np.testing.assert_allclose(gram, [[5, 11], [11, 25]])


def test_gram_matrix_matches_numpy_on_random_values():
    rng = np.random.default_rng(0)
    unrolled = rng.normal(size=(3, 7)).astype(np.float32)
    gram = losses.gram_matrix(unrolled).numpy()
    np.testing.assert_allclose(gram, unrolled @ unrolled.T, rtol=1e-5)


def test_layer_style_cost_by_hand():
    # unroll → [[1, 3], [2, 4]], G_S = [[10, 14], [14, 20]]; against G_G = 0:
    # Σ G_S² = 100 + 196 + 196 + 400 = 892, divided by 4·n_C²·(n_H·n_W)² = 4·4·4 = 64.
    zeros = np.zeros_like(TWO_PIXELS)
    assert float(losses.layer_style_cost(TWO_PIXELS, zeros)) == pytest.approx(892 / 64)
    # Swapping the two pixels leaves the Gram matrix, hence the style cost, unchanged.
    swapped = TWO_PIXELS[:, :, ::-1, :]
    assert float(losses.layer_style_cost(TWO_PIXELS, swapped)) == pytest.approx(0.0)


def test_style_cost_is_the_weighted_sum_of_layers():
    zeros = np.zeros_like(TWO_PIXELS)
    doubled = 2 * TWO_PIXELS  # G_S doubles → ×4, difference to zero ×4 → squared ×16.
    j = losses.style_cost([TWO_PIXELS, doubled], [zeros, zeros], [0.25, 0.75])
    assert float(j) == pytest.approx(0.25 * 892 / 64 + 0.75 * 16 * 892 / 64)
    with pytest.raises(ValueError, match="one style activation"):
        losses.style_cost([TWO_PIXELS], [zeros, zeros], [1.0])


def test_total_cost_matches_the_course():
    np.random.seed(3)
    j_content = np.random.randn()
    j_style = np.random.randn()
    assert losses.total_cost(j_content, j_style) == pytest.approx(35.34667875478276, abs=1e-12)
    assert losses.total_cost(j_content, j_style, alpha=1, beta=0) == j_content


def test_total_variation_by_hand():
    # One channel, 2x2: [[0, 1], [3, 5]]. Horizontal differences 1, 2 → mean of squares 2.5;
    # vertical differences 3, 4 → mean of squares 12.5.
    image = np.array([[[[0.0], [1.0]], [[3.0], [5.0]]]])
    assert float(losses.total_variation(image)) == pytest.approx(15.0)
    assert float(losses.total_variation(np.full((1, 4, 5, 3), 7.0))) == 0.0


def test_normalized_gram_is_the_course_gram_over_positions():
    rng = np.random.default_rng(1)
    activation = rng.normal(size=(1, 3, 4, 5)).astype(np.float32)
    expected = losses.gram_matrix(losses.unroll(activation)).numpy() / 12
    np.testing.assert_allclose(losses.normalized_gram(activation).numpy(), expected, rtol=1e-5)


def test_normalized_gram_gradient_matches_the_course_grams_autodiff():
    # The hand-written gradient P·(dG + dGᵀ)/n against TensorFlow differentiating the course's
    # Gram; an asymmetric upstream weight checks that both transposes are there.
    rng = np.random.default_rng(4)
    activation = tf.constant(rng.normal(size=(1, 3, 4, 5)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(5, 5)).astype(np.float32))

    def weighted_sum_gradient(gram_of):
        with tf.GradientTape() as tape:
            tape.watch(activation)
            value = tf.reduce_sum(upstream * gram_of(activation))
        return tape.gradient(value, activation).numpy()

    expected = weighted_sum_gradient(lambda a: losses.gram_matrix(losses.unroll(a)) / 12)
    actual = weighted_sum_gradient(losses.normalized_gram)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_relative_costs_are_course_costs_divided_by_their_value_at_zero():
    rng = np.random.default_rng(2)
    target = rng.normal(1.0, 4.0, size=(1, 4, 4, 3)).astype(np.float32)
    generated = rng.normal(1.0, 4.0, size=(1, 4, 4, 3)).astype(np.float32)
    zeros = np.zeros_like(target)

    content_ratio = float(
        losses.content_cost(target, generated) / losses.content_cost(target, zeros)
    )
    relative = float(losses.relative_content_cost(target, generated))
    assert relative == pytest.approx(content_ratio, rel=1e-5)

    style_ratio = float(
        losses.layer_style_cost(target, generated) / losses.layer_style_cost(target, zeros)
    )
    target_gram = losses.normalized_gram(target)
    relative = float(losses.relative_style_cost(target_gram, losses.normalized_gram(generated)))
    assert relative == pytest.approx(style_ratio, rel=1e-5)
    assert float(losses.relative_style_cost(target_gram, np.zeros((3, 3)))) == pytest.approx(1.0)

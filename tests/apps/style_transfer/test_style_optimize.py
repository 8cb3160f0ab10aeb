"""The optimiser on a tiny stand-in network (random weights): gradients, bounds, scales, colours."""

import cv2
import keras
import numpy as np
import pytest

from apps.style_transfer import optimize
from apps.style_transfer.optimize import LossWeights, Objective, TransferSettings
from shared.errors import InputError


@pytest.fixture(scope="module")
def features():
    """Two small conv layers: style on both, content on the second (as VGG's layer lists)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    first = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    pooled = keras.layers.AveragePooling2D(2)(first)
    second = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(pooled)
    model = keras.Model(inputs, [second, first, second])
    return lambda image: model(image / 127.5 - 1.0)


def _images(seed=0, shape=(48, 64, 3)):
    rng = np.random.default_rng(seed)
    content = cv2.GaussianBlur(rng.uniform(0, 255, shape).astype(np.float32), (5, 5), 0)
    style = np.zeros(shape, np.float32)
    style[:, ::4] = 255  # vertical stripes: a style the content does not have
    return content, style


def test_parts_at_the_content_image(features):
    content, style = _images()
    objective = Objective(features, content, [content], LossWeights(1, 10, 0.5))
    parts, gradient = objective.evaluate(content)
    assert parts.content == pytest.approx(0, abs=1e-6)
    assert parts.style == pytest.approx(0, abs=1e-6)
    assert parts.tv == pytest.approx(1.0, rel=1e-5)  # relative to the content's own
    assert parts.total == pytest.approx(0.5, rel=1e-5)
    assert gradient.shape == content.shape

    other = Objective(features, content, [style], LossWeights(1, 10, 0.5)).evaluate(content)[0]
    assert other.style > 0.01
    assert other.total == pytest.approx(10 * other.style + 0.5 * other.tv, rel=1e-5)


def test_gradient_matches_finite_differences(features):
    content, style = _images()
    point = np.clip(content + np.random.default_rng(1).normal(0, 20, content.shape), 0, 255)
    # Each part on its own, along its own gradient (a random direction's derivative is lost in
    # float32 rounding), with central differences one pixel level wide.
    for weights in (LossWeights(1, 0, 0), LossWeights(0, 1, 0), LossWeights(0, 0, 1)):
        objective = Objective(features, content, [style], weights)
        _, gradient = objective.evaluate(point)
        direction = gradient / np.linalg.norm(gradient)
        plus = objective.evaluate(point + direction)[0].total
        minus = objective.evaluate(point - direction)[0].total
        numeric = (plus - minus) / 2
        assert float(np.sum(gradient * direction)) == pytest.approx(numeric, rel=1e-2)


def test_blended_styles_equal_one_style_with_the_blended_grams(features):
    content, stripes = _images()
    flat = np.full_like(stripes, 100.0)
    weights = LossWeights(1, 10, 0)
    single = Objective(features, content, [stripes], weights)
    same_twice = Objective(features, content, [stripes, stripes], weights, style_blend=(1, 3))
    assert same_twice.evaluate(content)[0].style == pytest.approx(
        single.evaluate(content)[0].style, rel=1e-5
    )
    mostly_stripes = Objective(features, content, [stripes, flat], weights, style_blend=(9, 1))
    mostly_flat = Objective(features, content, [stripes, flat], weights, style_blend=(1, 9))
    at_stripes = stripes.copy()
    assert mostly_stripes.evaluate(at_stripes)[0].style < mostly_flat.evaluate(at_stripes)[0].style
    with pytest.raises(InputError, match="2 weights for 1 style"):
        Objective(features, content, [stripes], weights, style_blend=(1, 2))
    with pytest.raises(InputError, match="not all zero"):
        Objective(features, content, [stripes, flat], weights, style_blend=(0, 0))


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimizers_lower_the_loss_within_bounds(features, optimizer):
    content, style = _images()
    objective = Objective(features, content, [style], LossWeights(1, 100, 0.01))
    start = np.random.default_rng(3).uniform(0, 255, content.shape).astype(np.float32)
    seen = []

    def record(step, parts, image):
        seen.append((step, parts.total, float(image.min()), float(image.max())))

    if optimizer == "lbfgs":
        result = optimize.minimize_lbfgs(objective, start, 15, record)
    else:
        result = optimize.minimize_adam(objective, start, 15, 8.0, record)
    assert [step for step, *_ in seen] == list(range(16))  # 0 is the start
    assert result.min() >= 0 and result.max() <= 255
    assert all(low >= 0 and high <= 255 for *_, low, high in seen)
    start_total = objective.evaluate(start)[0].total
    assert objective.evaluate(result)[0].total < 0.5 * start_total


def test_scale_sizes_double_up_to_the_requested_size():
    assert optimize.scale_sizes(300, 400, 384, 3) == [(72, 96), (144, 192), (288, 384)]
    assert optimize.scale_sizes(400, 100, 200, 1) == [(200, 50)]
    with pytest.raises(InputError, match="short side would be 24 px"):
        optimize.scale_sizes(300, 400, 128, 3)


def test_colors_of_content_survive_luminance_transfer():
    content, _ = _images()
    tinted = content * np.array([1.0, 0.6, 0.3], np.float32)
    grey = optimize.luminance_image(tinted)
    assert np.allclose(grey[..., 0], grey[..., 2])
    restored = optimize.with_colors_of(grey, tinted)
    assert np.abs(restored - tinted).max() < 1.5  # only rounding inside the colour conversion

    matched = optimize.luminance_image(255 - content, reference=tinted)
    target = optimize.luminance(tinted)
    assert matched[..., 0].mean() == pytest.approx(target.mean(), abs=0.5)
    assert matched[..., 0].std() == pytest.approx(target.std(), rel=0.05)


def _settings(**changes):
    base = dict(size=64, iterations=4, weights=LossWeights(1, 100, 0.01))
    return TransferSettings(**{**base, **changes})


def test_noise_start_repeats_with_the_seed(features):
    content, style = _images()
    first = optimize.stylize_image(features, content, [style], _settings(init="noise", seed=7))
    again = optimize.stylize_image(features, content, [style], _settings(init="noise", seed=7))
    other = optimize.stylize_image(features, content, [style], _settings(init="noise", seed=8))
    assert first.dtype == np.uint8 and first.shape == (48, 64, 3)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other).mean() > 5


def test_scales_and_preserved_colors(features):
    content, style = _images(shape=(64, 96, 3))
    content = content * np.array([1.0, 0.7, 0.4], np.float32)  # a warm tint to keep
    reports = []
    settings = _settings(size=96, scales=2, preserve_colors=True, iterations=3)
    result = optimize.stylize_image(features, content, [style], settings, reports.append)
    expected = [(0, (32, 48), step) for step in range(4)]
    expected += [(1, (64, 96), step) for step in range(4)]
    assert [(r.scale, r.size, r.iteration) for r in reports] == expected
    assert all(r.scales == 2 and r.render().shape == (*r.size, 3) for r in reports)
    np.testing.assert_array_equal(reports[-1].render(), result)
    chroma = cv2.cvtColor(result.astype(np.float32), cv2.COLOR_RGB2YCrCb)[..., 1:]
    expected = cv2.cvtColor(content, cv2.COLOR_RGB2YCrCb)[..., 1:]
    assert np.abs(chroma - expected).mean() < 3


def test_bad_settings_are_user_errors(features):
    content, style = _images()
    with pytest.raises(InputError, match="--optimizer"):
        optimize.stylize_image(features, content, [style], _settings(optimizer="sgd"))
    with pytest.raises(InputError, match="--init"):
        optimize.stylize_image(features, content, [style], _settings(init="zeros"))


def test_style_scale_sets_the_style_size_relative_to_the_content(features, monkeypatch):
    content, _ = _images(shape=(96, 128, 3))
    seen = []
    real_objective = optimize.Objective

    def recording(features, content, styles, *args):
        seen.append([s.shape[:2] for s in styles])
        return real_objective(features, content, styles, *args)

    monkeypatch.setattr(optimize, "Objective", recording)
    tall, wide = np.zeros((200, 100, 3), np.float32), np.zeros((64, 96, 3), np.float32)
    settings = _settings(size=128, iterations=1, style_scale=0.5, scales=2)
    optimize.stylize_image(features, content, [tall, wide], settings)
    # Longest side half the content's at each scale (64, then 128 px), but the short side
    # never under 32 px (the tall style at both scales, the wide one at the first).
    assert seen == [[(64, 32), (32, 48)], [(64, 32), (43, 64)]]

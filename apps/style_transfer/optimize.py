"""Optimising an image's pixels so that its features carry one image's content, another's style.

The network, the targets and the costs form one compiled TensorFlow function (``Objective``):
image in, loss parts and the gradient with respect to the image out. Two optimisers drive it:

* L-BFGS (default): SciPy's ``L-BFGS-B`` fed float64 values and gradients, with the pixel
  range [0, 255] as its bounds. As Gatys et al. found, it reaches a given loss in far fewer
  network evaluations than first-order methods.
* Adam: a plain NumPy Adam on the pixels, clipped to [0, 255] after each step.

``stylize_image`` adds what users of the known tools rely on: coarse-to-fine scales, several
styles blended by weight, the style image's scale relative to the content, and luminance-only
transfer that keeps the content's colours.

Costs are the *relative* costs of ``losses`` (each a squared error divided by its target's
size), so the same weights work for VGG-19 and SqueezeNet at any size; see ``losses`` for their
exact relation to the course's costs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import scipy.optimize
import tensorflow as tf

from apps.style_transfer import losses
from apps.style_transfer.settings import INITS, OPTIMIZERS, LossWeights, TransferSettings
from shared.errors import InputError

# The image is (1, H, W, 3) float32 RGB in [0, 255]; the features are the content layer's
# activation followed by each style layer's.
Features = Callable[[tf.Tensor], Sequence[tf.Tensor]]

PIXEL_MAX = 255.0
MIN_SIDE = 32  # below this the deepest layers (1/16 resolution) have no spatial extent left

# Correction pairs L-BFGS-B keeps. SciPy's own work per iteration grows faster than linearly
# with it and is not small: on tubingen + starry_night at 384x288 with SqueezeNet (60
# iterations, 62 evaluations taking ~10 s in every case) the time outside the network was
# 9.1 s with 3 pairs, 10.3 s with 5, 19.4 s with 10 (SciPy's default) and 29.1 s with 20, for
# final losses 3.88, 3.93, 3.89 and 3.86. Per iteration 10 pairs can converge faster (louvre +
# monet: 2.05 against 2.68 after 300), but at equal time 5 stay ahead (2.68 after 300 iterations
# in 109 s; 10 pairs had 3.30 after the 170 iterations they managed in that time).
LBFGS_HISTORY = 5
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8


@dataclass(frozen=True)
class LossParts:
    """One evaluation's costs: the weighted total and the unweighted relative parts."""

    total: float
    content: float
    style: float
    tv: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# Called with the iteration number, the loss parts at the image after that many iterations and
# the image itself (H, W, 3 float in [0, 255]); iteration 0 is the starting image.
IterationCallback = Callable[[int, LossParts, np.ndarray], None]


class Objective:
    """The content and style targets of one image size and the compiled loss-and-gradient.

    ``style_images`` may hold several styles; their Gram matrices are blended with
    ``style_blend`` (normalised to sum 1). For squared errors that is exact: Σ_k w_k‖G − G_k‖²
    equals (Σ w)·‖G − Σ_k w_k G_k / Σ w‖² plus a constant, so the blended target pulls the
    image the same way as one cost per style would.
    """

    def __init__(
        self,
        features: Features,
        content_image: np.ndarray,
        style_images: Sequence[np.ndarray],
        weights: LossWeights,
        style_blend: Sequence[float] | None = None,
    ) -> None:
        self._features = features
        self._weights = weights
        content_activations = features(_batch(content_image))
        self._content_target = content_activations[0]
        self._layer_weight = 1.0 / (len(content_activations) - 1)  # the course's equal weights
        blend = _blend_weights(style_blend, len(style_images))
        per_style = [
            [losses.normalized_gram(a) for a in features(_batch(style))[1:]]
            for style in style_images
        ]
        self._style_targets = [
            tf.add_n([w * grams[layer] for w, grams in zip(blend, per_style, strict=True)])
            for layer in range(len(per_style[0]))
        ]
        # Total variation relative to the content image's own, so that --tv-weight means the
        # same at every size; a flat content image would make it 0, hence the floor.
        content_tv = float(losses.total_variation(_batch(content_image)))
        self._tv_reference = max(content_tv, 1.0)
        self._compiled = tf.function(self._loss_and_gradient, reduce_retracing=True)

    def _loss_and_gradient(self, image: tf.Tensor):
        with tf.GradientTape() as tape:
            tape.watch(image)
            activations = self._features(image)
            content = losses.relative_content_cost(self._content_target, activations[0])
            style = self._layer_weight * tf.add_n(
                [
                    losses.relative_style_cost(target, losses.normalized_gram(activation))
                    for target, activation in zip(self._style_targets, activations[1:], strict=True)
                ]
            )
            tv = losses.total_variation(image) / self._tv_reference
            total = (
                self._weights.content * content
                + self._weights.style * style
                + self._weights.tv * tv
            )
        return tf.stack([total, content, style, tv]), tape.gradient(total, image)

    def evaluate(self, image: np.ndarray) -> tuple[LossParts, np.ndarray]:
        """Loss parts and d(total)/d(image) for an (H, W, 3) image in [0, 255]."""
        parts, gradient = self._compiled(_batch(image))
        total, content, style, tv = (float(v) for v in parts.numpy())
        return LossParts(total, content, style, tv), gradient.numpy()[0]


def _batch(image: np.ndarray) -> tf.Tensor:
    return tf.convert_to_tensor(np.asarray(image, np.float32)[np.newaxis])


def _blend_weights(style_blend: Sequence[float] | None, count: int) -> list[float]:
    """Blend weights normalised to sum 1; equal when not given."""
    if style_blend is None:
        return [1.0 / count] * count
    if len(style_blend) != count:
        raise InputError(f"--style-blend has {len(style_blend)} weights for {count} style images")
    if any(w < 0 for w in style_blend) or sum(style_blend) <= 0:
        raise InputError("--style-blend weights must be non-negative and not all zero")
    total = float(sum(style_blend))
    return [w / total for w in style_blend]


def minimize_lbfgs(
    objective: Objective,
    start: np.ndarray,
    iterations: int,
    on_iteration: IterationCallback | None = None,
) -> np.ndarray:
    """Run SciPy's L-BFGS-B for ``iterations`` iterations inside the pixel bounds.

    L-BFGS-B may still end a run early (a line search that cannot progress after a sharp
    change of curvature); the run is then restarted from where it stopped with a fresh
    history, as long as the previous run made progress, until the budget is spent.
    """
    shape = start.shape
    # The relative costs are O(1) and spread over ~1e5 pixels, so each pixel's gradient is ~1e-5
    # or less, and L-BFGS-B's stopping tests (projected gradient under pgtol = 1e-5, relative
    # reduction under factr) end the run after 0-1 iterations. Scaling the objective by the
    # pixel count makes per-pixel gradients O(1); with ftol = gtol = 0 the tests are off as
    # well, so a run stops at its iteration budget.
    scale = float(start.size)
    last_parts: list[LossParts] = []
    done = 0

    def value_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        parts, gradient = objective.evaluate(flat.reshape(shape))
        if not last_parts and on_iteration is not None:  # SciPy evaluates the start first
            on_iteration(0, parts, flat.reshape(shape))
        last_parts[:] = [parts]
        return parts.total * scale, gradient.ravel().astype(np.float64) * scale

    def after_iteration(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        # L-BFGS-B accepts the last point its line search evaluated, so last_parts is at x.
        nonlocal done
        done += 1
        if on_iteration is not None:
            on_iteration(done, last_parts[0], intermediate_result.x.reshape(shape))

    current = start.astype(np.float64).ravel()
    while done < iterations:
        before = done
        result = scipy.optimize.minimize(
            value_and_gradient,
            current,
            jac=True,
            method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(0.0, PIXEL_MAX),
            callback=after_iteration,
            options={
                "maxiter": iterations - done,
                "maxfun": 4 * (iterations - done) + 20,
                "maxcor": LBFGS_HISTORY,
                "ftol": 0.0,
                "gtol": 0.0,
            },
        )
        current = result.x
        if done == before:
            break
    return current.reshape(shape)


def minimize_adam(
    objective: Objective,
    start: np.ndarray,
    iterations: int,
    learning_rate: float,
    on_iteration: IterationCallback | None = None,
) -> np.ndarray:
    """Adam on the pixels (learning rate in pixel units), clipped to [0, 255] after each step."""
    beta1, beta2 = ADAM_BETAS
    image = start.astype(np.float32)
    first_moment = np.zeros_like(image)
    second_moment = np.zeros_like(image)
    parts, gradient = objective.evaluate(image)
    if on_iteration is not None:
        on_iteration(0, parts, image)
    for step in range(1, iterations + 1):
        first_moment = beta1 * first_moment + (1 - beta1) * gradient
        second_moment = beta2 * second_moment + (1 - beta2) * gradient**2
        unbiased_first = first_moment / (1 - beta1**step)
        unbiased_second = second_moment / (1 - beta2**step)
        image -= learning_rate * unbiased_first / (np.sqrt(unbiased_second) + ADAM_EPSILON)
        np.clip(image, 0.0, PIXEL_MAX, out=image)
        parts, gradient = objective.evaluate(image)
        if on_iteration is not None:
            on_iteration(step, parts, image)
    return image


def check_settings(settings: TransferSettings, style_count: int) -> None:
    """One clear error for a setting no run could use, before any work starts."""
    if settings.iterations < 1:
        raise InputError(f"--iterations must be at least 1, not {settings.iterations}")
    if settings.scales < 1:
        raise InputError(f"--scales must be at least 1, not {settings.scales}")
    if settings.style_scale <= 0:
        raise InputError(f"--style-scale must be positive, not {settings.style_scale}")
    _blend_weights(settings.style_blend, style_count)
    if settings.optimizer not in OPTIMIZERS:
        raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
    if settings.init not in INITS:
        raise InputError(f"--init must be one of {', '.join(INITS)}, not {settings.init!r}")
    weights = settings.weights
    if min(weights.content, weights.style, weights.tv) < 0:
        raise InputError("--content-weight, --style-weight and --tv-weight must not be negative")


@dataclass(frozen=True)
class IterationReport:
    """Where a multi-scale run stands after one iteration.

    ``render()`` gives the image as the result would show it now (RGB uint8, colours put back
    when they are preserved); it costs a colour conversion, so it is only called on demand.
    """

    scale: int  # 0-based, coarse to fine
    scales: int
    size: tuple[int, int]  # (height, width) of this scale
    iteration: int  # 0 is the scale's starting image
    parts: LossParts
    render: Callable[[], np.ndarray]


def scale_sizes(height: int, width: int, size: int, scales: int) -> list[tuple[int, int]]:
    """(height, width) of every scale, coarse to fine, the last with longest side ``size``."""
    sizes = []
    for level in reversed(range(scales)):
        longest = size / 2**level
        factor = longest / max(height, width)
        scaled = (max(1, round(height * factor)), max(1, round(width * factor)))
        if min(scaled) < MIN_SIDE:
            raise InputError(
                f"at {longest:.0f} px the image's short side would be {min(scaled)} px "
                f"(at least {MIN_SIDE} needed): use a larger --size or fewer --scales"
            )
        sizes.append(scaled)
    return sizes


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bicubic when enlarging."""
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    image = np.asarray(image, np.float32)
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    return np.clip(resized, 0.0, PIXEL_MAX)


def resize_style(image: np.ndarray, longest: int) -> np.ndarray:
    """Resize to ``longest`` px on the longest side, never under ``MIN_SIDE`` on the short one."""
    factor = max(longest / max(image.shape[:2]), MIN_SIDE / min(image.shape[:2]))
    height, width = (max(1, round(side * factor)) for side in image.shape[:2])
    return resize(image, height, width)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """The Y of YCrCb (BT.601, as OpenCV), in [0, 255]."""
    return cv2.cvtColor(np.asarray(rgb, np.float32), cv2.COLOR_RGB2YCrCb)[..., 0]


def luminance_image(rgb: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """The luminance as a grey 3-channel image, optionally matched to ``reference``'s mean and std.

    Gatys et al. (2016, "Preserving colour in neural artistic style transfer") match the style's
    luminance statistics to the content's before luminance-only transfer, so the brightness of
    the result follows the content.
    """
    grey = luminance(rgb)
    if reference is not None:
        target = luminance(reference)
        grey = (grey - grey.mean()) / max(float(grey.std()), 1e-6) * target.std() + target.mean()
    return np.repeat(np.clip(grey, 0.0, PIXEL_MAX)[..., np.newaxis], 3, axis=2)


def with_colors_of(generated: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """``generated``'s luminance with ``colors``'s chroma (Cr, Cb), back in RGB."""
    ycrcb = cv2.cvtColor(np.asarray(colors, np.float32), cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 0] = luminance(generated)
    return np.clip(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB), 0.0, PIXEL_MAX)


def initial_image(init: str, content: np.ndarray, style: np.ndarray, seed: int) -> np.ndarray:
    """The starting image (``init`` in ``INITS``): the content, seeded white noise, the style."""
    if init == "content":
        return content.copy()
    if init == "noise":
        return np.random.default_rng(seed).uniform(0.0, PIXEL_MAX, content.shape).astype(np.float32)
    return resize(style, *content.shape[:2])


def stylize_image(
    features: Features,
    content: np.ndarray,
    styles: Sequence[np.ndarray],
    settings: TransferSettings,
    on_iteration: Callable[[IterationReport], None] | None = None,
) -> np.ndarray:
    """Paint ``content`` in the manner of ``styles`` (RGB arrays); returns an RGB uint8 image.

    Every scale gets its own ``Objective`` (the targets depend on the size) while sharing the
    one feature network, whose input size is free.
    """
    if not styles:
        raise InputError("at least one style image is needed")
    check_settings(settings, len(styles))
    original_content = np.asarray(content, np.float32)
    if settings.preserve_colors:
        content = luminance_image(original_content)
        styles = [luminance_image(style, reference=original_content) for style in styles]

    def finish(image: np.ndarray) -> np.ndarray:
        if settings.preserve_colors:
            image = with_colors_of(image, resize(original_content, *image.shape[:2]))
        return to_uint8(image)

    sizes = scale_sizes(*original_content.shape[:2], settings.size, settings.scales)
    image = None
    for index, (height, width) in enumerate(sizes):
        scaled_content = resize(content, height, width)
        style_longest = round(settings.style_scale * max(height, width))
        scaled_styles = [resize_style(style, style_longest) for style in styles]
        objective = Objective(
            features, scaled_content, scaled_styles, settings.weights, settings.style_blend
        )
        if image is None:
            start = initial_image(settings.init, scaled_content, scaled_styles[0], settings.seed)
        else:
            start = resize(image, height, width)
        report = None
        if on_iteration is not None:

            def report(step, parts, current, index=index, size=(height, width)):
                render = functools.partial(finish, current.copy())
                on_iteration(IterationReport(index, len(sizes), size, step, parts, render))

        if settings.optimizer == "lbfgs":
            image = minimize_lbfgs(objective, start, settings.iterations, report)
        else:
            image = minimize_adam(
                objective, start, settings.iterations, settings.learning_rate, report
            )
    return finish(image)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)

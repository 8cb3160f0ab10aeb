"""The choices and defaults of a style transfer, in one place and without TensorFlow.

``optimize``, ``features`` and ``transfer`` use them, and the ``stylize`` command builds its
options from them (so ``--help`` answers without loading TensorFlow, and a default is never
written twice).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MODELS = ("auto", "vgg19", "squeezenet")
DEFAULT_MODEL = "auto"  # VGG-19 when its weights are at hand, else SqueezeNet (features.py)
INITS = ("content", "noise", "style")
OPTIMIZERS = ("lbfgs", "adam")

# The feature network's arithmetic. float32 is the default and the reference; bfloat16 is an
# explicit opt-in for CPUs with bfloat16 matrix units (AMX, AVX512-BF16), where oneDNN runs the
# convolutions several times faster. Measured on this project's 2-core AMX machine, VGG-19
# loss and gradient at 512x512, both in one process: 0.39 s in bfloat16 against 1.62 s in
# float32, the gradient's cosine to float32's 0.96. On SqueezeNet (1x1 convolutions, small
# channel counts) the casts eat the gain. Results look alike: tubingen + starry_night, 384 px,
# 100 iterations, SqueezeNet: final loss 3.35 (bfloat16) and 3.39 (float32), the same strokes
# and colours. Only the network runs in bfloat16 (weights stay float32, Keras's
# "mixed_bfloat16"); its outputs are cast back, so the Gram matrices, costs and the optimiser
# stay in float32.
PRECISIONS = ("float32", "bfloat16")
# The widths of ``shared.backbones.image_transformer.WIDTHS`` (a Keras module; the commands'
# --help must not load it): full is Johnson et al.'s network, light the one for CPUs.
TRANSFORMER_WIDTHS = ("full", "light")
DEFAULT_PRECISION = "float32"

# The longest side a CPU handles in reasonable time: one VGG-19 iteration at 1024x1024 is
# about four times the ~3 s (float32; well under 1 s with --precision bfloat16 on AMX) of
# 512x512 on two cores. Larger requests are scaled down with a notice.
MAX_SIDE = 1024


@dataclass(frozen=True)
class LossWeights:
    """How much each relative cost counts in the total."""

    content: float = 1.0
    style: float = 100.0
    tv: float = 0.01


@dataclass(frozen=True)
class TransferSettings:
    """Everything that shapes a result besides the network and the images.

    ``size`` is the longest side of the result; ``iterations`` are spent at every scale;
    ``scales`` > 1 starts at size / 2^(scales − 1) and doubles up to ``size``, each scale
    starting from the previous result enlarged. ``style_scale`` sets the style image's longest
    side relative to the content's (larger → larger strokes: the style's patterns keep their
    size in pixels). ``learning_rate`` is Adam's, in pixel units.
    """

    size: int = 384
    iterations: int = 300
    weights: LossWeights = LossWeights()
    style_scale: float = 1.0
    style_blend: tuple[float, ...] | None = None
    preserve_colors: bool = False
    scales: int = 1
    optimizer: str = "lbfgs"
    init: str = "content"
    seed: int = 0
    learning_rate: float = 4.0


@dataclass(frozen=True)
class TrainSettings:
    """What shapes a style trained by ``stylize-train`` besides the photos and the loss network.

    ``width`` is a key of ``shared.backbones.image_transformer.WIDTHS`` (checked by
    ``train.check_train_settings``; that module loads Keras, this one must not).
    """

    width: str = "full"
    image_size: int = 256  # side of the square training crops
    style_size: int = 256  # longest side of the style image (larger: larger strokes)
    batch_size: int = 4
    steps: int = 2000
    learning_rate: float = 1e-3
    # A network painting every photo needs far less style weight than stylize's one image
    # (100): at 100 and 60 the light network covered Starry Night's and The Scream's photos
    # in ripples and dark blotches; 5 and 3 keep the photo and take the style's colours and
    # strokes (800 steps at 256 px, SqueezeNet; README).
    weights: LossWeights = field(default_factory=lambda: LossWeights(style=5.0))
    val_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

"""Layers that Keras does not provide but the classic networks need.

``LocalResponseNormalization`` and ``L2Pooling2D`` (parameter-free) reproduce the classic
networks exactly; ``InstanceNormalization`` is the normalisation of feed-forward style
networks. All are written with ``keras.ops`` only, so they run on any Keras backend and survive
``model.save`` / ``keras.models.load_model`` (they are registered serialisable).
"""

from __future__ import annotations

from keras import layers, ops, saving


@saving.register_keras_serializable(package="convnet_apps")
class LocalResponseNormalization(layers.Layer):
    """Cross-channel LRN as in Caffe and Torch (AlexNet, GoogLeNet, OpenFace nn4).

    ``y = x / (k + alpha / size * sum_{c' in window(c)} x_c'^2) ** beta`` over ``size``
    neighbouring channels centred on ``c``. Note the ``alpha / size``: TensorFlow's
    ``tf.nn.local_response_normalization`` does not divide by the window, so its ``alpha``
    differs by that factor. The published AlexNet uses ``k=2``, GoogLeNet and OpenFace ``k=1``.
    """

    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, **kwargs
    ):
        super().__init__(**kwargs)
        if size % 2 != 1:
            raise ValueError(f"LRN window size must be odd, got {size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, inputs):
        half = self.size // 2
        squared = ops.pad(ops.square(inputs), [[0, 0], [0, 0], [0, 0], [half, half]])
        channels = ops.shape(inputs)[-1]
        window_sum = sum(squared[..., offset : offset + channels] for offset in range(self.size))
        return inputs / ops.power(self.k + (self.alpha / self.size) * window_sum, self.beta)

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "alpha": self.alpha,
            "beta": self.beta,
            "k": self.k,
        }


@saving.register_keras_serializable(package="convnet_apps")
class L2Pooling2D(layers.Layer):
    """L2 (power-2) pooling, ``sqrt(sum x^2)`` over each window, as Torch's ``SpatialLPPooling``.

    FaceNet and OpenFace use it in the pool branch of several Inception modules. It is
    computed as the average pool of ``x^2`` times the window area; the square root is taken of
    at least ``1e-12`` so that an all-zero window (common after ReLU) has a finite gradient.
    """

    def __init__(self, pool_size: int = 3, strides: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.strides = strides or pool_size
        self._average = layers.AveragePooling2D(pool_size, strides=self.strides, padding="valid")

    def call(self, inputs):
        mean_square = self._average(ops.square(inputs))
        return ops.sqrt(ops.maximum(mean_square * float(self.pool_size**2), 1e-12))

    def compute_output_shape(self, input_shape):
        return self._average.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}


@saving.register_keras_serializable(package="convnet_apps")
class InstanceNormalization(layers.Layer):
    """Instance normalisation (Ulyanov et al. 2016): every image's channels to mean 0, variance 1.

    The statistics are taken over the spatial axes of every image separately (a batch of one
    behaves exactly as in a larger batch, at training and at inference alike), then a learned
    per-channel scale and offset are applied. In image-to-image networks this removes the
    content image's contrast, which is what lets a feed-forward style network paint any photo
    the same way. Equivalent to ``GroupNormalization(groups=-1)``, with one reduction instead
    of a reshape per call.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        mean, variance = ops.moments(inputs, axes=[1, 2], keepdims=True)
        normalized = (inputs - mean) * ops.rsqrt(variance + self.epsilon)
        return normalized * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@saving.register_keras_serializable(package="convnet_apps")
class Upsampling2x(layers.Layer):
    """Double the height and width (``nearest`` or ``bilinear``), for inputs of any size.

    The same values as ``UpSampling2D(2, interpolation=...)`` (bilinear with half-pixel
    centres, edges clamped), but traceable with an unknown height and width: Keras's
    ``UpSampling2D`` computes a bilinear output size in Python (so a graph, and an OpenVINO
    model, would be needed for every image size) and repeats pixels for ``nearest`` with a
    tiling that OpenVINO runs in plain reference code. TensorFlow's resize of a size computed
    in the graph becomes one optimised Interpolate operation in OpenVINO. Measured with
    OpenVINO's per-layer profile, one thread, on a 960x540 frame through the light style
    network (machine busy, load ~20): 205 ms of CPU with repetition and slices, 113 ms so.
    """

    def __init__(self, interpolation: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation must be nearest or bilinear, not {interpolation!r}")
        self.interpolation = interpolation

    def call(self, inputs):
        import tensorflow as tf

        size = tf.shape(inputs)[1:3] * 2
        return tf.image.resize(inputs, size, method=self.interpolation)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (
            batch,
            None if height is None else 2 * height,
            None if width is None else 2 * width,
            channels,
        )

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}

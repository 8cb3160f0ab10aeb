"""Input preprocessing shared by several networks; each network module re-exports its own
``preprocess_input`` so that callers never have to remember which convention a network uses.

Both functions accept an RGB array (uint8 or float; any leading batch dimensions) or a tensor
and never modify their input, which matters when a caller keeps the image (style transfer
optimises it; ``keras.applications`` preprocessing edits float NumPy arrays in place).
"""

from __future__ import annotations

import numpy as np
from keras import ops

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
"""ImageNet channel means in BGR order, as subtracted by Caffe-trained networks."""


def scale_to_unit(rgb):
    """RGB in [0, 255] -> float32 RGB in [0, 1] (networks trained on scaled pixels)."""
    if isinstance(rgb, np.ndarray):
        return rgb.astype(np.float32) / np.float32(255.0)
    return ops.cast(rgb, "float32") / 255.0


def scale_to_symmetric_unit(rgb):
    """RGB in [0, 255] -> float32 RGB in [-1, 1] (Inception-v3 and other TF-slim networks)."""
    return scale_to_unit(rgb) * 2.0 - 1.0


def caffe_bgr_mean(rgb):
    """RGB in [0, 255] -> float32 BGR with the ImageNet means subtracted, no scaling (Caffe)."""
    if isinstance(rgb, np.ndarray):
        return rgb[..., ::-1].astype(np.float32) - np.asarray(CAFFE_BGR_MEAN, np.float32)
    return ops.flip(ops.cast(rgb, "float32"), axis=-1) - ops.convert_to_tensor(CAFFE_BGR_MEAN)

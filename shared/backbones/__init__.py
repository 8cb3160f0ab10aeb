"""Building blocks and the networks built from them, behind one factory.

- ``blocks``: conv-BN-activation, residual basic/bottleneck blocks, Inception module, Fire module.
- one module per network: ``lenet5``, ``alexnet``, ``googlenet``, ``nn4_small2``, ``squeezenet``
  (``squeezenet11``), each with its ``preprocess_input``; ``layers`` holds the LRN and L2
  pooling layers they need.
- ``factory``: ``build_backbone``, ``feature_extractor`` and ``preprocessing_for``, covering
  those networks and VGG-16/19, ResNet-50 and InceptionV3 from ``keras.applications``;
  re-exported here.
"""

from shared.backbones.factory import build_backbone, feature_extractor, preprocessing_for

__all__ = ["build_backbone", "feature_extractor", "preprocessing_for"]

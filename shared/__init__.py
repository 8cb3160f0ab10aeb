"""The common Keras layer of convnet-apps.

Building blocks and backbones, metrics, boxes, losses, image and video I/O,
the weights resolver and TensorBoard helpers. Nothing here knows about any app.
"""

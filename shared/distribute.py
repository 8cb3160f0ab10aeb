"""The ``tf.distribute`` strategy a training command runs under (``--strategy``).

One choice for every trainer (``face-train``, ``detect-cars-train``):

- ``default``: one device, no distribution.
- ``mirrored``: one replica per local device: every GPU, or without GPUs every logical CPU
  device (``split_cpu`` makes several of one CPU, which is how a machine without GPUs
  tests the synchronised path).
- ``multi-worker``: ``MultiWorkerMirroredStrategy`` over the cluster described by the
  ``TF_CONFIG`` environment variable (each machine runs the same command with its own
  ``task.index``); every worker must start, and each waits for the others.

A replica computes the loss on its part of every batch; the gradients are summed across
replicas before each update, so the model is the same everywhere.
"""

from __future__ import annotations

import json
import os

from shared.errors import InputError

STRATEGIES = ("default", "mirrored", "multi-worker")
STRATEGY_HELP = (
    "tf.distribute: mirrored over the local devices (GPUs, else logical CPU devices), "
    "multi-worker over the cluster in TF_CONFIG."
)


def distribution_strategy(name: str):
    """The strategy called ``name`` (one of ``STRATEGIES``); InputError for anything else, or
    for ``multi-worker`` without a usable ``TF_CONFIG``."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi-worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise InputError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def _check_tf_config() -> None:
    """Without a cluster, MultiWorkerMirroredStrategy silently trains alone: say so instead."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise InputError("--strategy multi-worker needs the cluster in TF_CONFIG (not set)")
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        if task["type"] not in ("worker", "chief") or not workers:
            raise ValueError(f"task type {task['type']!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(
            f"TF_CONFIG: expected {{'cluster': {{'worker': [host:port, ...]}}, 'task': "
            f"{{'type': 'worker', 'index': i}}}} ({err})"
        ) from None


def worker_index(strategy) -> int:
    """This process's worker number (0 unless under ``multi-worker``): seeds each worker's
    own batches so that the workers do not all draw the same ones."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(getattr(resolver, "task_id", None) or 0)


def split_cpu(devices: int) -> None:
    """Present the CPU as ``devices`` logical devices (call before TensorFlow uses it)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
    )

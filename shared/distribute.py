"""The ``tf.distribute`` strategy a training command runs under (``--strategy``).

One choice for every trainer (``face-train``, ``detect-cars-train``):

- ``default``: one device, no distribution.
- ``mirrored``: one replica per local device: every GPU, or without GPUs every logical CPU
  device (``split_cpu`` makes several of one CPU, which is how a machine without GPUs
  tests the synchronised path).
- ``multi-worker``: ``MultiWorkerMirroredStrategy`` over the cluster described by the
  ``TF_CONFIG`` environment variable (each machine runs the same command with its own
  ``task.index``); every worker must start, and each waits for the others. It must be made
  before TensorFlow runs anything (it sets up the collective ops at start-up): a command
  makes its strategy first.

A replica computes the loss on its part of every batch; the gradients are summed across
replicas before each update, so the model is the same everywhere.
"""

from __future__ import annotations

import contextlib
import json
import os

import click

from shared.errors import InputError

STRATEGIES = ("default", "mirrored", "multi-worker")

strategy_option = click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="default",
    show_default=True,
    help="tf.distribute: mirrored over the local devices (GPUs, else logical CPU devices), "
    "multi-worker over the cluster in TF_CONFIG.",
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
    """This process's worker number (0 unless under ``multi-worker``)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(getattr(resolver, "task_id", None) or 0)


def worker_seed(seed: int, strategy) -> int:
    """The seed of this worker's own batches, so that the workers do not all draw the same."""
    return seed + 1000 * worker_index(strategy)


def split_cpu(devices: int) -> None:
    """Present the CPU as ``devices`` logical devices (call before TensorFlow uses it)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
    )


def fit_scope(model, strategy):
    """The context to call ``model.fit`` in, the model built and compiled in ``strategy``'s scope.

    Under ``MultiWorkerMirroredStrategy``, Keras 3's ``fit`` first all-reduces a batch of data
    eagerly to build the model symbolically, which that strategy cannot do (keras-team/keras
    issue 20585: "Attempt to convert a value (PerReplica...)"). The model is built already, so
    it forgets the strategy it was made under and ``fit`` runs inside the strategy's scope,
    where Keras finds the same strategy without that step; the optimizer's variables are made
    here, in cross-replica context, rather than in the first traced step. Each train step's
    logs go through ``step_logs`` (see there), so no model needs to remember to.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return contextlib.nullcontext()
    with strategy.scope():
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    model._distribute_strategy = None
    if not getattr(model.train_step, "returns_step_logs", False):
        step = model.train_step

        def train_step(data):
            return step_logs(step(data))

        train_step.returns_step_logs = True  # a second fit_scope does not wrap it again
        model.train_step = train_step  # the instance's step, which Keras's fit traces
    return strategy.scope()


def step_logs(logs: dict) -> dict:
    """A train step's logs, ready for Keras 3 to average over the workers.

    Under ``MultiWorkerMirroredStrategy`` Keras averages each log along axis 0, which scalar
    metrics do not have; as one-element vectors they average into the mean over every
    replica of every worker. Unchanged under any other strategy.
    """
    import tensorflow as tf

    if not isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return {name: tf.reshape(value, (1,)) for name, value in logs.items()}

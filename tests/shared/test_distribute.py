"""shared.distribute: the strategy names every trainer accepts, and TF_CONFIG checked before
a multi-worker run (training itself under each strategy: the face-train and detect-cars-train
tests)."""

from __future__ import annotations

import json

import pytest

from shared.distribute import distribution_strategy, worker_index
from shared.errors import InputError


def test_default_strategy_is_one_replica_on_worker_0():
    strategy = distribution_strategy("default")
    assert strategy.num_replicas_in_sync == 1 and worker_index(strategy) == 0


def test_unknown_strategy_is_refused():
    with pytest.raises(InputError, match="--strategy must be one of default, mirrored"):
        distribution_strategy("parameter-server")


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        (None, "needs the cluster in TF_CONFIG"),
        ("not json", "TF_CONFIG: expected"),
        (json.dumps({"cluster": {"worker": ["localhost:1"]}}), "TF_CONFIG: expected"),
        (json.dumps({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps"}}), "TF_CONFIG: expected"),
    ],
)
def test_multi_worker_without_a_usable_cluster_is_one_clear_error(monkeypatch, tf_config, message):
    # Without this check TensorFlow would train alone and call it multi-worker.
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(InputError, match=message):
        distribution_strategy("multi-worker")

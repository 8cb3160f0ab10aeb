"""Run a training command as a ``tf.distribute`` multi-worker cluster on this machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable


def run_local_workers(
    command: str, arguments_of: Callable[[int], list[str]], count: int = 2, timeout: float = 600
) -> list[tuple[int, str, str]]:
    """Start ``count`` worker processes (``python -c command`` with ``arguments_of(index)``), the
    cluster in each one's TF_CONFIG on free local ports; their (return code, stdout, stderr)."""
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:  # held open together, so the ports differ
        handle.bind(("localhost", 0))
    cluster = {"worker": [f"localhost:{handle.getsockname()[1]}" for handle in sockets]}
    for handle in sockets:
        handle.close()
    workers = []
    for index in range(count):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", command, *arguments_of(index)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    try:
        finished = [worker.communicate(timeout=timeout) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    return [(w.returncode, out, err) for w, (out, err) in zip(workers, finished, strict=True)]

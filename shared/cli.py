"""What every command shares: one-line errors, ``--debug``, exit codes, progress bars.

DESIGN.md conventions: exit 0 success, 1 a negative answer (door denied), 2 bad
input or usage; errors are one line on stderr naming the file and what is wrong
(a traceback only with ``--debug``); long work shows a progress bar on a terminal
and stays quiet when piped.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from shared.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

debug_option = click.option(
    "--debug", is_flag=True, help="Show full tracebacks instead of one-line errors."
)


def checked_option(name: str, default: Any, type: click.ParamType, help: str | None = None):
    """An option with its default shown in --help and its value checked when parsed.

    ``type`` is a range (``click.IntRange``, ``click.FloatRange``) or a choice: a bad value
    is then a usage error naming the flag (exit 2) before any work starts, never a
    ValueError deep inside that would exit 1, the code of a negative answer.
    """
    return click.option(name, type=type, default=default, show_default=True, help=help)


def quiet_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up chatter kept off the terminal.

    TensorFlow 2.21 logs oneDNN/CUDA notices through absl before absl's logging is
    initialised, and those ignore ``TF_CPP_MIN_LOG_LEVEL``; they would bury our
    one-line messages. So standard error is pointed at /dev/null while TensorFlow
    loads and looks for devices. Python exceptions are unaffected (they are printed
    after the descriptor is restored). Commands call this unless ``--debug`` is given.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print one line to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def user_errors(func: F) -> F:
    """Turn ``UserError`` and Ctrl-C into one line and an exit code.

    The wrapped click command must accept a ``debug`` keyword (see ``debug_option``);
    with ``--debug`` the original traceback is shown instead.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)
        try:
            return func(*args, **kwargs)
        except UserError as err:
            if debug:
                raise
            fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            fail("interrupted", EXIT_INTERRUPTED)
        except OSError as err:
            # A full disk, a permission problem, a vanished file: the user's environment.
            if debug:
                raise
            fail(f"{err.filename}: {err.strerror}" if err.filename else str(err))

    return wrapper  # type: ignore[return-value]


def progress(
    iterable: Iterable[Any] | None = None,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
):
    """A tqdm bar with ETA on a terminal; a plain pass-through when stderr is piped.

    Without ``iterable`` the bar is advanced by hand with ``.update(n)``.
    """
    from tqdm import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
        leave=False,
    )

"""What every command shares: one-line errors, ``--debug``, exit codes, progress bars.

The conventions (docs/architecture.md): exit 0 success, 1 a negative answer (door
denied), 2 bad input or usage, 130 interrupted; errors are one line on stderr naming
the file or flag and what is wrong (a traceback too with ``--debug``, the exit code
unchanged); a reader that closes the pipe early (``| head``) ends the command quietly;
long work shows a progress bar on a terminal and stays quiet when piped.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from shared.errors import UserError
from shared.runtime import RUNTIMES

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
# What a shell reports for a writer killed by SIGPIPE (128 + 13), as ``yes | head -1`` does.
EXIT_BROKEN_PIPE = 141

debug_option = click.option(
    "--debug", is_flag=True, help="Show full tracebacks as well as the one-line errors."
)

runtime_option = click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default=None,
    help="Inference runtime [default: openvino where it works, else tensorflow].",
)

exist_ok_option = click.option(
    "--exist-ok", is_flag=True, help="Replace outputs that already exist (default: refuse)."
)


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one ``error:`` line, like every other error of a command."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _one_line(err: click.UsageError) -> click.UsageError:
    """The same error, shown as one line; a group called bare keeps click's help page."""
    if isinstance(err, _OneLineUsageError | click.exceptions.NoArgsIsHelpError):
        return err
    return _OneLineUsageError(err.format_message(), err.ctx)


class _OneLineUsage:
    """Click's usage errors (a bad value, a missing argument) print the usage and a hint
    over four lines; here they are one line naming the flag, exit 2, as the commands'
    own errors are."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        try:
            return super().make_context(info_name, args, parent, **extra)  # type: ignore[misc]
        except click.UsageError as err:
            raise _one_line(err) from err


class Command(_OneLineUsage, click.Command):
    """``@click.command(cls=Command)``: usage errors in one line."""


class Group(_OneLineUsage, click.Group):
    """``@click.group(cls=Group)``: usage errors in one line, for its subcommands too
    (an unknown subcommand as well)."""

    command_class = Command

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as err:
            raise _one_line(err) from err


class ChoiceOrKerasFile(click.Choice):
    """One of ``choices``, or the path of a model file ending in ``.keras`` (a model the user
    trained), passed through as given."""

    def __init__(self, choices) -> None:
        super().__init__(list(choices))

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, str) and value.lower().endswith(".keras"):
            return value
        return super().convert(value, param, ctx)

    def get_metavar(self, param, ctx=None):  # type: ignore[no-untyped-def]
        return "[" + "|".join(map(str, self.choices)) + "|X.keras]"


class MultipleOf(click.ParamType):
    """A positive integer that is a multiple of ``step`` and at most ``maximum``
    (a network's input size): a bad one is a usage error naming the flag."""

    name = "integer"

    def __init__(self, step: int, maximum: int, reason: str = "") -> None:
        self.step, self.maximum, self.reason = step, maximum, reason

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        number = click.INT.convert(value, param, ctx)
        if number <= 0 or number % self.step or number > self.maximum:
            self.fail(
                f"{number} is not a positive multiple of {self.step} up to {self.maximum}"
                + (f" ({self.reason})" if self.reason else ""),
                param,
                ctx,
            )
        return number


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


def _end_quietly_on_closed_pipe() -> None:
    """The reader of standard output has gone (``| head -1``): nothing more can be said.

    Standard output is pointed at /dev/null so the interpreter's final flush does not
    fail a second time ("Exception ignored ... BrokenPipeError"), then the command ends
    with the status a shell gives a writer killed by SIGPIPE.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real descriptor (a test's capture)
        pass
    sys.exit(EXIT_BROKEN_PIPE)


def user_errors(func: F) -> F:
    """Turn ``UserError``, Ctrl-C and environment errors into one line and an exit code.

    The wrapped click command must accept a ``debug`` keyword (see ``debug_option``);
    with ``--debug`` the traceback is printed first, and the exit code stays the same, so
    a script sees the same status either way. A closed output pipe ends quietly.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)

        def report(message: str, code: int) -> None:
            if debug:
                traceback.print_exc()
            fail(message, code)

        try:
            return func(*args, **kwargs)
        except UserError as err:
            report(str(err), err.exit_code)
        except KeyboardInterrupt:
            report("interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:
            _end_quietly_on_closed_pipe()
        except OSError as err:
            # A full disk, a permission problem, a vanished file: the user's environment.
            report(f"{err.filename}: {err.strerror}" if err.filename else str(err), EXIT_BAD_INPUT)

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

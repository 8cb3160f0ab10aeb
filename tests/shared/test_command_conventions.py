"""What every command shares (shared/cli.py): one-line errors, exit codes, closed pipes."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from shared.cli import (
    EXIT_BROKEN_PIPE,
    Command,
    Group,
    MultipleOf,
    debug_option,
    user_errors,
)
from shared.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]


@click.command(cls=Command)
@click.option("--size", type=MultipleOf(32, 640), default=320)
@click.option("--count", type=click.IntRange(min=1), default=1)
@debug_option
@user_errors
def toy(size: int, count: int, debug: bool) -> None:
    if size == 64:
        raise InputError("clip.mp4: not a video")
    click.echo(f"{size} {count}")


def test_usage_errors_are_one_line_naming_the_flag():
    for args, flag in ((["--count", "0"], "--count"), (["--size", "100"], "--size")):
        result = CliRunner().invoke(toy, args)
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert f"'{flag}'" in result.stderr
    result = CliRunner().invoke(toy, ["--size", "100"])
    assert "100 is not a positive multiple of 32 up to 640" in result.stderr
    for good in ("32", "640"):
        assert CliRunner().invoke(toy, ["--size", good]).stdout == f"{good} 1\n"
    for bad in ("0", "-32", "672", "abc"):
        assert CliRunner().invoke(toy, ["--size", bad]).exit_code == 2


def test_a_group_reports_its_subcommands_usage_errors_in_one_line():
    @click.group(cls=Group)
    def tool() -> None:
        """A group."""

    @tool.command()
    @click.option("--window", type=click.IntRange(min=1))
    def check(window: int) -> None:
        click.echo(window)

    result = CliRunner().invoke(tool, ["check", "--window", "0"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "'--window'" in result.stderr
    result = CliRunner().invoke(tool, ["chek"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: No such command 'chek'.")
    # Called bare, a group shows its help as click does (not an "error:" line).
    result = CliRunner().invoke(tool, [])
    assert result.exit_code == 2 and "Commands:" in result.output and "error:" not in result.output


def test_debug_shows_the_traceback_and_keeps_exit_code_2():
    quiet = CliRunner().invoke(toy, ["--size", "64"])
    assert quiet.exit_code == 2 and quiet.stderr == "error: clip.mp4: not a video\n"
    loud = CliRunner().invoke(toy, ["--size", "64", "--debug"])
    assert loud.exit_code == 2
    assert "Traceback" in loud.stderr and "error: clip.mp4: not a video" in loud.stderr


SPEAKER = textwrap.dedent(
    """
    import click
    from shared.cli import Command, debug_option, user_errors

    @click.command(cls=Command)
    @debug_option
    @user_errors
    def speak(debug):
        for number in range(1_000_000):
            click.echo(f"line {number}")

    speak()
    """
)


@pytest.mark.parametrize("head", [0, 1], ids=["closed-at-once", "after-one-line"])
def test_a_reader_closing_the_pipe_ends_the_command_quietly(head: int):
    """``command | head -1``: no "error:" line, no "Exception ignored", SIGPIPE's status."""
    speaker = subprocess.Popen(
        [sys.executable, "-c", SPEAKER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for _ in range(head):
        speaker.stdout.readline()
    speaker.stdout.close()
    _, stderr = speaker.communicate(timeout=60)
    assert speaker.returncode == EXIT_BROKEN_PIPE
    assert stderr == b""


def console_scripts() -> dict[str, str]:
    """Every command pyproject.toml installs: name -> ``module:attribute``."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as stream:
        return tomllib.load(stream)["project"]["scripts"]


def _entry(target: str) -> click.Command:
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


@pytest.mark.parametrize(("name", "target"), sorted(console_scripts().items()))
def test_every_installed_command_gives_usage_errors_in_one_line(name: str, target: str):
    """The commands and every subcommand: an unknown option is one ``error:`` line, exit 2."""
    command = _entry(target)
    assert isinstance(command, Command | Group), f"{name}: use shared.cli.Command or Group"
    calls = [["--no-such-option"]]
    if isinstance(command, click.Group):
        calls += [[sub, "--no-such-option"] for sub in command.commands] + [["no-such-command"]]
    for args in calls:
        result = CliRunner().invoke(command, args, prog_name=name)
        assert result.exit_code == 2, (name, args, result.output)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (
            name,
            args,
            result.stderr,
        )
        assert args[-1] in result.stderr


def test_help_answers_without_loading_tensorflow():
    """--help of every command, in one fresh process: TensorFlow and Keras take seconds to
    import (face-train's --help took 6.6 s when its module imported Keras)."""
    script = textwrap.dedent(
        f"""
        import importlib, sys
        from click.testing import CliRunner
        for target in {sorted(set(console_scripts().values()))!r}:
            module, attribute = target.split(":")
            command = getattr(importlib.import_module(module), attribute)
            result = CliRunner().invoke(command, ["--help"])
            assert result.exit_code == 0, (target, result.output)
        print(sorted(name for name in ("tensorflow", "keras") if name in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"

"""face-admin: see and manage the face database: who is enrolled, remove someone, the audit log.

Thin by design: parse, call ``FaceStore``, render a table or JSON lines. ``list``
and ``audit`` only read; ``remove`` and ``unlock`` write. It never creates a database
(a mistyped ``--db`` is reported, not filled in) and loads no model, so it answers at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from apps.face_access.store import FaceStore, default_db_path
from shared.cli import Group, debug_option, user_errors

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class SinceType(click.ParamType):
    """A moment given as an age (``90s``, ``30m``, ``1h``, ``2d``, ``1w``) or an ISO date/time.

    ISO times without a zone are taken as UTC, the zone of the audit log.
    """

    name = "ISO-TIME|DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, datetime):
            return value
        duration = _DURATION.match(value)
        if duration:
            amount, unit = duration.groups()
            return datetime.now(UTC) - timedelta(seconds=float(amount) * _UNIT_SECONDS[unit])
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is neither a duration like 1h / 30m / 2d nor an ISO time")
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def db_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Face database [default: {default_db_path()}].",
    )(func)


def _open(ctx: click.Context, db: Path | None) -> FaceStore:
    """The subcommand's --db, else the group's, else the default location; never created."""
    return FaceStore(db or ctx.obj, create=False)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(headers)] + [
        ["-" if value is None else str(value) for value in row] for row in rows
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _short_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _json_lines(records: Sequence[dict[str, Any]]) -> None:
    for record in records:
        click.echo(json.dumps(record))


EPILOG = """\b
Examples:
  face-admin list
  face-admin remove "Ada Lovelace"
  face-admin audit --since 1h
  face-admin unlock
  face-admin --db door.db audit --since 2026-03-01 --json
"""


@click.group(cls=Group, epilog=EPILOG)
@db_option
@debug_option
@click.pass_context
def main(ctx: click.Context, db: Path | None, debug: bool) -> None:
    """See and manage the face database of face-enroll and face-check."""
    ctx.obj = db
    if debug:
        # The subcommand's context is made after this callback and takes its defaults from
        # here: --debug before the subcommand means the same as after it.
        ctx.default_map = {name: {"debug": True} for name in main.commands}


@main.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per person and line.")
@debug_option
@click.pass_context
@user_errors
def list_people(ctx: click.Context, db: Path | None, as_json: bool, debug: bool) -> None:
    """Everyone enrolled, with their number of embeddings and the models that made them."""
    with _open(ctx, db) as store:
        people = store.people()
        path = store.path
    if as_json:
        _json_lines([person.to_dict() for person in people])
    elif not people:
        click.echo(f"no one is enrolled in {path}")
    else:
        rows = [(p.name, p.count, ",".join(p.model_ids), _short_time(p.created)) for p in people]
        click.echo(_table(("NAME", "EMBEDDINGS", "MODELS", "ENROLLED"), rows))


@main.command("remove")
@click.argument("name")
@db_option
@debug_option
@click.pass_context
@user_errors
def remove_person(ctx: click.Context, name: str, db: Path | None, debug: bool) -> None:
    """Delete NAME and all their embeddings (the audit log keeps their past checks)."""
    with _open(ctx, db) as store:
        removed = store.remove(name)
        plural = "" if removed == 1 else "s"
        click.echo(f"removed {name} ({removed} embedding{plural}) from {store.path}")


@main.command("audit")
@click.option(
    "--since",
    type=SinceType(),
    default=None,
    help="Only checks from this time on: an age like 1h, 30m, 2d, or an ISO time (UTC).",
)
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check and line.")
@debug_option
@click.pass_context
@user_errors
def show_audit(
    ctx: click.Context, since: datetime | None, db: Path | None, as_json: bool, debug: bool
) -> None:
    """Every logged check, oldest first: time (UTC), decision, person, distance, source."""
    with _open(ctx, db) as store:
        entries = store.audit(since)
    if as_json:
        _json_lines([entry.to_dict() for entry in entries])
    elif not entries:
        click.echo("no checks logged" + ("" if since is None else f" since {_short_time(since)}"))
    else:
        rows = [
            (
                _short_time(entry.time),
                entry.decision,
                entry.name,
                None if entry.distance is None else f"{entry.distance:.3f}",
                None if entry.threshold is None else f"{entry.threshold:g}",
                entry.source,
                entry.reason,
            )
            for entry in entries
        ]
        headers = ("TIME", "DECISION", "NAME", "DISTANCE", "THRESHOLD", "SOURCE", "REASON")
        click.echo(_table(headers, rows))


@main.command("unlock")
@db_option
@debug_option
@click.pass_context
@user_errors
def unlock(ctx: click.Context, db: Path | None, debug: bool) -> None:
    """Lift the door's lock-out now: earlier denials no longer count towards one.

    The lock-out is the door's, not a person's (a denied face is nobody enrolled), so it is
    lifted for everyone.
    """
    with _open(ctx, db) as store:
        store.unlock()
        click.echo(f"unlocked {store.path}: earlier denials no longer count")

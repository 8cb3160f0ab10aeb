"""face-enroll and face-check: a door that opens for enrolled faces only.

Thin commands over ``apps.face_access.access``: parse, call, render. The models (and
TensorFlow) load only once a command needs them. ``face-admin`` is ``admin_cli``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path

import click

from apps.face_access import decision
from apps.face_access.access import (
    DoorChecker,
    add_faces,
    collect_faces,
    enrol_folders,
    person_folders,
    run_on_grant,
)
from apps.face_access.admin_cli import db_option
from apps.face_access.models import SPECS, EmbedderSpec, move_hint, resolve_model
from apps.face_access.store import FaceStore, default_db_path
from shared.cli import (
    EXIT_BAD_INPUT,
    EXIT_NEGATIVE,
    EXIT_OK,
    Command,
    checked_option,
    debug_option,
    progress,
    runtime_option,
    user_errors,
)
from shared.errors import InputError

model_option = click.option(
    "--model",
    default=None,
    metavar="sface|sface-int8|mobilefacenet|mobilefacenet-int8|dlib|PATH",
    help="Face embedder, or the path of its weights file [default: the database's own model; "
    "sface for a new database]. -int8: the same network in int8 on OpenVINO, faster.",
)
detector_option = click.option(
    "--detector-model",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YuNet .onnx (default: found by the weights resolver; Haar cascade if absent).",
)
camera_option = click.option(
    "--camera",
    default=None,
    metavar="SOURCE",
    help="Camera index (0), video file or stream URL instead of image files.",
)


_POSITIVE = click.IntRange(min=1)
_SECONDS = click.FloatRange(min=0)
# Distances between unit vectors lie in [0, 2].
_DISTANCE = click.FloatRange(min=0, max=2)


def _enrolled_models(db: Path | None) -> list[str]:
    """The models of an existing database's embeddings (none for a database still to make)."""
    path = db if db is not None else default_db_path()
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with FaceStore(path, create=False) as store:
        return store.model_ids()


def _open_pipeline(
    enrolled: list[str],
    db: Path | None,
    model: str | None,
    detector_model: Path | None,
    runtime: str | None,
):
    """The pipeline of the database's model (or ``--model``); refuses to mix two models."""
    database = db if db is not None else default_db_path()
    spec, weights = resolve_model(model, enrolled, database)
    if model is None and enrolled:
        hint = move_hint(spec, database)
        if hint:
            click.echo(hint, err=True)
    return _load_pipeline(spec, weights, detector_model, runtime)


def _per_model(name: str, help_text: str, first: str = ""):
    """A distance option whose default is the embedder spec's, listed per model in --help."""
    defaults = ", ".join(f"{s.name} {getattr(s, name[2:])}" for s in SPECS.values())
    return click.option(
        name, type=_DISTANCE, default=None, help=f"{help_text} [default: {first}{defaults}]."
    )


@functools.cache
def _load_pipeline(
    spec: EmbedderSpec, weights: Path | None, detector_model: Path | None, runtime: str | None
):
    """Load the models once per process (commands called from Python reuse them)."""
    from apps.face_access.detection import FaceDetector
    from apps.face_access.embedding import FaceEmbedder
    from apps.face_access.pipeline import FacePipeline

    detector = FaceDetector(detector_model, runtime=runtime)
    return FacePipeline(detector, FaceEmbedder(spec, weights, runtime=runtime))


def _camera_frames(source: str, max_frames: int | None):
    from shared.video import VideoReader, parse_source

    with VideoReader(parse_source(source)) as reader:
        for index, frame in enumerate(reader):
            if max_frames is not None and index >= max_frames:
                return
            yield frame


@click.command(
    cls=Command,
    epilog="Example: face-enroll alice alice1.jpg alice2.jpg alice3.jpg\n\n"
    "         face-enroll bob --camera 0 --frames 5\n\n"
    "         face-enroll --from-folders staff/   (staff/alice/*.jpg, staff/bob/*.jpg, ...)",
)
@click.argument("name", required=False)
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@camera_option
@click.option(
    "--from-folders",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Enrol everyone at once: one subfolder of photos per person, named after them.",
)
@checked_option("--frames", 5, _POSITIVE, "Faces to take from the camera.")
@click.option("--largest", is_flag=True, help="Take the largest face of an image with several.")
@click.option("--replace", is_flag=True, help="Forget NAME's earlier enrolment first.")
@click.option(
    "--force",
    is_flag=True,
    help="Enrol even a photo that looks like someone else or unlike NAME's other photos.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@db_option
@model_option
@detector_option
@runtime_option
@debug_option
@user_errors
def enroll_command(
    name,
    images,
    camera,
    from_folders,
    frames,
    largest,
    replace,
    force,
    as_json,
    db,
    model,
    detector_model,
    runtime,
    debug,
):
    """Enrol NAME from photos (each with exactly one usable face) or from a camera, or
    everyone of a folder with one subfolder per person (--from-folders).

    A photo nearer to another enrolled person than the door's threshold, or far from NAME's
    other photos, refuses the enrolment (exit 2) unless --force is given.
    """
    if from_folders is not None:
        if name or camera:
            raise InputError("--from-folders takes the names from the folders: give no NAME")
        _enrol_folders(
            from_folders, largest, replace, force, as_json, db, model, detector_model, runtime
        )
        return
    if name is None:
        raise InputError("give the person's NAME (or --from-folders DIR)")
    if bool(images) == bool(camera):
        raise InputError("give either image files or --camera, not both or neither")
    # The database is opened once there is something to store: a failed enrolment leaves no
    # new file behind. Its path is checked first, so a mistyped --db costs no model load.
    FaceStore.check_location(db)
    pipeline = _open_pipeline(_enrolled_models(db), db, model, detector_model, runtime)
    with contextlib.ExitStack() as stack:
        if camera is not None:
            # Each frame is judged once; at most 20 frames per face wanted.
            offered = _camera_frames(camera, frames * 20)
            stack.enter_context(contextlib.closing(offered))
            sources = ((f"camera:{camera}#{i}", frame) for i, frame in enumerate(offered))
        else:
            sources = ((str(path), path) for path in images)
        limit = frames if camera is not None else None
        report = collect_faces(pipeline, name, sources, largest=largest, limit=limit)
    with FaceStore(db) as store:
        add_faces(store, pipeline, report, replace=replace, force=force)
    if camera is not None and report.rejected:
        click.echo(f"skipped {len(report.rejected)} frame(s) without a usable face", err=True)
    else:
        for reason in report.rejected:
            click.echo(f"rejected: {reason}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(f"enrolled {report.name}: {len(report.enrolled)} face(s)")


def _enrol_folders(
    root, largest, replace, force, as_json, db, model, detector_model, runtime
) -> None:
    """Bulk enrolment: a progress bar, a line per person, exit 2 if anyone was not enrolled."""
    folders = person_folders(root)  # checked before the models load
    FaceStore.check_location(db)
    pipeline = _open_pipeline(_enrolled_models(db), db, model, detector_model, runtime)
    refused = []
    with (
        FaceStore(db) as store,
        progress(total=len(folders), desc="enrolling", unit="person") as bar,
    ):
        people = enrol_folders(
            store, pipeline, folders, largest=largest, replace=replace, force=force
        )
        for name, report, reason in people:
            bar.update(1)
            if report is None:
                refused.append(name)
                if as_json:
                    click.echo(json.dumps({"name": name, "enrolled": [], "error": reason}))
                else:
                    bar.write(f"not enrolled {name}: {reason}", file=sys.stderr)
                continue
            if as_json:
                click.echo(json.dumps(report.to_dict()))
                continue
            for rejected in report.rejected:
                bar.write(f"rejected: {rejected}", file=sys.stderr)
            click.echo(f"enrolled {report.name}: {len(report.enrolled)} face(s)")
    enrolled = len(folders) - len(refused)
    click.echo(f"{enrolled} of {len(folders)} people enrolled", err=True)
    if refused:
        sys.exit(EXIT_BAD_INPUT)


@click.command(
    cls=Command,
    epilog="Example: face-check visitor.jpg   (GRANTED alice (distance 0.214), exit 0)\n\n"
    "         face-check --camera 0 --on-grant 'relay-open --seconds 3'",
)
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@camera_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per decision.")
@_per_model(
    "--threshold",
    "Largest distance granted",
    "the database's own for its model, stored by face-eval --recommend-threshold --db; else "
    "a face-train model's own, ",
)
@_per_model("--margin", "How much nearer than the second person the best must be")
@checked_option(
    "--consecutive",
    decision.DEFAULT_CONSECUTIVE_FRAMES,
    _POSITIVE,
    "Camera: frames in a row to match.",
)
@click.option(
    "--on-grant",
    default=None,
    metavar="CMD",
    help="Run CMD on a grant (FACE_NAME set); its output goes to stderr, and if it fails "
    "the exit code is 2.",
)
@click.option(
    "--max-frames", type=_POSITIVE, default=None, help="Camera: stop after this many frames."
)
@checked_option(
    "--max-denials",
    decision.DEFAULT_MAX_DENIALS,
    click.IntRange(min=0),
    "Denials within --window that lock (0: never).",
)
@checked_option(
    "--window",
    decision.DEFAULT_WINDOW_SECONDS,
    click.FloatRange(min=0, min_open=True),
    "Seconds over which denials are counted.",
)
@checked_option(
    "--cooldown",
    decision.DEFAULT_COOLDOWN_SECONDS,
    _SECONDS,
    "Seconds checks stay refused after a lock (face-admin unlock lifts it).",
)
@db_option
@model_option
@detector_option
@runtime_option
@debug_option
@user_errors
def check_command(
    images,
    camera,
    as_json,
    threshold,
    margin,
    consecutive,
    on_grant,
    max_frames,
    max_denials,
    window,
    cooldown,
    db,
    model,
    detector_model,
    runtime,
    debug,
):
    """Grant (exit 0) or deny (exit 1) each face; exit 2 on a bad image or no face.

    Of an image with several faces the largest is judged, and the result says so.
    """
    if bool(images) == bool(camera):
        raise InputError("give either image files or --camera, not both or neither")
    # Never created here: checking against a mistyped --db is reported, not an empty door.
    with FaceStore(db, create=False) as store:
        checker = DoorChecker(
            store,
            _open_pipeline(store.model_ids(), store.path, model, detector_model, runtime),
            threshold=threshold,
            margin=margin,
            max_denials=max_denials,
            window=window,
            cooldown=cooldown,
        )
        if checker.stale_people:
            click.echo(
                "note: enrolled with another model, re-enrol: " + ", ".join(checker.stale_people),
                err=True,
            )
        if camera is not None:
            results = checker.watch(
                _camera_frames(camera, max_frames), f"camera:{camera}", consecutive
            )
        else:
            results = (checker.check_image(str(path), path) for path in images)
        decisions = []
        door_failed = False
        for result in results:
            decisions.append(result.decision)
            _show(result, as_json, prefix=len(images) > 1 or camera is not None)
            if result.decision == "granted" and on_grant:
                door_failed |= not _open_door(on_grant, result)
    if door_failed:
        sys.exit(EXIT_BAD_INPUT)  # the door did not open: misconfigured, not a denial
    if camera is not None:
        sys.exit(EXIT_OK if "granted" in decisions else EXIT_NEGATIVE)
    if "error" in decisions:
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(EXIT_OK if set(decisions) == {"granted"} else EXIT_NEGATIVE)


def _open_door(command: str, result) -> bool:
    """Run --on-grant; its output goes to stderr, a failure is one line there. True if it ran."""
    finished = run_on_grant(command, result)
    if finished.stdout:
        click.echo(finished.stdout, err=True, nl=not finished.stdout.endswith("\n"))
    if finished.returncode != 0:
        click.echo(
            f"error: --on-grant command failed (exit {finished.returncode}) for {result.name}",
            err=True,
        )
    return finished.returncode == 0


def _show(result, as_json: bool, prefix: bool) -> None:
    if as_json:
        record = result.as_json()
        if result.decision in ("error", "refused"):
            record["reason"] = result.reason
        click.echo(json.dumps(record))
    elif result.decision == "error":
        click.echo(f"error: {result.reason}", err=True)
    else:
        click.echo(f"{result.source}: {result.line()}" if prefix else result.line())

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
from apps.face_access.access import DoorChecker, add_faces, collect_faces, run_on_grant
from apps.face_access.admin_cli import db_option
from apps.face_access.store import FaceStore
from shared.cli import (
    EXIT_BAD_INPUT,
    EXIT_NEGATIVE,
    EXIT_OK,
    checked_option,
    debug_option,
    quiet_tensorflow,
    user_errors,
)
from shared.errors import InputError

weights_option = click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="dlib_face_recognition_resnet_model_v1.dat (default: found by the weights resolver).",
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


model_option = click.option(
    "--model",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A face embedder trained by face-train (.keras) [default: dlib's face ResNet]. "
    "Its embeddings are stored under its own model id, never compared with another model's.",
)


@functools.cache
def _load_pipeline(weights: Path | None, detector_model: Path | None, model: Path | None = None):
    """Load the models once per process (commands called from Python reuse them).

    The one place an embedder is chosen: ``model`` (a ``face-train`` file) or dlib's
    ResNet (``weights``: its ``.dat``).
    """
    quiet_tensorflow()
    from apps.face_access.detection import FaceDetector
    from apps.face_access.pipeline import FacePipeline

    if model is not None:
        if weights is not None:
            raise InputError("give --model or --weights, not both")
        from apps.face_access.face_model import TrainedEmbedder

        embedder = TrainedEmbedder(model)
    else:
        from apps.face_access.embedding import FaceEmbedder

        embedder = FaceEmbedder(weights or "dlib")
    return FacePipeline(FaceDetector(detector_model), embedder)


def _camera_frames(source: str, max_frames: int | None):
    from shared.video import VideoReader, parse_source

    with VideoReader(parse_source(source)) as reader:
        for index, frame in enumerate(reader):
            if max_frames is not None and index >= max_frames:
                return
            yield frame


@click.command(
    epilog="Example: face-enroll alice alice1.jpg alice2.jpg alice3.jpg\n\n"
    "         face-enroll bob --camera 0 --frames 5"
)
@click.argument("name")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@camera_option
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
@weights_option
@detector_option
@debug_option
@user_errors
def enroll_command(
    name,
    images,
    camera,
    frames,
    largest,
    replace,
    force,
    as_json,
    db,
    model,
    weights,
    detector_model,
    debug,
):
    """Enrol NAME from photos (each with exactly one usable face) or from a camera.

    A photo nearer to another enrolled person than the door's threshold, or far from NAME's
    other photos, refuses the enrolment (exit 2) unless --force is given.
    """
    if bool(images) == bool(camera):
        raise InputError("give either image files or --camera, not both or neither")
    # The database is opened once there is something to store: a failed enrolment leaves no
    # new file behind. Its path is checked first, so a mistyped --db costs no model load.
    FaceStore.check_location(db)
    pipeline = _load_pipeline(weights, detector_model, model)
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
        # The door's threshold: the one stored by face-eval --db, else the default.
        threshold = store.threshold(pipeline.model_id) or decision.DEFAULT_THRESHOLD
        add_faces(store, pipeline, report, replace=replace, force=force, threshold=threshold)
    if camera is not None and report.rejected:
        click.echo(f"skipped {len(report.rejected)} frame(s) without a usable face", err=True)
    else:
        for reason in report.rejected:
            click.echo(f"rejected: {reason}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(f"enrolled {report.name}: {len(report.enrolled)} face(s)")


@click.command(
    epilog="Example: face-check visitor.jpg   (GRANTED alice (distance 0.214), exit 0)\n\n"
    "         face-check --camera 0 --on-grant 'relay-open --seconds 3'"
)
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@camera_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per decision.")
@click.option(
    "--threshold",
    type=_DISTANCE,
    default=None,
    help="Largest distance granted. [default: the database's own threshold, set by "
    f"face-eval --recommend-threshold --db, else {decision.DEFAULT_THRESHOLD}]",
)
@checked_option(
    "--margin",
    decision.DEFAULT_MARGIN,
    _DISTANCE,
    "How much nearer than the second person the best must be.",
)
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
@weights_option
@detector_option
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
    weights,
    detector_model,
    debug,
):
    """Grant (exit 0) or deny (exit 1) each face; exit 2 on a bad image or no face.

    Of an image with several faces the largest is judged, and the result says so.
    """
    if bool(images) == bool(camera):
        raise InputError("give either image files or --camera, not both or neither")
    # Never created here: checking against a mistyped --db is reported, not an empty door.
    with FaceStore(db, create=False) as store:
        pipeline = _load_pipeline(weights, detector_model, model)
        if threshold is None:
            threshold = store.threshold(pipeline.model_id) or decision.DEFAULT_THRESHOLD
        checker = DoorChecker(
            store,
            pipeline,
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

"""``detect-cars SOURCE``: YOLO car detection on a video, image, folder, camera or stream.

Thin by design: parse options, call ``apps.car_detection`` functions, render.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import click

from apps.car_detection.catalogue import DEFAULT_MODEL, darknet_models
from apps.car_detection.decode import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET
from apps.car_detection.tracker import TrackerSettings
from apps.car_detection.tracking import MIN_TRACK_FRAMES, CountLine, Tracking
from shared.cli import (
    EXIT_INTERRUPTED,
    ChoiceOrKerasFile,
    Command,
    MultipleOf,
    checked_option,
    debug_option,
    exist_ok_option,
    progress,
    runtime_option,
    user_errors,
)
from shared.errors import InputError
from shared.files import refuse_to_replace
from shared.video import BROWSER_PLAYABLE_FOURCCS

# Inference time grows with the square of the input size: 1280 is already 16 times the work
# of the default 320, and --size 4000 ran at 0.1 frames/s (issue 11).
MAX_SIZE = 1280
# A batch holds this many frames at the network size and their outputs; beyond it memory
# grows and speed does not (the work per frame is the same).
MAX_BATCH = 256

EXAMPLE = """\b
Examples:
  detect-cars dashcam.mp4                      # writes dashcam_cars.mp4, prints a summary
  detect-cars dashcam.mp4 --detections cars.jsonl --csv cars.csv --no-draw
  detect-cars photos/ --classes all --json     # a folder of images, every COCO class
  detect-cars 0 --output camera.mp4            # camera 0 until Ctrl-C
  detect-cars road.mp4 --track --count-line 0,0.6,1,0.6   # unique cars, count a line
"""


def default_output(source_kind: str, source_name: str) -> Path | None:
    """Where the annotated result goes when ``--output`` is not given.

    In the current folder, named after the source, so an input is never
    overwritten; a camera has no natural name and writes nothing unless asked.
    """
    if source_kind == "camera":
        return None
    if source_kind == "stream":
        stem = Path(urlparse(source_name).path).stem or "stream"
        return Path(f"{stem}_cars.mp4")
    path = Path(source_name)
    if source_kind == "folder":
        return Path(f"{path.resolve().name}_cars")
    suffix = path.suffix if source_kind == "image" else ".mp4"
    return Path(f"{path.stem}_cars{suffix}")


def _annotated_output(output: str | None, source_kind: str, source_name: str) -> Path | None:
    """``--output`` when given, else the default named after the source (``default_output``)."""
    return Path(output) if output else default_output(source_kind, source_name)


def _refuse_overwriting_input(output: Path, source_name: str) -> None:
    source = Path(source_name)
    if source.exists() and output.resolve() == source.resolve():
        raise InputError(f"{output}: refusing to overwrite the input; choose another --output")


@click.command(cls=Command, epilog=EXAMPLE)
@click.argument("source")
@click.option(
    "--model",
    type=ChoiceOrKerasFile(darknet_models()),
    default=DEFAULT_MODEL,
    show_default=True,
    help="Catalogue detector (found or downloaded once), or a .keras file from detect-cars-train.",
)
@click.option("--cfg", type=click.Path(dir_okay=False), help="A Darknet .cfg (with --weights).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Darknet .weights for --cfg.")
@click.option("--names", type=click.Path(dir_okay=False), help="Class names, one per line.")
@click.option(
    "--size",
    type=MultipleOf(32, MAX_SIZE, "time grows with its square"),
    help=f"Network input size, a multiple of 32 up to {MAX_SIZE} [default: the cfg's].",
)
@click.option(
    "--conf",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help=f"Score threshold (objectness x class probability) [default: {DEFAULT_CONF}; 0.1 with "
    "--track, whose second association stage uses the weak detections].",
)
@checked_option("--iou", DEFAULT_IOU, click.FloatRange(0, 1, min_open=True), "NMS IoU threshold.")
@checked_option("--max-det", DEFAULT_MAX_DET, click.IntRange(min=1), "Most detections per frame.")
@click.option(
    "--classes",
    default="vehicles",
    show_default=True,
    help="'vehicles' (car, truck, bus), 'all', or names separated by commas.",
)
@click.option(
    "--multi-label",
    is_flag=True,
    help="Keep every class over --conf for a box (Darknet's mAP rule; one object may then be "
    "counted as a car and a truck). Default: one label per box, its best class.",
)
@runtime_option
@checked_option("--batch", 8, click.IntRange(1, MAX_BATCH), "Frames per inference batch.")
@checked_option("--vid-stride", 1, click.IntRange(min=1), "Infer every N-th frame.")
@click.option("--output", "-o", type=click.Path(), help="Annotated video, image or folder.")
@click.option(
    "--detections",
    type=click.Path(),
    help="JSON lines, one per frame ('-': stdout; the summary then goes to stderr).",
)
@click.option("--csv", "csv_path", type=click.Path(), help="CSV, one row per detection.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-draw", is_flag=True, help="Write no annotated video or images.")
@click.option(
    "--track", is_flag=True, help="Follow vehicles across frames: ids, trails, unique counts."
)
@click.option(
    "--count-line",
    metavar="X1,Y1,X2,Y2",
    help="Count tracks crossing this line, per direction and class (pixels, or fractions of "
    "the frame from 0 to 1); implies --track.",
)
@checked_option(
    "--min-track-frames",
    MIN_TRACK_FRAMES,
    click.IntRange(min=1),
    "Frames a track must be seen in to count as a vehicle in the summary.",
)
@exist_ok_option
@debug_option
@user_errors
def main(
    source: str,
    model: str,
    cfg: str | None,
    weights: str | None,
    names: str | None,
    size: int | None,
    conf: float | None,
    iou: float,
    max_det: int,
    classes: str,
    multi_label: bool,
    runtime: str | None,
    batch: int,
    vid_stride: int,
    output: str | None,
    detections: str | None,
    csv_path: str | None,
    as_json: bool,
    no_draw: bool,
    track: bool,
    count_line: str | None,
    min_track_frames: int,
    exist_ok: bool,
    debug: bool,
) -> None:
    """Detect cars (and other COCO objects) in SOURCE: a video file, an image,
    a folder of images, a camera index or a stream URL."""
    from apps.car_detection.pipeline import run
    from apps.car_detection.sinks import (
        AnnotatedImageSink,
        AnnotatedVideoSink,
        CsvSink,
        JsonLinesSink,
        Sink,
    )
    from shared.frames import open_source

    if detections == "-" and as_json:
        raise InputError("--detections - and --json both write to stdout; choose one")
    track = track or count_line is not None
    line = CountLine.parse(count_line) if count_line else None
    if conf is None:
        conf = TrackerSettings.low if track else DEFAULT_CONF
    # The source and the outputs first, before the model loads: a dead camera, a missing
    # image or an output that cannot be written fails at once.
    opened = open_source(source, prefetch=2 * batch)
    sinks = []
    outputs: dict[str, tuple[str, Sink]] = {}  # kind -> (path, sink)
    video_sink = None
    tracking = None
    try:
        if track:
            tracking = Tracking(line=line, min_frames=min_track_frames, fps=opened.fps)
        annotated = None if no_draw else _annotated_output(output, opened.kind, opened.name)
        for path in (annotated, detections if detections != "-" else None, csv_path):
            if path is not None:
                _refuse_overwriting_input(Path(path), opened.name)  # even with --exist-ok
                refuse_to_replace(path, exist_ok)
        if annotated is not None:
            if opened.kind in ("folder", "image"):
                sinks.append(AnnotatedImageSink(annotated, folder=opened.kind == "folder"))
            else:
                video_sink = AnnotatedVideoSink(annotated, opened.fps, opened.width, opened.height)
                sinks.append(video_sink)
            outputs["annotated"] = (str(annotated), sinks[-1])
        if detections:
            sinks.append(JsonLinesSink(detections))
            outputs["detections"] = (detections, sinks[-1])
        if csv_path:
            sinks.append(CsvSink(csv_path, tracked=tracking is not None))
            outputs["csv"] = (csv_path, sinks[-1])

        from apps.car_detection.detector import load_detector

        detector = load_detector(
            model=model,
            cfg=cfg,
            weights=weights,
            names=names,
            size=size,
            conf=conf,
            iou=iou,
            max_det=max_det,
            classes=classes,
            multi_label=multi_label,
            runtime=runtime,
        )
    except BaseException as error:
        for sink in sinks:
            sink.close(error)
        opened.close()
        raise

    with progress(total=opened.frame_count, desc=Path(opened.name).name, unit="frame") as bar:
        summary = run(
            opened,
            detector,
            sinks,
            batch=batch,
            vid_stride=vid_stride,
            on_frame=lambda _result: bar.update(1),
            tracking=tracking,
        )
    # An output closed before its first frame was never written: do not name it, even when
    # an earlier result of that name (kept by --exist-ok) is there.
    summary.outputs = {kind: path for kind, (path, sink) in outputs.items() if sink.written}
    if (
        video_sink is not None
        and video_sink.written
        and video_sink.fourcc not in BROWSER_PLAYABLE_FOURCCS
    ):
        summary.warnings.append(
            f"{outputs['annotated'][0]}: written as '{video_sink.fourcc}' (MPEG-4 Part 2): this "
            "OpenCV build has no H.264 encoder, so desktop players show it but browsers do not"
        )
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
    else:
        # With --detections - the JSON lines own standard output.
        click.echo(render_summary(summary.to_dict()), err=detections == "-")
    if summary.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)


def render_summary(summary: dict) -> str:
    """The summary as a few lines a person reads at a glance."""
    lines = [
        f"{summary['source']}: {summary['frames']} frames in {summary['seconds']:.1f} s "
        f"({summary['frames_per_second']:.1f} frames/s)"
        + (" — interrupted, outputs keep what was processed" if summary["interrupted"] else "")
    ]
    if not summary["detections"]:
        lines.append("  nothing detected")
    for label, count in summary["detections"].items():
        most = summary["most_at_once"][label]
        where = most.get("image") or f"frame {most['frame']}"
        at_once = f"at most {most['count']} at once ({where})"
        lines.append(f"  {label}: {count} detections, {at_once}")
    if "tracking" in summary:
        lines.extend(_render_tracking(summary["tracking"]))
    lines.extend(f"  {kind}: {path}" for kind, path in summary["outputs"].items())
    return "\n".join(lines)


def _render_tracking(tracking: dict) -> list[str]:
    unique = ", ".join(f"{label} {count}" for label, count in tracking["unique"].items())
    lines = [
        f"  unique vehicles (tracks of at least {tracking['min_track_frames']} frames): "
        + (unique or "none")
    ]
    if "line" in tracking:
        line = tracking["line"]
        ends = "({:g}, {:g})-({:g}, {:g})".format(*line["from"], *line["to"])
        total = ", ".join(f"{way} {count}" for way, count in line["total"].items())
        lines.append(f"  crossed the line {ends}: {total}")
        for label, ways in line["crossings"].items():
            lines.append(f"    {label}: " + ", ".join(f"{w} {n}" for w, n in ways.items()))
    return lines


if __name__ == "__main__":
    main()

"""``detect-cars-eval DATA``: how well a YOLO model finds the labelled objects of a dataset,
or with ``--track`` how well ``detect-cars --track`` follows the labelled vehicles of a sequence.

Thin by design: parse options, call ``datasets`` and ``evaluate`` (``track_eval`` with
``--track``), render.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from apps.car_detection.decode import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET
from apps.car_detection.options import model_source_options
from shared.cli import (
    Command,
    debug_option,
    progress,
    quiet_tensorflow,
    runtime_option,
    user_errors,
)
from shared.errors import InputError
from shared.files import atomic_output

EXAMPLE = """\b
Examples:
  detect-cars-eval vehicles/test --class-map Ambulance=ignore
  detect-cars-eval vehicles --split valid --class-map Ambulance=ignore --json
  detect-cars-eval VOC2007 --split test --model yolo-fastest-1.1 -o voc_eval
  detect-cars-eval vehicles/test --model runs/cars.keras   # a detect-cars-train result
  detect-cars-eval MOT17-13 --track --label-classes 3      # img1/ + gt/gt.txt: MOTA, IDF1
  detect-cars-eval kitti/training/image_02/0000 --track    # labels in label_02/0000.txt
  detect-cars-eval road.mp4 --track --labels road_gt.txt   # your own footage
"""


def default_output(data: Path) -> Path:
    """``<dataset folder or video name>_eval`` in the current folder, beside nothing the user
    gave."""
    return Path(f"{data.resolve().stem if data.is_file() else data.resolve().name}_eval")


@click.command(cls=Command, epilog=EXAMPLE)
@click.argument("data", type=click.Path())
@click.option(
    "--track",
    is_flag=True,
    help="Score detect-cars --track instead (MOTA, IDF1, HOTA, ID switches): DATA is a video, "
    "a folder of frames or a MOTChallenge sequence, labelled by a MOTChallenge gt.txt or "
    "KITTI tracking labels.",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False),
    help="With --track: the gt.txt or KITTI label file [default: DATA/gt/gt.txt, or "
    "label_02/NNNN.txt beside a KITTI image_02/NNNN].",
)
@click.option(
    "--label-classes",
    help="With --track: label classes to score, comma-separated: MOTChallenge class numbers "
    "or KITTI types [default: every MOTChallenge row; KITTI Car, Van, Truck].",
)
@click.option("--split", help="A split inside DATA: a subfolder (YOLO) or an ImageSets list (VOC).")
@model_source_options
@click.option(
    "--class-map",
    multiple=True,
    help="DATASET_CLASS=MODEL_CLASS or =ignore, comma-separated or repeated "
    "[default: classes of the same name].",
)
@click.option(
    "--conf",
    type=click.FloatRange(0, 1, max_open=True),
    help=f"Score at which precision and recall are reported (AP uses every score) "
    f"[default: {DEFAULT_CONF}]; with --track the detector's threshold, as in detect-cars "
    "[default: 0.1].",
)
@click.option(
    "--iou",
    default=DEFAULT_IOU,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="NMS IoU threshold.",
)
@click.option(
    "--max-det",
    default=DEFAULT_MAX_DET,
    show_default=True,
    type=click.IntRange(1),
    help="Most detections per image.",
)
@click.option(
    "--batch",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Images per inference batch.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    help="Folder for report.json and P-R plots (--track: report.json) "
    "[default: DATA's name + _eval].",
)
@runtime_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@debug_option
@user_errors
def main(
    data: str,
    track: bool,
    labels: str | None,
    label_classes: str | None,
    split: str | None,
    model: str | None,
    cfg: str | None,
    weights: str | None,
    names: str | None,
    size: int | None,
    class_map: tuple[str, ...],
    conf: float | None,
    iou: float,
    max_det: int,
    batch: int,
    output: str | None,
    runtime: str | None,
    as_json: bool,
    debug: bool,
) -> None:
    """Measure AP per class, mAP and P-R curves of a YOLO model on DATA, a labelled
    dataset: YOLO txt (images/ + labels/, data.yaml) or Pascal VOC XML. With --track,
    measure the tracker on a labelled sequence."""
    model_options = {"model": model, "cfg": cfg, "weights": weights, "names": names, "size": size}
    if track:
        for flag, given in (("--split", split), ("--class-map", class_map)):
            if given:
                raise InputError(f"{flag} is for datasets; --track scores a sequence")
        from apps.car_detection.tracker import TrackerSettings

        detector_options = {
            **model_options,
            "conf": TrackerSettings.low if conf is None else conf,  # as detect-cars --track
            "iou": iou,
            "max_det": max_det,
            "runtime": runtime,
        }
        _evaluate_tracking(
            Path(data), labels, label_classes, detector_options, batch, output, as_json, debug
        )
        return
    for flag, given in (("--labels", labels), ("--label-classes", label_classes)):
        if given:
            raise InputError(f"{flag} needs --track")
    if Path(data).is_file():
        raise InputError(f"{data}: a file, not a dataset folder (a video needs --track)")
    conf = DEFAULT_CONF if conf is None else conf
    from apps.car_detection.datasets import open_dataset, parse_class_map, resolve_class_map

    # Every label is read and the map parsed before TensorFlow loads: bad input fails at once.
    dataset = open_dataset(data, split)
    overrides = parse_class_map(class_map, dataset.names)
    if not debug:
        quiet_tensorflow()
    from apps.car_detection.detector import load_detector
    from apps.car_detection.evaluate import (
        SCORE_FLOOR,
        evaluate,
        plot_pr_curves,
        render,
        write_report,
    )

    detector = load_detector(
        **model_options,
        conf=SCORE_FLOOR,
        iou=iou,
        max_det=max_det,
        classes="all",
        multi_label=True,
        runtime=runtime,
    )
    mapping = resolve_class_map(dataset.names, detector.names, overrides)
    detector.classes = sorted({c for c in mapping if c is not None})
    with progress(total=len(dataset), desc=Path(data).name, unit="image") as bar:
        evaluation = evaluate(
            detector, dataset, mapping, conf=conf, batch=batch, on_image=lambda: bar.update(1)
        )
    folder = Path(output) if output else default_output(dataset.root)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "dataset": str(dataset.root),
        "format": dataset.format,
        "model": model or cfg or "default",
        "class_map": {
            name: "ignore" if target is None else detector.names[target]
            for name, target in zip(dataset.names, mapping, strict=True)
        },
    }
    report = write_report(evaluation, folder / "report.json", settings)
    plots = plot_pr_curves(evaluation, folder)
    if as_json:
        outputs = {"report": str(report), "plots": [str(p) for p in plots]}
        click.echo(json.dumps({**settings, **evaluation.to_dict(), "outputs": outputs}))
    else:
        click.echo(f"{dataset.root} ({dataset.format}): {len(dataset)} images")
        click.echo(render(evaluation))
        click.echo(f"report: {report}; P-R curves: {folder}/pr_*.png")


def _evaluate_tracking(
    data: Path,
    labels: str | None,
    label_classes: str | None,
    detector_options: dict,
    batch: int,
    output: str | None,
    as_json: bool,
    debug: bool,
) -> None:
    """``--track``: detect (``load_detector(**detector_options)``) and track every frame of the
    sequence ``data``, score it against its labels (CLEAR MOT at IoU 0.5, IDF1, HOTA), write
    ``report.json`` and print it."""
    from apps.car_detection.track_eval import find_sequence, read_track_labels, render
    from shared.frames import open_source

    # The labels are read and the frames opened before TensorFlow loads.
    frames, labels_path = find_sequence(data, labels)
    truth = read_track_labels(labels_path, label_classes.split(",") if label_classes else None)
    source = open_source(frames, prefetch=2 * batch)
    try:
        if not debug:
            quiet_tensorflow()
        from apps.car_detection.detector import load_detector

        detector = load_detector(**detector_options)
    except BaseException:
        source.close()
        raise
    from apps.car_detection.track_eval import evaluate_tracking
    from apps.car_detection.tracking import Tracking

    with progress(total=source.frame_count, desc=data.name, unit="frame") as bar:
        scores = evaluate_tracking(
            source, detector, truth, Tracking(fps=source.fps), batch=batch,
            on_frame=lambda: bar.update(1),
        )  # fmt: skip
    settings = {
        "sequence": str(data),
        "labels": str(labels_path),
        "format": truth.format,
        "model": detector_options["model"] or detector_options["cfg"] or "default",
    }
    folder = Path(output) if output else default_output(data)
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.json"
    with atomic_output(report) as temp:
        temp.write_text(json.dumps({**settings, **scores.to_dict()}, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps({**settings, **scores.to_dict(), "outputs": {"report": str(report)}}))
    else:
        click.echo(f"{data} against {labels_path} ({truth.format}):")
        click.echo(render(scores))
        click.echo(f"report: {report}")


if __name__ == "__main__":
    main()

"""``python -m apps.car_detection.track_eval_cli SEQUENCE LABELS``: score ``--track`` on footage.

Thin by design: parse, call ``track_eval``, render. SEQUENCE is what ``detect-cars`` reads (a
video or a folder of frames, e.g. a MOTChallenge ``img1/`` or a KITTI ``image_02/0000/``);
LABELS is its MOTChallenge ``gt.txt`` or KITTI tracking label file. This entry stands until
``detect-cars-eval`` (issue 14) is on main, where it becomes ``detect-cars-eval --track``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from shared.cli import debug_option, progress, user_errors

EXAMPLE = """\b
Examples:
  python -m apps.car_detection.track_eval_cli MOT17-13/img1 MOT17-13/gt/gt.txt --classes 3
  python -m apps.car_detection.track_eval_cli kitti/image_02/0000 kitti/label_02/0000.txt
"""


@click.command(epilog=EXAMPLE)
@click.argument("sequence")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", default=None, help="Catalogue model [default: yolo-fastest-1.1-xl].")
@click.option(
    "--classes",
    help="Label classes to score, comma-separated: MOT class numbers, KITTI types "
    "[default: every MOT row; KITTI Car, Van, Truck].",
)
@click.option(
    "--iou", "iou_threshold", default=0.5, show_default=True, help="IoU for a match (CLEAR MOT)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@debug_option
@user_errors
def main(
    sequence: str,
    labels: str,
    model: str | None,
    classes: str | None,
    iou_threshold: float,
    as_json: bool,
    debug: bool,
) -> None:
    """Run detect-cars --track over SEQUENCE and score it against LABELS (MOTA, IDF1, HOTA)."""
    from apps.car_detection.detector import load_detector
    from apps.car_detection.pipeline import open_source
    from apps.car_detection.track_eval import evaluate_tracking, read_track_labels, render
    from apps.car_detection.tracker import TrackerSettings
    from apps.car_detection.tracking import Tracking

    truth = read_track_labels(labels, classes.split(",") if classes else None)
    source = open_source(sequence)
    try:
        detector = load_detector(model=model, conf=TrackerSettings.low)
    except BaseException:
        source.close()
        raise
    with progress(total=source.frame_count, desc=Path(sequence).name, unit="frame") as bar:
        scores = evaluate_tracking(
            source,
            detector,
            truth,
            Tracking(fps=source.fps),
            iou_threshold,
            on_frame=lambda: bar.update(1),
        )
    if as_json:
        click.echo(json.dumps({"sequence": sequence, "labels": labels, **scores.to_dict()}))
    else:
        click.echo(f"{sequence} against {labels} ({truth.format}):")
        click.echo(render(scores))


if __name__ == "__main__":
    main()

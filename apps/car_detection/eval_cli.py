"""``detect-cars-eval DATA``: how well a YOLO model finds the labelled objects of a dataset.

Thin by design: parse options, call ``datasets`` and ``evaluate``, render.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from apps.car_detection.decode import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET
from apps.car_detection.options import model_source_options
from shared.cli import debug_option, progress, quiet_tensorflow, user_errors
from shared.runtime import RUNTIMES

EXAMPLE = """\b
Examples:
  detect-cars-eval vehicles/test --class-map Ambulance=ignore
  detect-cars-eval vehicles --split valid --class-map Ambulance=ignore --json
  detect-cars-eval VOC2007 --split test --model yolo-fastest-1.1 -o voc_eval
  detect-cars-eval vehicles/test --model runs/cars.keras   # a detect-cars-train result
"""


def default_output(dataset_root: Path) -> Path:
    """``<dataset folder>_eval`` in the current folder, beside nothing the user gave."""
    return Path(f"{dataset_root.resolve().name}_eval")


@click.command(epilog=EXAMPLE)
@click.argument("data", type=click.Path(file_okay=False))
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
    default=DEFAULT_CONF,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Score at which precision and recall are reported (AP uses every score).",
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
    help="Folder for report.json and P-R plots [default: DATA's name + _eval].",
)
@click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default=None,
    help="Inference runtime [default: openvino where it works, else tensorflow].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@debug_option
@user_errors
def main(
    data: str,
    split: str | None,
    model: str | None,
    cfg: str | None,
    weights: str | None,
    names: str | None,
    size: int | None,
    class_map: tuple[str, ...],
    conf: float,
    iou: float,
    max_det: int,
    batch: int,
    output: str | None,
    runtime: str | None,
    as_json: bool,
    debug: bool,
) -> None:
    """Measure AP per class, mAP and P-R curves of a YOLO model on DATA, a labelled
    dataset: YOLO txt (images/ + labels/, data.yaml) or Pascal VOC XML."""
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
        model=model,
        cfg=cfg,
        weights=weights,
        names=names,
        size=size,
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


if __name__ == "__main__":
    main()

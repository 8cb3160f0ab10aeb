"""``detect-cars-train DATA``: fine-tune a YOLO detector on a labelled dataset, in TensorBoard.

Thin by design: parse options, call ``datasets`` and ``train``, render.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from apps.car_detection.options import model_source_options
from shared.cli import (
    EXIT_INTERRUPTED,
    Command,
    debug_option,
    fail,
    quiet_tensorflow,
    user_errors,
)
from shared.distribute import strategy_option

EXAMPLE = """\b
Examples:
  detect-cars-train vehicles --class-map Ambulance=ignore --logdir runs/tb
  detect-cars-train vehicles --class-map Ambulance=ignore --resume       # after Ctrl-C
  detect-cars-train VOC2007 --train-split trainval --valid-split test --from-scratch
  detect-cars clip.mp4 --model runs/train/best.keras                       # use the result
"""


@click.command(cls=Command, epilog=EXAMPLE)
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--train-split", default="train", show_default=True, help="Split to learn from.")
@click.option("--valid-split", default="valid", show_default=True, help="Split to choose on.")
@click.option("--class-map", multiple=True, help="DATASET_CLASS=NAME or =ignore (as in eval).")
@model_source_options
@click.option("--from-scratch", is_flag=True, help="Random weights instead of pretrained ones.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1))
@click.option(
    "--freeze-epochs",
    default=3,
    show_default=True,
    type=click.IntRange(0),
    help="Epochs with the backbone frozen (only the heads learn).",
)
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--lr", default=1e-4, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option(
    "--backbone-lr",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Learning rate of the full fine-tuning phase, as a fraction of --lr.",
)
@click.option("--warmup-epochs", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option(
    "--patience",
    default=6,
    show_default=True,
    type=click.IntRange(1),
    help="Stop after this many epochs without a better validation mAP@0.5.",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(0, min_open=True),
    help="Stop after the epoch that passes this much training time.",
)
@click.option("--no-augment", is_flag=True, help="No flips, scaling or colour jitter.")
@click.option(
    "--anchors",
    type=click.Choice(["auto", "keep", "kmeans"]),
    default="auto",
    show_default=True,
    help="auto: k-means on the training boxes from scratch, the base model's otherwise.",
)
@click.option(
    "--pseudo-labels",
    type=click.Path(file_okay=False, exists=True),
    help="Unlabelled images (e.g. road frames) labelled by the starting model and "
    "mixed in, against forgetting.",
)
@click.option(
    "--out",
    "-o",
    default="runs/train",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for best.keras, last.keras and state.json.",
)
@click.option("--resume", is_flag=True, help="Continue the run saved in --out.")
@click.option("--logdir", type=click.Path(file_okay=False), help="TensorBoard log folder.")
@click.option(
    "--export",
    "export_format",
    type=click.Choice(["savedmodel", "tflite"]),
    help="Also write the best model as a SavedModel or a TFLite file.",
)
@strategy_option
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@debug_option
@user_errors
def main(
    data: str,
    train_split: str,
    valid_split: str,
    class_map: tuple[str, ...],
    model,
    cfg,
    weights,
    names,
    size,
    from_scratch: bool,
    epochs: int,
    freeze_epochs: int,
    batch: int,
    lr: float,
    backbone_lr: float,
    warmup_epochs: float,
    patience: int,
    max_minutes: float | None,
    no_augment: bool,
    anchors: str,
    pseudo_labels,
    out: str,
    resume: bool,
    logdir,
    export_format,
    strategy: str,
    seed: int,
    as_json: bool,
    debug: bool,
) -> None:
    """Fine-tune a YOLO model (default: Yolo-Fastest-1.1-xl) on DATA, a labelled dataset
    (YOLO txt or Pascal VOC), keeping the checkpoint with the best validation mAP@0.5."""
    from apps.car_detection.datasets import open_dataset, parse_class_map

    train_set = open_dataset(data, train_split)
    valid_set = open_dataset(data, valid_split)
    overrides = parse_class_map(class_map, train_set.names)
    if not debug:
        quiet_tensorflow()
    from apps.car_detection.train import CHECKPOINT_BEST, TrainSettings, export, train

    settings = TrainSettings(
        epochs=epochs,
        freeze_epochs=freeze_epochs,
        batch=batch,
        lr=lr,
        backbone_lr=backbone_lr,
        warmup_epochs=warmup_epochs,
        patience=patience,
        max_minutes=max_minutes,
        augment=not no_augment,
        anchors=anchors,
        seed=seed,
    )

    def report(record: dict) -> None:
        if not as_json:
            aps = ", ".join(f"{k} {v:.3f}" for k, v in record["valid_ap50"].items())
            parts = ", ".join(f"{p} {record[f'{p}_loss']:.3f}" for p in ("box", "obj", "cls"))
            click.echo(
                f"epoch {record['epoch']}: loss {record['loss']:.3f} ({parts}), "
                f"lr {record['lr']:.2g}, valid mAP@0.5 {record['valid_map50']:.3f} ({aps})",
                err=True,
            )

    try:
        state = train(
            train_set,
            valid_set,
            out,
            settings,
            class_map=overrides,
            model=model,
            cfg=cfg,
            weights=weights,
            names=names,
            size=size,
            from_scratch=from_scratch,
            resume=resume,
            pseudo_labels=pseudo_labels,
            logdir=logdir,
            strategy=strategy,
            on_epoch=report,
        )
    except KeyboardInterrupt:
        fail(f"interrupted; {out}/last.keras saved, continue with --resume", EXIT_INTERRUPTED)
    best = Path(out) / CHECKPOINT_BEST
    result = {
        "best": str(best),
        "best_epoch": state.best_epoch,
        "valid_map50": state.best_map50,
        "epochs": state.epoch,
        "replicas": state.replicas,
    }
    if export_format:
        result["export"] = str(export(best, export_format))
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"best validation mAP@0.5 {state.best_map50:.3f} at epoch {state.best_epoch}: {best}"
        )
        if export_format:
            click.echo(f"exported: {result['export']}")


if __name__ == "__main__":
    main()

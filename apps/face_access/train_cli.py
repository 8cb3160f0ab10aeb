"""face-train: fit a face embedder with a mined triplet loss (thin command over ``training``)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from apps.face_access.cli import detector_option
from apps.face_access.eval_cli import aligned_option, roles_list, several_option
from apps.face_access.models import BACKBONE_CHIPS, BACKBONES
from shared.cli import (
    EXIT_INTERRUPTED,
    Command,
    debug_option,
    progress,
    quiet_tensorflow,
    user_errors,
)
from shared.distribute import strategy_option
from shared.errors import InputError


def _choice(name: str, values, default: str, help_text: str | None = None):
    return click.option(
        name, type=click.Choice(values), default=default, show_default=True, help=help_text
    )


def _folder(name: str, help_text: str):
    return click.option(
        name, type=click.Path(file_okay=False, path_type=Path), default=None, help=help_text
    )


def _chips(folders, roles, aligned, several, cache, detector_model, chip):
    """The aligned chips of the people of ``folders`` (of ``roles``), cut as the catalogued
    model ``chip`` cuts them (``models.BACKBONE_CHIPS``), read once into ``cache``."""
    from apps.face_access import facesets
    from apps.face_access.detection import FaceDetector
    from apps.face_access.models import SPECS
    from apps.face_access.pipeline import FacePipeline

    spec = SPECS[chip]

    parts = []
    for folder in folders:
        chips = facesets.cached_chips(
            folder,
            lambda: FacePipeline(FaceDetector(detector_model), chips_of=spec),
            layout=spec.chip_layout,
            roles=roles,
            aligned=aligned,
            several=several,
            cache=cache,
            progress=lambda items, name=folder.name: progress(
                items, desc=f"aligning {name}", unit="photo"
            ),
        )
        if chips.skipped:
            click.echo(
                f"{folder}: {len(chips.skipped)} photo(s) without a usable face skipped", err=True
            )
        parts.append(chips)
    return facesets.concatenate_chips(parts)


folder_type = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command(
    cls=Command,
    epilog="Examples:\n\n"
    "  face-train ../shared/data/faces/lfw_deepfunneled ../shared/data/faces/celeba_wild_subset "
    "--roles train --val ../shared/data/faces/celeba_wild_subset --val-roles val "
    "--several central --freeze-until conv_10 --logdir runs/ft -o door-ft.keras\n\n"
    "  face-train faces/ --val more_faces/ --backbone nn4.small2 --mining batch-hard "
    "--epochs 40 -o nn4.keras\n\n"
    "  face-train ... --resume   (after Ctrl-C: carry on from the last checkpoint)",
)
@click.argument("datasets", nargs=-1, required=True, type=folder_type)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("face-model.keras"),
    show_default=True,
    help="The trained embedder (best validation epoch), for --model PATH.",
)
@click.option(
    "--roles", default=None, help="Only people of these roles in each DATASET/SPLITS.tsv."
)
@click.option(
    "--val",
    "val_folders",
    multiple=True,
    required=True,
    type=folder_type,
    help="Validation people's folder (repeatable): TAR@FAR and AUC each epoch.",
)
@click.option("--val-roles", default=None, help="Only people of these roles in each --val folder.")
@aligned_option
@several_option
@_choice(
    "--backbone",
    BACKBONES,
    "sface",
    "sface: fine-tune the door's default embedder; dlib: the former one; nn4.small2: from scratch.",
)
@click.option(
    "--freeze-until",
    default=None,
    metavar="LAYER",
    help="Keep the layers before the first named LAYER... fixed (sface: conv_10; dlib: stage3).",
)
@_choice("--mining", ["batch-all", "batch-hard", "semi-hard"], "semi-hard")
@click.option(
    "--margin", default=0.2, show_default=True, help="Triplet margin (squared distances)."
)
@click.option("--people", default=8, show_default=True, help="P: people per batch.")
@click.option("--photos", default=4, show_default=True, help="K: photos per person in a batch.")
@click.option("--epochs", default=10, show_default=True)
@click.option(
    "--steps-per-epoch",
    type=int,
    default=None,
    help="Batches per epoch [default: training photos / batch size].",
)
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Adam learning rate [default: 1e-4; with --resume, the checkpoint's].",
)
@click.option(
    "--patience",
    default=3,
    show_default=True,
    help="Stop after this many epochs without a better validation figure.",
)
@click.option("--far", default=1e-3, show_default=True, help="FAR of the validation TAR.")
@click.option(
    "--select-by",
    type=click.Choice(["tar", "auc"]),
    default=None,
    help="Validation figure that picks the best epoch and stops training: TAR@FAR, or AUC "
    "(steadier while TAR is near zero, e.g. from scratch) [default: tar; with --resume, the "
    "checkpoint's].",
)
@_folder("--logdir", "TensorBoard folder.")
@_folder("--checkpoints", "Checkpoint folder [default: OUTPUT's name + _checkpoints].")
@click.option("--resume", is_flag=True, help="Carry on from the checkpoint folder.")
@strategy_option
@click.option(
    "--cpu-devices",
    type=int,
    default=None,
    help="Split the CPU into this many logical devices (for --strategy mirrored).",
)
@_folder("--cache", "Folder keeping the aligned chips, so photos are read once.")
@click.option("--no-augment", is_flag=True, help="Train on the chips as aligned.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
@detector_option
@debug_option
@user_errors
def main(
    datasets,
    output,
    roles,
    val_folders,
    val_roles,
    aligned,
    several,
    backbone,
    freeze_until,
    mining,
    margin,
    people,
    photos,
    epochs,
    steps_per_epoch,
    learning_rate,
    patience,
    far,
    select_by,
    logdir,
    checkpoints,
    resume,
    strategy,
    cpu_devices,
    cache,
    no_augment,
    seed,
    as_json,
    detector_model,
    debug,
):
    """Train a face embedder on DATASET folders (one folder of photos per person) with
    P x K batches and an online-mined triplet loss; write OUTPUT (.keras)."""
    if output.suffix != ".keras":
        raise InputError(f"{output}: the output must end in .keras")
    for number, name in ((people, "--people"), (photos, "--photos"), (epochs, "--epochs")):
        if number < (2 if name != "--epochs" else 1):
            raise InputError(f"{name} must be at least {2 if name != '--epochs' else 1}")
    if not 0 < far < 1:
        raise InputError(f"--far must lie between 0 and 1, got {far}")
    if not debug:
        quiet_tensorflow()
    from shared.distribute import distribution_strategy, split_cpu

    if cpu_devices:
        split_cpu(cpu_devices)
    # Before anything runs on TensorFlow (the face detector, the chips): a multi-worker
    # strategy must set up its collective ops at start-up.
    distribution = distribution_strategy(strategy)
    from apps.face_access.training import resumed_chip, train

    checkpoints = checkpoints or output.with_name(output.stem + "_checkpoints")
    chip = resumed_chip(checkpoints) if resume else BACKBONE_CHIPS[backbone]
    train_chips = _chips(datasets, roles_list(roles), aligned, several, cache, detector_model, chip)
    val_chips = _chips(
        val_folders, roles_list(val_roles), aligned, several, cache, detector_model, chip
    )
    overlap = set(train_chips.people) & set(val_chips.people)
    if overlap:
        raise InputError(
            f"{len(overlap)} people are in both the training and the validation data "
            f"(e.g. {sorted(overlap)[0]}); use --roles / --val-roles to separate them"
        )
    # Keras prints its progress on stdout, kept for the result (--json): to stderr with it.
    with contextlib.redirect_stdout(sys.stderr):
        report = train(
            train_chips,
            val_chips,
            output=output,
            checkpoints=checkpoints,
            backbone=backbone,
            freeze_until=freeze_until,
            mining=mining.replace("batch-", "").replace("-", "_"),
            margin=margin,
            people=people,
            photos=photos,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            learning_rate=learning_rate,
            patience=patience,
            far=far,
            select_by={"tar": "tar_at_far", "auc": "auc", None: None}[select_by],
            logdir=logdir,
            resume=resume,
            strategy=distribution,
            augment=not no_augment,
            seed=seed,
            verbose=1 if sys.stderr.isatty() else 2,  # piped: one line per epoch
        )
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        start = report.initial_validation
        click.echo(
            f"{report.model_id}: {report.train_people} people / {report.train_photos} photos, "
            f"{report.epochs_run} epoch(s) in {report.seconds:.0f} s on {report.replicas} "
            f"replica(s)"
        )
        click.echo(
            f"validation ({report.validation_people} people): TAR@{far:g} "
            f"{start.get('tar_at_far', float('nan')):.3f} -> "
            + ", ".join(f"{row['tar_at_far']:.3f}" for row in report.validation)
            + f"; AUC {start.get('auc', float('nan')):.4f} -> "
            + ", ".join(f"{row['auc']:.4f}" for row in report.validation)
        )
        if report.best_epoch is not None:
            click.echo(
                f"best epoch {report.best_epoch} written to {output}, door threshold "
                f"{report.threshold:.3f}"
            )
        if report.validation and not report.improved:
            click.echo(
                "warning: no epoch beat the starting model on validation; keep the old one",
                err=True,
            )
    if report.interrupted:
        click.echo("interrupted: checkpoint saved; continue with --resume", err=True)
        sys.exit(EXIT_INTERRUPTED)

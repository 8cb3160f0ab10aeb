"""face-eval: verification figures of the door's embedder on a labelled face set.

Thin command over ``facesets`` (reading photos into embeddings) and ``verification``
(pairs, ten-fold accuracy, ROC, AUC, EER, TAR@FAR, the door simulation, the recommended
threshold): parse, call, render.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np

from apps.face_access.cli import _enrolled_models, _load_pipeline, detector_option, model_option
from apps.face_access.models import resolve_model, spec_for_model_id
from shared.cli import Command, debug_option, progress, runtime_option, user_errors
from shared.errors import InputError


def _faceset(dataset: Path, roles, aligned: bool, several: str, models: tuple, cache):
    from apps.face_access import facesets

    if dataset.suffix == ".npz":
        return facesets.FaceSet.load(dataset)
    spec = models[0]
    # The models load once the photos are found (and only the embedder's are needed when the
    # chips are cached).
    chips = facesets.cached_chips(
        dataset,
        lambda: _load_pipeline(*models),
        layout=spec.chip_layout,
        roles=roles,
        aligned=aligned,
        several=several,
        cache=cache,
        progress=lambda items: progress(items, desc="faces", unit="photo"),
    )
    pipeline = _load_pipeline(*models)
    return facesets.embed_chips(chips, pipeline.embedder, pipeline.model_id)


def _pairs_file_report(path: Path, images: Path | None, several, models: tuple, folds):
    """Figures of an LFW-style pairs file: the pairs as given, folds in file order."""
    from apps.face_access import facesets, verification

    pairs = facesets.read_pairs_file(path, images)
    pipeline = _load_pipeline(*models)
    unique = sorted(set(pairs.first) | set(pairs.second))
    photos = [facesets.Photo(photo, photo.parent.name) for photo in unique]
    chips = facesets.align_photos(photos, pipeline, several=several)
    faceset = facesets.embed_chips(chips, pipeline.embedder, pipeline.model_id)
    row_of = {Path(p): i for i, p in enumerate(faceset.paths)}
    usable = [a in row_of and b in row_of for a, b in zip(pairs.first, pairs.second, strict=True)]
    first = faceset.vectors[[row_of[a] for a, ok in zip(pairs.first, usable, strict=True) if ok]]
    second = faceset.vectors[[row_of[b] for b, ok in zip(pairs.second, usable, strict=True) if ok]]
    distances = np.linalg.norm(first - second, axis=1)
    same = pairs.same[np.array(usable, bool)]
    figures = verification.evaluate_pairs(
        distances[same], distances[~same], folds=folds, seed=0, balanced=False
    )
    report = {
        "model_id": faceset.model_id,
        "photos_used": len(faceset.paths),
        "photos_skipped": len(faceset.skipped),
        "pairs_skipped": int(len(usable) - sum(usable)),
        "skipped": faceset.skipped,
        "pairs": figures.to_dict(),
    }
    return report, (distances[same], distances[~same])


def _output_file(name: str, help_text: str):
    return click.option(
        name, type=click.Path(dir_okay=False, path_type=Path), default=None, help=help_text
    )


def roles_list(value: str | None) -> list[str] | None:
    """``--roles a,b`` as a list (None: every person)."""
    return [role.strip() for role in value.split(",") if role.strip()] if value else None


aligned_option = click.option(
    "--aligned", is_flag=True, help="Photos are ready 112x112 ArcFace-aligned crops."
)
several_option = click.option(
    "--several",
    type=click.Choice(["skip", "largest", "central"]),
    default="skip",
    show_default=True,
    help="A photo with several faces: skip it, or take the largest or the most central face.",
)


@click.command(
    cls=Command,
    epilog="Examples:\n\n"
    "  face-eval ../shared/data/faces/att_faces\n\n"
    "  face-eval lfw_deepfunneled --roles dev_enrol,dev_stranger --stranger-role dev_stranger "
    "--several central\n\n"
    "  face-eval glint_crops --aligned --recommend-threshold --far 1e-3 --db door.db\n\n"
    "  face-eval lfw/pairs.txt        (LFW's pairs file; photos beside it)",
)
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@aligned_option
@several_option
@click.option("--roles", default=None, help="Only people of these roles in DATASET/SPLITS.tsv.")
@click.option(
    "--stranger-role",
    default=None,
    help="Door simulation: people of this role never enrol [default: the second half].",
)
@click.option(
    "--images",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With a pairs file: the folder of person folders [default: its folder].",
)
@click.option("--enrol", default=3, show_default=True, help="Door: photos enrolled per person.")
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Door: largest distance granted [default: the model's; for a face-train model "
    "without one, the threshold of --far on these pairs].",
)
@click.option(
    "--margin",
    type=float,
    default=None,
    help="Door: how much nearer than the second person the best must be [default: the model's].",
)
@click.option("--folds", default=10, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Of the impostor pair samples.")
@click.option(
    "--max-impostor-pairs",
    default=2_000_000,
    show_default=True,
    help="Sample impostor pairs above this many.",
)
@click.option("--recommend-threshold", is_flag=True, help="Print the threshold for --far.")
@click.option("--far", default=1e-3, show_default=True, help="Target false accept rate.")
@_output_file("--db", "With --recommend-threshold: store it as this face database's threshold.")
@_output_file("--report", "JSON report [default: DATASET-NAME_face-eval.json here].")
@_output_file("--roc", "ROC plot [default: DATASET-NAME_roc.png here].")
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder keeping the aligned chips (shared with face-train), so photos are read once.",
)
@_output_file(
    "--save-embeddings", "Keep the embeddings (.npz): give it as DATASET to re-evaluate at once."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@model_option
@detector_option
@runtime_option
@debug_option
@user_errors
def main(
    dataset: Path,
    aligned: bool,
    several: str,
    roles,
    stranger_role,
    images,
    enrol: int,
    threshold,
    margin: float,
    folds: int,
    seed: int,
    max_impostor_pairs: int,
    recommend_threshold: bool,
    far: float,
    db,
    report,
    roc,
    cache,
    save_embeddings,
    as_json: bool,
    model,
    detector_model,
    runtime,
    debug,
):
    """Verification figures for DATASET: a folder with one folder of photos per person,
    an LFW-style pairs file, or embeddings saved by --save-embeddings (.npz).

    All genuine pairs and the impostor pairs (a seeded sample above --max-impostor-pairs):
    ten-fold accuracy at the best threshold (balanced), ROC and AUC, EER, TAR at FAR 1e-2,
    1e-3 and 1e-4, and a door simulation (enrol --enrol photos per person, the rest as
    probes, strangers as impostors). Writes a JSON report and a ROC plot.
    """
    from apps.face_access import verification
    from shared.files import atomic_output

    if not 0 < far < 1:
        raise InputError(f"--far must lie between 0 and 1, got {far}")
    if db is not None and not recommend_threshold:
        raise InputError("--db stores the recommended threshold: give --recommend-threshold")
    # The database's model when --db holds embeddings (a threshold belongs to one model).
    spec, weights = resolve_model(model, _enrolled_models(db) if db else [], db or "database")
    models = (spec, weights, detector_model, runtime)
    name = dataset.stem if dataset.is_file() else dataset.name
    report_path = report or Path(f"{name}_face-eval.json")
    roc_path = roc or Path(f"{name}_roc.png")
    for output in (report_path, roc_path, save_embeddings):
        if output is not None and output.resolve() == dataset.resolve():
            raise InputError(f"{output}: would overwrite the input")

    try:
        if dataset.is_file() and dataset.suffix != ".npz":
            result, (genuine, impostor) = _pairs_file_report(
                dataset, images, several, models, folds
            )
            if recommend_threshold:
                result["recommendation"] = verification.recommend_threshold(
                    genuine, impostor, far
                ).to_dict()
        else:
            faceset = _faceset(dataset, roles_list(roles), aligned, several, models, cache)
            if dataset.suffix == ".npz" and model is None:
                # Saved embeddings name their model; the door uses its settings (if catalogued).
                spec = spec_for_model_id(faceset.model_id) or dataclasses.replace(
                    spec, threshold=None
                )
            if save_embeddings is not None:
                faceset.save(save_embeddings)
            strangers = None
            if stranger_role:
                from apps.face_access.facesets import read_roles

                folder = dataset if dataset.is_dir() else Path(faceset.paths[0]).parents[1]
                strangers = [p for p, r in read_roles(folder).items() if r == stranger_role]
            result, (genuine, impostor) = verification.faceset_report(
                faceset,
                strangers=strangers,
                enrol=enrol,
                threshold=threshold if threshold is not None else spec.threshold,
                margin=margin if margin is not None else spec.margin,
                folds=folds,
                seed=seed,
                max_impostor_pairs=max_impostor_pairs,
                far=far if recommend_threshold else None,
            )
    except ValueError as err:  # a set too small for the figures asked
        raise InputError(f"{dataset}: {err}") from err
    result = {"dataset": str(dataset), **result}

    if db is not None:
        from apps.face_access.store import FaceStore

        chosen = result["recommendation"]
        with FaceStore(db) as store:
            store.set_threshold(
                result["model_id"],
                chosen["threshold"],
                far=far,
                note=f"face-eval {dataset}: {chosen['impostors_accepted']} of "
                f"{chosen['impostor_pairs']} impostor pairs under it",
            )
        result["stored_in"] = str(db)

    with atomic_output(report_path) as temp:
        temp.write_text(json.dumps(result, indent=1, default=_json_number) + "\n")
    verification.plot_roc(
        roc_path,
        {result["model_id"]: verification.roc_points(genuine, impostor)},
        f"{name}: AUC {result['pairs']['auc']:.4f}",
    )
    if as_json:
        click.echo(json.dumps(result, default=_json_number))
        return
    for line in verification.summary_lines(result):
        click.echo(line)
    if db is not None:
        click.echo(f"stored as the threshold of {db} for model {result['model_id']}")
    click.echo(f"wrote {report_path} and {roc_path}")


def _json_number(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {value!r}")

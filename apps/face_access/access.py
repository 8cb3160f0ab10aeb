"""Enrolment and door checks as plain functions: what the commands do, callable from Python.

Every check is audited: granted, denied, error (no usable face, unreadable image) and
refused (asked during a lock-out). After ``max_denials`` denials within ``window`` seconds,
checks are refused for ``cooldown`` seconds, so the door cannot be brute-forced with photos.
The rules themselves (nearest person, margin, anti-flicker, lockout) live in ``decision``
and the database in ``store``; this module wires them to the face pipeline.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from apps.face_access.decision import (
    DEFAULT_CONSECUTIVE_FRAMES,
    DEFAULT_COOLDOWN_SECONDS,
    DEFAULT_MAX_DENIALS,
    DEFAULT_WINDOW_SECONDS,
    ConsecutiveMatch,
    Decision,
    DenialLockout,
    GalleryIndex,
    decide,
)
from apps.face_access.store import FaceStore, clean_name
from shared.errors import InputError, UserError
from shared.files import hash_file
from shared.images import list_images, read_image

if TYPE_CHECKING:  # the pipeline loads TensorFlow; face-admin needs none of it
    from apps.face_access.pipeline import FacePipeline


# Enrolment refuses a photo that does not look like the person it is added to (a photo of
# someone else slipped into a person's enrolment would open the door for them), relative to the
# door's threshold T, so the rule follows the model's own scale:
# - nearer to another enrolled person than T (and than to the person's own photos): at the door
#   it would be granted as that other person;
# - farther than F x T from every photo of the person (the ones already enrolled and the others
#   given in the same command), F being the embedder's ``far_from_own_factor`` (chosen per model
#   on development data: ``apps.face_access.models``).
# The rule guards against mistakes, not attacks, and ``force`` overrides it.


@dataclass
class EnrolReport:
    """What an enrolment took and refused; ``vectors`` etc. are the faces to store."""

    name: str
    enrolled: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # one-line reasons naming the image
    embeddings: int = 0  # the person's embeddings of this model once stored
    vectors: list[np.ndarray] = field(default_factory=list, repr=False)
    scores: list[float] = field(default_factory=list, repr=False)
    digests: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "enrolled": self.enrolled,
            "rejected": self.rejected,
            "embeddings": self.embeddings,
        }


def collect_faces(
    pipeline: FacePipeline,
    name: str,
    images: Iterable[tuple[str, np.ndarray | Path]],
    *,
    largest: bool = False,
    limit: int | None = None,
) -> EnrolReport:
    """The usable faces of ``(source, image)`` pairs (an image is a Path or RGB pixels).

    Unusable images are skipped with their reason; reading stops after ``limit`` usable
    faces (a camera offers frames until enough are good). If none is usable InputError is
    raised. Nothing is stored: ``add_faces`` does that, so a failed enrolment never
    touches (or creates) a database.
    """
    report = EnrolReport(clean_name(name))  # before the models run, not after
    chips = []
    for source, image in images:
        try:
            if isinstance(image, Path):
                rgb, sha256 = read_image(image), hash_file(image)
            else:
                rgb = image
                sha256 = hashlib.sha256(np.ascontiguousarray(image)).hexdigest()
            face, chip, _ = pipeline.usable_chip(rgb, source, largest=largest)
        except InputError as err:
            report.rejected.append(str(err))
            continue
        chips.append(chip)
        report.scores.append(face.score)
        report.digests.append(sha256)
        report.enrolled.append(source)
        if limit is not None and len(chips) == limit:
            break
    if not chips:
        raise InputError(f"no usable face to enrol {report.name!r}: " + "; ".join(report.rejected))
    # A person's faces in one batch: one network call instead of one per photo.
    report.vectors = list(pipeline.embedder.embed(np.stack(chips)))
    return report


def enrolment_conflicts(
    store: FaceStore,
    report: EnrolReport,
    model_id: str,
    threshold: float,
    far_factor: float,
    *,
    replace: bool = False,
) -> list[str]:
    """One-line reasons why photos of ``report`` seem not to show its person (nearer to someone
    else than ``threshold``, or farther than ``far_factor`` x ``threshold`` from all of the
    person's other photos); empty when all look right. With ``replace`` the person's stored
    photos are about to go, so only the photos given now are their own."""
    names, matrix, person_of_row = store.gallery(model_id)
    new = np.stack(report.vectors)
    own_stored = (
        np.zeros(0, bool)
        if report.name not in names or replace
        else (person_of_row == names.index(report.name))
    )
    conflicts = []
    for index, (source, vector) in enumerate(zip(report.enrolled, new, strict=True)):
        others_new = np.delete(new, index, axis=0)
        own = [np.linalg.norm(others_new - vector, axis=1)]
        nearest_other, other_name = np.inf, None
        if len(matrix):
            distances = np.linalg.norm(matrix - vector, axis=1)
            if own_stored.any():
                own.append(distances[own_stored])
            per_person = np.full(len(names), np.inf)
            np.minimum.at(per_person, person_of_row, distances)
            if report.name in names:
                per_person[names.index(report.name)] = np.inf
            if np.isfinite(per_person).any():
                nearest = int(np.argmin(per_person))
                nearest_other, other_name = float(per_person[nearest]), names[nearest]
        own_distances = np.concatenate(own)  # empty for a new person's only photo
        nearest_own = float(own_distances.min()) if own_distances.size else np.inf
        if nearest_other < threshold and nearest_other < nearest_own:
            conflicts.append(
                f"{source}: looks like {other_name} (distance {nearest_other:.3f}), "
                f"not {report.name}"
            )
        elif own_distances.size and nearest_own > far_factor * threshold:
            conflicts.append(
                f"{source}: unlike {report.name}'s other photos (nearest at "
                f"{nearest_own:.3f}, more than {far_factor * threshold:.3f})"
            )
    return conflicts


def door_threshold(store: FaceStore, pipeline: FacePipeline, given: float | None = None) -> float:
    """The distance under which the door grants: ``given`` (``--threshold``), else the one
    stored in the database for this model (``face-eval --recommend-threshold --db``), else
    the model's own (``EmbedderSpec.threshold``); InputError when there is none at all."""
    if given is not None:
        return given
    spec = pipeline.embedder.spec
    stored = store.threshold(spec.model_id)
    if stored is not None:
        return stored
    if spec.threshold is None:
        raise InputError(
            f"{spec.name}: the model carries no threshold; choose one on your own photos with "
            f"face-eval PHOTOS --model {spec.name} --recommend-threshold --db {store.path} "
            "(or give --threshold)"
        )
    return spec.threshold


def add_faces(
    store: FaceStore,
    pipeline: FacePipeline,
    report: EnrolReport,
    *,
    replace: bool = False,
    force: bool = False,
    threshold: float | None = None,
) -> EnrolReport:
    """Store the faces ``collect_faces`` found, unless a photo seems to show someone else.

    Such a photo (``enrolment_conflicts``) refuses the whole enrolment with InputError, so
    nothing half-done is stored; ``force`` stores it anyway. ``threshold`` is the door's
    (None: ``door_threshold``).
    """
    threshold = door_threshold(store, pipeline, threshold)
    if not force:
        far_factor = pipeline.embedder.spec.far_from_own_factor
        conflicts = enrolment_conflicts(
            store, report, pipeline.model_id, threshold, far_factor, replace=replace
        )
        if conflicts:
            more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise InputError(f"{conflicts[0]}{more}; nothing enrolled (--force to enrol anyway)")
    report.embeddings = store.enroll(
        report.name,
        np.stack(report.vectors),
        pipeline.model_id,
        sources=report.enrolled,
        scores=report.scores,
        replace=replace,
        digests=report.digests,
        detector=pipeline.detector.name,
    )
    return report


def enrol(
    store: FaceStore,
    pipeline: FacePipeline,
    name: str,
    images: Iterable[tuple[str, np.ndarray | Path]],
    *,
    largest: bool = False,
    replace: bool = False,
    limit: int | None = None,
    force: bool = False,
    threshold: float | None = None,
) -> EnrolReport:
    """Enrol ``name`` from ``(source, image)`` pairs: ``collect_faces`` then ``add_faces``.

    If no face is usable, or a photo seems to show someone else, nothing is written, so a
    typo cannot wipe a person enrolled with ``replace``.
    """
    report = collect_faces(pipeline, name, images, largest=largest, limit=limit)
    return add_faces(store, pipeline, report, replace=replace, force=force, threshold=threshold)


def person_folders(root: Path) -> list[Path]:
    """The subfolders of ``root`` (one per person, named after them), sorted; InputError if none."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (one subfolder of photos per person expected)")
    folders = sorted(path for path in root.iterdir() if path.is_dir())
    if not folders:
        raise InputError(f"{root}: no subfolders (one subfolder of photos per person expected)")
    return folders


def enrol_folders(
    store: FaceStore,
    pipeline: FacePipeline,
    folders: Iterable[Path],
    *,
    largest: bool = False,
    replace: bool = False,
    force: bool = False,
) -> Iterator[tuple[str, EnrolReport | None, str | None]]:
    """Enrol each folder's photos under the folder's name, one person at a time.

    Yields ``(name, report, None)`` for a person enrolled and ``(name, None, reason)`` for one
    who was not (no usable photo, or a photo that looks like someone else: see ``add_faces``).
    Each person is written in one transaction (``enrol``), so an interruption or a refused
    person leaves nobody half-enrolled.
    """
    for folder in folders:
        photos = sorted(list_images(folder), key=lambda path: path.name)
        try:
            if not photos:
                raise InputError(f"{folder}: no image files")
            sources = ((str(photo), photo) for photo in photos)
            report = enrol(
                store, pipeline, folder.name, sources, largest=largest, replace=replace, force=force
            )
        except InputError as err:
            yield folder.name, None, str(err)
            continue
        yield folder.name, report, None


@dataclass
class CheckResult:
    """One check: ``decision`` is granted, denied, error or refused.

    ``faces`` is how many faces the image held (the largest was judged); ``locked_for``
    the seconds of the lock-out this denial started (0: none).
    """

    source: str
    decision: str
    name: str | None = None
    distance: float | None = None
    threshold: float | None = None
    reason: str | None = None
    faces: int | None = None
    locked_for: float = 0.0

    def as_json(self) -> dict:
        return {
            "image": self.source,
            "decision": self.decision,
            "name": self.name,
            "distance": None if self.distance is None else round(self.distance, 4),
            "threshold": self.threshold,
            "faces": self.faces,
            "locked_for": round(self.locked_for),
        }

    def line(self) -> str:
        if self.decision == "granted":
            text = f"GRANTED {self.name} (distance {self.distance:.3f}{self._largest()})"
        elif self.decision == "denied":
            if self.name is None:
                text = f"DENIED (nobody enrolled{self._largest()})"
            else:
                # Denied although under the threshold: the margin rule refused it.
                ambiguous = self.distance < self.threshold
                why = ", too close to another person" if ambiguous else ""
                text = f"DENIED (closest {self.name} {self.distance:.3f}{why}{self._largest()})"
        else:
            text = f"{self.decision.upper()} ({self.reason})"
        if self.locked_for > 0:
            text += f"; door locked for {self.locked_for:.0f} s (face-admin unlock lifts it)"
        return text

    def _largest(self) -> str:
        return f", the largest of {self.faces} faces" if self.faces and self.faces > 1 else ""


class DoorChecker:
    """Checks faces against the store's people, audits each decision, enforces lock-outs."""

    def __init__(
        self,
        store: FaceStore,
        pipeline: FacePipeline,
        *,
        threshold: float | None = None,
        margin: float | None = None,
        max_denials: int = DEFAULT_MAX_DENIALS,
        window: float = DEFAULT_WINDOW_SECONDS,
        cooldown: float = DEFAULT_COOLDOWN_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.pipeline = pipeline
        # None: the embedder's own defaults (each model has its distance scale).
        spec = pipeline.embedder.spec
        self.threshold = door_threshold(store, pipeline, threshold)
        self.margin = spec.margin if margin is None else margin
        self.lockout = DenialLockout(max_denials, window, cooldown)
        self.clock = clock
        self.gallery = GalleryIndex(*store.gallery(pipeline.model_id))
        self.stale_people = store.stale_people(pipeline.model_id)

    def locked_for(self) -> float:
        """Seconds left of the current lock-out (0 when checks are allowed)."""
        now = self.clock()
        denials = self.store.recent_denials(self.lockout.lookback_s, now=now)
        until = self.lockout.refused_until(denials, now)
        return 0.0 if until is None else (until - now).total_seconds()

    def decide(self, vector: np.ndarray) -> Decision:
        return decide(self.gallery, vector, self.threshold, self.margin)

    def _record(self, result: CheckResult) -> CheckResult:
        self.store.log_check(
            result.source,
            result.decision,
            result.name,
            result.distance,
            result.threshold,
            self.pipeline.model_id,
            result.reason,
            at=self.clock(),
        )
        return result

    def _refusal(self, source: str) -> CheckResult | None:
        remaining = self.locked_for()
        if remaining <= 0:
            return None
        reason = (
            f"locked after {self.lockout.max_denials} denials; retry in {remaining:.0f} s "
            "or lift it with face-admin unlock"
        )
        return CheckResult(source, "refused", threshold=self.threshold, reason=reason)

    def _from_decision(self, source: str, decision: Decision, faces: int) -> CheckResult:
        """The result of a decision, audited; a denial that starts a lock-out says so."""
        result = self._record(
            CheckResult(
                source,
                "granted" if decision.granted else "denied",
                decision.name,
                decision.distance,
                decision.threshold,
                decision.reason,
                faces,
            )
        )
        if not decision.granted:
            result.locked_for = self.locked_for()
        return result

    def check_image(self, source: str, image: Path | np.ndarray) -> CheckResult:
        """One image: the decision for its largest usable face (error if none), audited.

        Of several faces the largest is judged (a door camera sees passers-by behind the
        person at the door); the result's ``faces`` says how many there were.
        """
        refused = self._refusal(source)
        if refused:
            return self._record(refused)
        try:
            rgb = read_image(image) if isinstance(image, Path) else image
            found = self.pipeline.face_vector(rgb, source, largest=True)
        except InputError as err:
            return self._record(
                CheckResult(source, "error", threshold=self.threshold, reason=str(err))
            )
        return self._from_decision(source, self.decide(found.vector), found.faces_found)

    def watch(
        self,
        frames: Iterable[np.ndarray],
        source: str,
        consecutive: int = DEFAULT_CONSECUTIVE_FRAMES,
    ) -> Iterator[CheckResult]:
        """Camera mode: a decision once the same outcome holds for ``consecutive`` frames.

        The door opens only when one person matches in that many frames in a row, so a
        single lucky frame (or a flicker between two people) opens nothing; likewise a
        denial is audited once per run of denied frames, not per frame
        (``ConsecutiveMatch``). Frames without a usable face break any run and are not
        audited; a lock-out is audited once, and the frames during it are skipped.
        """
        gate = ConsecutiveMatch(consecutive)
        # A lock-out is audited once; the frames it turns away after that cost no work.
        quiet_until: datetime | None = None
        for index, rgb in enumerate(frames):
            if quiet_until is not None and self.clock() < quiet_until:
                continue
            frame_source = f"{source}#{index}"
            refused = self._refusal(frame_source)
            if refused:
                gate.update(None)
                yield self._record(refused)
                quiet_until = self.clock() + timedelta(seconds=self.locked_for())
                continue
            try:
                found = self.pipeline.face_vector(rgb, frame_source, largest=True)
            except InputError:
                gate.update(None)
                continue
            settled = gate.update(self.decide(found.vector))
            if settled is not None:
                yield self._from_decision(frame_source, settled, found.faces_found)


def run_on_grant(command: str, result: CheckResult) -> subprocess.CompletedProcess[str]:
    """Run the door's command (a relay, a lock) with the person's name in its environment.

    The command runs through the shell, as typed by the administrator who configured the
    door; the name travels only as the environment variables ``FACE_NAME`` and
    ``FACE_DISTANCE``, never pasted into the command line. Its output (stdout and stderr
    together) is returned rather than let through, so it cannot mix with the decisions a
    script reads from our stdout; the caller shows it and judges the exit code.
    """
    env = dict(os.environ, FACE_NAME=result.name or "", FACE_DISTANCE=f"{result.distance:.4f}")
    try:
        return subprocess.run(
            command,
            shell=True,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as err:
        raise UserError(f"--on-grant command could not start: {err}") from err

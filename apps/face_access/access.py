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
    DEFAULT_MARGIN,
    DEFAULT_MAX_DENIALS,
    DEFAULT_THRESHOLD,
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
from shared.images import read_image

if TYPE_CHECKING:  # the pipeline loads TensorFlow; face-admin needs none of it
    from apps.face_access.pipeline import FacePipeline


@dataclass
class EnrolReport:
    name: str
    enrolled: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # one-line reasons naming the image


def enrol(
    store: FaceStore,
    pipeline: FacePipeline,
    name: str,
    images: Iterable[tuple[str, np.ndarray | Path]],
    *,
    largest: bool = False,
    replace: bool = False,
    limit: int | None = None,
) -> EnrolReport:
    """Enrol ``name`` from ``(source, image)`` pairs (an image is a Path or RGB pixels).

    Unusable images are skipped with their reason; reading stops after ``limit`` usable
    faces (a camera offers frames until enough are good). If none is usable nothing is
    written and InputError is raised, so a typo cannot wipe a person enrolled with ``replace``.
    """
    name = clean_name(name)  # before the models run, not after
    report = EnrolReport(name)
    vectors, scores, digests = [], [], []
    for source, image in images:
        try:
            if isinstance(image, Path):
                rgb, sha256 = read_image(image), hash_file(image)
            else:
                rgb = image
                sha256 = hashlib.sha256(np.ascontiguousarray(image)).hexdigest()
            found = pipeline.face_vector(rgb, source, largest=largest)
        except InputError as err:
            report.rejected.append(str(err))
            continue
        vectors.append(found.vector)
        scores.append(found.face.score)
        digests.append(sha256)
        report.enrolled.append(source)
        if limit is not None and len(vectors) == limit:
            break
    if not vectors:
        raise InputError(f"no usable face to enrol {name!r}: " + "; ".join(report.rejected))
    store.enroll(
        name,
        np.stack(vectors),
        pipeline.model_id,
        sources=report.enrolled,
        scores=scores,
        replace=replace,
        digests=digests,
        detector=pipeline.detector.name,
    )
    return report


@dataclass
class CheckResult:
    """One check: ``decision`` is granted, denied, error or refused."""

    source: str
    decision: str
    name: str | None = None
    distance: float | None = None
    threshold: float | None = None
    reason: str | None = None

    def as_json(self) -> dict:
        return {
            "image": self.source,
            "decision": self.decision,
            "name": self.name,
            "distance": None if self.distance is None else round(self.distance, 4),
            "threshold": self.threshold,
        }

    def line(self) -> str:
        if self.decision == "granted":
            return f"GRANTED {self.name} (distance {self.distance:.3f})"
        if self.decision == "denied":
            if self.name is None:
                return "DENIED (nobody enrolled)"
            # Denied although under the threshold: the margin rule refused it.
            ambiguous = self.distance < self.threshold
            why = ", too close to another person" if ambiguous else ""
            return f"DENIED (closest {self.name} {self.distance:.3f}{why})"
        return f"{self.decision.upper()} ({self.reason})"


class DoorChecker:
    """Checks faces against the store's people, audits each decision, enforces lock-outs."""

    def __init__(
        self,
        store: FaceStore,
        pipeline: FacePipeline,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        max_denials: int = DEFAULT_MAX_DENIALS,
        window: float = DEFAULT_WINDOW_SECONDS,
        cooldown: float = DEFAULT_COOLDOWN_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.pipeline = pipeline
        self.threshold = threshold
        self.margin = margin
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
        reason = f"locked after {self.lockout.max_denials} denials; retry in {remaining:.0f} s"
        return CheckResult(source, "refused", threshold=self.threshold, reason=reason)

    def _from_decision(self, source: str, decision: Decision) -> CheckResult:
        return CheckResult(
            source,
            "granted" if decision.granted else "denied",
            decision.name,
            decision.distance,
            decision.threshold,
            decision.reason,
        )

    def check_image(self, source: str, image: Path | np.ndarray) -> CheckResult:
        """One image: the decision for its largest usable face (error if none), audited."""
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
        return self._record(self._from_decision(source, self.decide(found.vector)))

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
                yield self._record(self._from_decision(frame_source, settled))


def run_on_grant(command: str, result: CheckResult) -> int:
    """Run the door's command (a relay, a lock) with the person's name in its environment.

    The command runs through the shell, as typed by the administrator who configured the
    door; the name travels only as the environment variables ``FACE_NAME`` and
    ``FACE_DISTANCE``, never pasted into the command line.
    """
    env = dict(os.environ, FACE_NAME=result.name or "", FACE_DISTANCE=f"{result.distance:.4f}")
    try:
        return subprocess.run(command, shell=True, env=env, check=False).returncode
    except OSError as err:
        raise UserError(f"--on-grant command could not start: {err}") from err

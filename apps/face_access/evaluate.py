"""The door scenario, through the commands only: enrol half the people, check everyone else.

Enrol the first half of the identities (sorted folder names) with their first ``enrol``
photos (sorted file names); then check the other photos of the enrolled people (each should
be granted as themselves) and every photo of the other half (impostors: should be denied).
This is the protocol of dlib's anchor figures in ``reference/dlib_oracle/README.md``.

The commands run in this process (click's runner), so the models load once; each one is
called with exactly the arguments a user would type, and its JSON output is what is scored.

    CONVNET_APPS_WEIGHTS_DIR=../shared/weights python -m apps.face_access.evaluate \
        ../shared/data/faces/att_faces
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
from click.testing import CliRunner

from apps.face_access.cli import check_command, enroll_command
from apps.face_access.decision import DEFAULT_THRESHOLD
from shared.images import list_images


@dataclass(frozen=True)
class DoorFigures:
    enrolled_people: int
    genuine_probes: int
    impostor_probes: int
    right_person: int  # genuine probes granted as themselves
    wrong_person: int  # genuine probes granted as someone else
    impostors_granted: int
    errors: int  # probes with no usable face (counted as not granted)

    @property
    def true_accept_rate(self) -> float:
        return self.right_person / self.genuine_probes

    @property
    def false_accept_rate(self) -> float:
        return self.impostors_granted / self.impostor_probes

    def summary(self) -> str:
        return (
            f"{self.enrolled_people} enrolled; TAR {self.true_accept_rate:.3f} "
            f"({self.right_person}/{self.genuine_probes}), wrong person {self.wrong_person}, "
            f"impostors granted {self.impostors_granted}/{self.impostor_probes} "
            f"(FAR {self.false_accept_rate:.3f}), no usable face {self.errors}"
        )


def _run(command, args: list[str], exit_codes: tuple[int, ...]) -> str:
    result = CliRunner().invoke(command, args)
    # Pass the commands' warnings on: above all the one saying YuNet was not found and the
    # Haar cascade stands in, which changes every figure (AT&T: TAR 0.96, one impostor in).
    click.echo(result.stderr, err=True, nl=False)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    if crashed or result.exit_code not in exit_codes:
        raise RuntimeError(
            f"face command failed (exit {result.exit_code}): {result.stderr.strip()}"
        ) from result.exception
    return result.stdout


def door_scenario(
    folder: Path,
    db: Path,
    *,
    enrol: int = 5,
    threshold: float = DEFAULT_THRESHOLD,
    model_args: tuple[str, ...] = (),
) -> DoorFigures:
    """Run the scenario on ``folder`` (one subfolder of photos per person) into database ``db``."""
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    enrolled = people[: len(people) // 2]
    probes: list[tuple[Path, str | None]] = []
    for person in people:
        photos = sorted(list_images(person), key=lambda p: p.name)
        if person in enrolled:
            args = [person.name, *map(str, photos[:enrol]), "--db", str(db), *model_args]
            _run(enroll_command, args, exit_codes=(0,))
            probes += [(photo, person.name) for photo in photos[enrol:]]
        else:
            probes += [(photo, None) for photo in photos]
    args = ["--json", "--max-denials", "0", "--threshold", str(threshold), "--db", str(db)]
    photos = [str(photo) for photo, _ in probes]
    # Every answer is valid here: 0 all granted, 1 some denied, 2 some without a usable face.
    output = _run(check_command, [*args, *model_args, *photos], exit_codes=(0, 1, 2))
    answers = [json.loads(line) for line in output.splitlines()]
    if len(answers) != len(probes):
        raise RuntimeError(f"face-check answered {len(answers)} of {len(probes)} photos")
    granted = [a["name"] if a["decision"] == "granted" else None for a in answers]
    truths = [truth for _, truth in probes]
    pairs = list(zip(granted, truths, strict=True))
    return DoorFigures(
        enrolled_people=len(enrolled),
        genuine_probes=sum(t is not None for t in truths),
        impostor_probes=sum(t is None for t in truths),
        right_person=sum(g is not None and g == t for g, t in pairs),
        wrong_person=sum(g is not None and t is not None and g != t for g, t in pairs),
        impostors_granted=sum(g is not None and t is None for g, t in pairs),
        errors=sum(a["decision"] == "error" for a in answers),
    )


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--enrol", default=5, show_default=True, help="Photos enrolled per person.")
@click.option("--threshold", default=DEFAULT_THRESHOLD, show_default=True)
def main(folder: Path, enrol: int, threshold: float) -> None:
    """Print the door scenario's figures for FOLDER (a face set, one folder per person)."""
    with tempfile.TemporaryDirectory() as scratch:
        figures = door_scenario(
            folder, Path(scratch) / "faces.db", enrol=enrol, threshold=threshold
        )
    click.echo(f"{folder.name} at threshold {threshold}: {figures.summary()}")
    sys.exit(0)


if __name__ == "__main__":
    main()

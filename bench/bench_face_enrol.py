"""Bulk enrolment: ``face-enroll --from-folders`` against one ``face-enroll`` call per person.

The people are the first ``--people`` LFW ``train`` people of ``../shared/data/faces/
lfw_deepfunneled`` (SPLITS.tsv order) with their first 3 photos, linked into one folder per
person. Ours: one ``face-enroll --from-folders`` process. The peer: ``face-enroll NAME
PHOTOS...`` run as its own process per person, as a shell loop would, on ``--sample`` of the
people (every call pays Python start-up and the model load), scaled to all of them. The two
alternate (``--rounds``; each round a fresh database), and the median ratio is reported.
Goal (issue 13): at least 10x faster for 100 people.

    CONVNET_APPS_SHARED=../shared PYTHONPATH=. python bench/bench_face_enrol.py
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _enrol(args: list[str]) -> float:
    """Seconds of one face-enroll process (exit 0 or 2: refused people are part of the job)."""
    command = [sys.executable, "-c", "from apps.face_access.cli import enroll_command as c; c()"]
    begin = time.perf_counter()
    done = subprocess.run(command + args, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 2):
        sys.exit(f"face-enroll failed ({done.returncode}): {done.stderr.strip()}")
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--sample", type=int, default=10, help="single calls timed per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="sface")
    args = parser.parse_args()
    shared = Path(
        os.environ.get("CONVNET_APPS_SHARED", Path(__file__).resolve().parents[2] / "shared")
    )
    os.environ.setdefault("CONVNET_APPS_WEIGHTS_DIR", str(shared / "weights"))
    lfw = shared / "data" / "faces" / "lfw_deepfunneled"
    with open(lfw / "SPLITS.tsv", newline="") as table:
        rows = list(csv.DictReader(table, delimiter="\t"))
    people = [row["identity"] for row in rows if row["role"] == "train"][: args.people]
    ratios = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "people"
        for name in people:
            (root / name).mkdir(parents=True)
            for photo in sorted((lfw / name).iterdir())[:3]:
                (root / name / photo.name).symlink_to(photo)
        for round_ in range(args.rounds):
            db = Path(scratch) / f"bulk{round_}.db"
            bulk = _enrol(["--from-folders", str(root), "--db", str(db), "--model", args.model])
            db = Path(scratch) / f"single{round_}.db"
            single = statistics.mean(
                _enrol(
                    [
                        name,
                        *map(str, sorted((root / name).iterdir())),
                        "--db",
                        str(db),
                        "--model",
                        args.model,
                    ]
                )
                for name in people[: args.sample]
            )
            ratios.append(single * len(people) / bulk)
            print(
                f"round {round_ + 1}: --from-folders {bulk:.1f} s for {len(people)} people; "
                f"one call per person {single:.2f} s (mean of {args.sample}) -> "
                f"{single * len(people):.0f} s for {len(people)}; ratio {ratios[-1]:.1f}x"
            )
        shutil.rmtree(root)
    print(f"load average (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} cores")
    verdict = "met" if statistics.median(ratios) >= 10 else "missed"
    print(f"median ratio {statistics.median(ratios):.1f}x (goal >= 10x: {verdict})")


if __name__ == "__main__":
    main()

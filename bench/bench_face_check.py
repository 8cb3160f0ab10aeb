"""Speed of a door check: one 640x480 photo end to end, against OpenCV's SFace pipeline.

Each side runs in its own process, pinned to ``--cores`` CPUs (default 1: the issue's figure;
``os.sched_setaffinity``, so OpenVINO, TensorFlow, OpenCV and BLAS all see that many, and each
is told to use that many threads), and they take turns:

- ours, once per runtime (``--runtimes``): ``DoorChecker.check_image`` of ``face-check`` (decode,
  YuNet, alignment, the embedder of ``--model`` on that runtime, search, audit write) on a
  database enrolled by ``face-enroll``; and the embedder alone on the face's chip;
- the peer imports OpenCV and NumPy only: ``cv2.imread``, ``FaceDetectorYN`` on the image
  shrunk to 320 px as ours, ``FaceRecognizerSF.alignCrop`` and ``feature`` (SFace, whatever
  ``--model`` is); and ``feature`` alone on its aligned chip.

Every round asks each side for the median of ``--repeat`` checks; the ratio ours/peer of each
round is printed and the median over ``--rounds`` is the figure, so that other jobs on a shared
machine weigh on both alike. Goals: one check at most 20 ms with SFace and 12 ms with
MobileFaceNet (issue 13), at most 10 ms (issue 9).

Start-up (issue 9: at most 1.0 s with a warm cache): the whole ``face-check photo`` process as
a user runs it (not pinned), on each of ``--startup-runtimes`` (OpenVINO, the default; on
TensorFlow it takes seconds, importing the model), alternating with a process of the peer that
loads its two models and checks the photo once; the first run of each is discarded (it may
build the compiled-model cache), then the median of ``--startup-rounds``.

    python bench/bench_face_check.py --model sface            # from the repository root
    python bench/bench_face_check.py --model mobilefacenet
    python bench/bench_face_check.py --model sface --cores 2  # both cores, as face-check runs

The photo is made here: a real Happy House camera face (``camera_0.jpg``, 96x96, scaled to
224x224) pasted into a real street frame from the car data set (``0001.jpg``, its centre 4:3
part shrunk to 640x480), saved as JPEG; each side checks that it holds exactly one face. The
same person's database photo (``younes.jpg``) is enrolled, so a check runs the whole path to a
grant. The reserved glint set is not used.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONVNET_APPS_SHARED", REPO_ROOT.parent / "shared"))
HAPPY_HOUSE = SHARED / "data" / "faces" / "happy_house" / "images"
# Per network: its int8 form (``sface-int8``) is the same network and has the same goal.
GOAL_MS = {"sface": 20.0, "mobilefacenet": 12.0}
ISSUE_9_CHECK_MS, ISSUE_9_STARTUP_S = 10.0, 1.0
PEER_DETECTION_SIDE = 320  # ours shrinks to this longer side too (detection.MAX_DETECTION_SIDE)
PEER = "opencv"


def _median_ms(action, repeat: int) -> float:
    action()  # warm-up: caches, lazily built kernels
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        action()
        times.append(1000 * (time.perf_counter() - begin))
    return statistics.median(times)


def _serve(measure) -> None:
    """Answer each line on stdin (a repeat count) with one JSON line of medians."""
    for line in sys.stdin:
        print(json.dumps(measure(int(line))), flush=True)


def _peer_weights() -> list[str]:
    """The peer's two model files, found by our resolver (not timed; these modules load
    OpenCV and NumPy only)."""
    from apps.face_access.detection import YUNET_FILENAME, YUNET_MODEL
    from apps.face_access.models import SFACE, weights_path
    from shared.weights import resolve_file

    return [str(weights_path(SFACE)), str(resolve_file(YUNET_MODEL, YUNET_FILENAME))]


def _opencv_models(sface: str, yunet: str):
    import cv2

    recognizer = cv2.FaceRecognizerSF.create(sface, "")
    detector = cv2.FaceDetectorYN.create(yunet, "", (320, 320), 0.6, 0.3, 5000)
    return recognizer, detector


def _opencv_check(recognizer, yunet, photo: str):
    """OpenCV's whole pipeline on one photo: the aligned chip and its SFace feature."""
    import cv2

    image = cv2.imread(photo)
    scale = PEER_DETECTION_SIDE / max(image.shape[:2])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    yunet.setInputSize((small.shape[1], small.shape[0]))
    _, faces = yunet.detect(small)
    found = 0 if faces is None else len(faces)
    if found != 1:
        sys.exit(f"the bench photo should hold one face; YuNet finds {found}")
    face = faces[0].copy()
    face[:14] /= scale
    chip = recognizer.alignCrop(image, face)
    return chip, recognizer.feature(chip)


def opencv_worker(photo: str, cores: int) -> None:
    import cv2

    cv2.setNumThreads(cores)
    begin = time.perf_counter()
    recognizer, yunet = _opencv_models(*_peer_weights())
    chip, _ = _opencv_check(recognizer, yunet, photo)
    loaded = time.perf_counter()
    assert not {"tensorflow", "keras", "openvino"} & set(sys.modules), "the peer loads OpenCV only"
    print(json.dumps({"load_ms": 1000 * (loaded - begin)}), flush=True)
    _serve(
        lambda repeat: {
            "check": _median_ms(lambda: _opencv_check(recognizer, yunet, photo), repeat),
            "embed": _median_ms(lambda: recognizer.feature(chip), repeat),
        }
    )


def opencv_once(photo: str, sface: str, yunet_file: str) -> None:
    """The peer's start-up: load both models and check the photo, as a one-shot script would."""
    recognizer, yunet = _opencv_models(sface, yunet_file)
    _opencv_check(recognizer, yunet, photo)


def ours_worker(runtime: str, photo: Path, db: Path, model: str) -> None:
    from apps.face_access.access import DoorChecker
    from apps.face_access.detection import FaceDetector
    from apps.face_access.embedding import FaceEmbedder
    from apps.face_access.models import resolve_model
    from apps.face_access.pipeline import FacePipeline
    from apps.face_access.store import FaceStore
    from shared.images import read_image

    begin = time.perf_counter()
    spec, weights = resolve_model(model)
    embedder = FaceEmbedder(spec, weights, runtime=runtime)
    pipeline = FacePipeline(FaceDetector(runtime=runtime), embedder)
    store = FaceStore(db, create=False)
    checker = DoorChecker(store, pipeline, max_denials=0)
    decision = checker.check_image(str(photo), photo)
    loaded = time.perf_counter()
    if decision.decision != "granted":
        sys.exit(f"the bench photo should be granted: {decision.line()}")
    rgb = read_image(photo)
    (face,) = pipeline.detector.detect(rgb)
    chip = spec.chip(rgb, face.landmarks)
    vector = pipeline.embedder.embed(chip[None])[0]
    stages = {
        "decode": lambda: read_image(photo),
        "detect": lambda: pipeline.detector.detect(rgb),
        "align": lambda: spec.chip(rgb, face.landmarks),
        "embed": lambda: pipeline.embedder.embed(chip[None]),
        "search": lambda: checker.decide(vector),
        "audit": lambda: store.log_check(str(photo), "granted", decision.name, decision.distance),
    }
    ready = {
        "load_ms": 1000 * (loaded - begin),
        "runtime": pipeline.embedder.model.runtime,
        "decision": decision.line(),
        "stages": {stage: _median_ms(action, 20) for stage, action in stages.items()},
    }
    print(json.dumps(ready), flush=True)
    _serve(
        lambda repeat: {
            "check": _median_ms(lambda: checker.check_image(str(photo), photo), repeat),
            "embed": _median_ms(lambda: pipeline.embedder.embed(chip[None]), repeat),
        }
    )


def make_photo(path: Path) -> None:
    """The 640x480 door photo (see the module docstring)."""
    import cv2

    from shared.images import read_image

    street = read_image(SHARED / "data" / "cars" / "driveai" / "images" / "0001.jpg")
    height, width = street.shape[:2]
    crop_width = min(width, height * 4 // 3)
    left = (width - crop_width) // 2
    frame = cv2.resize(
        street[:, left : left + crop_width], (640, 480), interpolation=cv2.INTER_AREA
    )
    face = read_image(HAPPY_HOUSE / "camera_0.jpg")
    frame[120:344, 260:484] = cv2.resize(face, (224, 224), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])


def _command(name: str) -> list[str]:
    """A console script of this environment (as a user runs it), else its module."""
    script = Path(sys.executable).with_name(name)
    if script.is_file():
        return [str(script)]
    module = "apps.face_access.cli"
    function = {"face-check": "check_command", "face-enroll": "enroll_command"}[name]
    return [sys.executable, "-c", f"from {module} import {function}; {function}()"]


def _seconds(command: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of a whole process; the CPU time is the steadier figure on a
    machine busy with other jobs."""
    begin, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in ok:
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}): {done.stderr.strip()}")
    return seconds, after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime


def _load() -> str:
    return "load " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def _rotated(sides: list[str], index: int) -> list[str]:
    """The sides in turn order for round ``index``: who goes first changes every round."""
    shift = index % len(sides)
    return sides[shift:] + sides[:shift]


def startup_seconds(
    commands: dict[str, list[str]], rounds: int
) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each whole-process command, alternating, after one discarded run."""
    for command in commands.values():
        _seconds(command)  # it may compile the model for the cache; the page cache warms up
    seconds: dict[str, list[tuple[float, float]]] = {side: [] for side in commands}
    for index in range(rounds):
        for side in _rotated(list(commands), index):
            seconds[side].append(_seconds(commands[side]))
    return seconds


def check_rounds(
    sides: list[str], photo: Path, db: Path, args: argparse.Namespace, cpus: set[int]
) -> tuple[dict[str, dict], list[dict[str, dict]]]:
    """Start one pinned worker per side; (each one's ready line, each round's medians)."""
    workers, ready, rounds = {}, {}, []
    threads = str(len(cpus))
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads}
    try:
        for side in sides:
            command = [sys.executable, __file__, "--worker", side, str(photo), str(db), args.model]
            workers[side] = subprocess.Popen(
                [*command, "--cores", threads],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )
            line = workers[side].stdout.readline()
            if not line:
                sys.exit(f"the {side} side did not start (its error is above)")
            ready[side] = json.loads(line)
        for index in range(args.rounds):
            answers = {}
            for side in _rotated(sides, index):
                workers[side].stdin.write(f"{args.repeat}\n")
                workers[side].stdin.flush()
                answers[side] = json.loads(workers[side].stdout.readline())
            rounds.append(answers)
            print(f"round {index + 1} ({_load()}): " + ", ".join(
                f"{side} check {a['check']:.1f} ms, embed {a['embed']:.1f} ms"
                for side, a in answers.items()
            ))  # fmt: skip
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait()
    return ready, rounds


def _verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else "missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sface", help="sface, mobilefacenet or dlib")
    parser.add_argument("--runtimes", default="openvino,tensorflow", help="ours, comma-separated")
    parser.add_argument("--repeat", type=int, default=20, help="checks per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--startup-rounds", type=int, default=5, help="0: no start-up figure")
    parser.add_argument("--startup-runtimes", default="openvino", help="comma-separated")
    parser.add_argument("--cores", type=int, default=1, help="CPUs each side is pinned to")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--peer-once", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("CONVNET_APPS_WEIGHTS_DIR", str(SHARED / "weights"))
    if args.peer_once:
        opencv_once(*args.peer_once)
        return
    if args.worker:
        side, photo, db, model = args.worker
        if side == PEER:
            opencv_worker(photo, args.cores)
        else:
            ours_worker(side, Path(photo), Path(db), model)
        return

    runtimes = args.runtimes.split(",")
    cpus = set(sorted(os.sched_getaffinity(0))[-args.cores :])
    print(f"{_load()}; {os.cpu_count()} cores; checks pinned to CPUs {sorted(cpus)}; "
          f"model {args.model}")  # fmt: skip
    seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        photo, db = Path(folder) / "door.jpg", Path(folder) / "faces.db"
        make_photo(photo)
        enrol = [*_command("face-enroll"), "younes", str(HAPPY_HOUSE / "younes.jpg")]
        _seconds([*enrol, "--db", str(db), "--model", args.model])  # builds a cold cache
        if args.startup_rounds:
            check = [*_command("face-check"), str(photo), "--db", str(db), "--max-denials", "0"]
            started = args.startup_runtimes.split(",")
            commands = {runtime: [*check, "--runtime", runtime] for runtime in started}
            once = [sys.executable, __file__, "--peer-once", str(photo), *_peer_weights()]
            commands[PEER] = once
            seconds = startup_seconds(commands, args.startup_rounds)
            print(f"start-up, whole process, warm cache ({args.startup_rounds} rounds, {_load()}):")
            for side, runs in seconds.items():
                label = f"face-check --runtime {side}" if side != PEER else "OpenCV SFace script"
                walls = [wall for wall, _ in runs]
                ratio = ""
                if side != PEER:
                    peers = [wall for wall, _ in seconds[PEER]]
                    ratios = [a / b for a, b in zip(walls, peers, strict=True)]
                    ratio = f", ratio to OpenCV's {statistics.median(ratios):.2f}"
                print(
                    f"  {label}: median {statistics.median(walls):.2f} s "
                    f"({', '.join(f'{t:.2f}' for t in walls)}), CPU "
                    f"{statistics.median(cpu for _, cpu in runs):.2f} s{ratio}"
                )
        ready, rounds = check_rounds([*runtimes, PEER], photo, db, args, cpus)
    for runtime in runtimes:
        figures = ready[runtime]
        stages = ", ".join(f"{name} {ms:.2f}" for name, ms in figures["stages"].items())
        print(f"ours on {figures['runtime']}: loaded in {figures['load_ms']:.0f} ms; "
              f"{figures['decision']}; stages (ms): {stages}")  # fmt: skip
    print(f"one check on {len(cpus)} core(s), medians of {args.rounds} rounds x {args.repeat}:")
    for key, label in (("check", "face-check of the photo, end to end"), ("embed", "embedding")):
        peer_ms = statistics.median(answers[PEER][key] for answers in rounds)
        print(f"  {label}: OpenCV SFace {peer_ms:.1f} ms")
        for runtime in runtimes:
            ours_ms = statistics.median(answers[runtime][key] for answers in rounds)
            ratios = [answers[runtime][key] / answers[PEER][key] for answers in rounds]
            print(
                f"    ours on {runtime} {ours_ms:.1f} ms, ratio ours/OpenCV "
                f"{statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
            )
    goal = GOAL_MS.get(args.model.removesuffix("-int8"))
    for runtime in runtimes:
        check_ms = statistics.median(answers[runtime]["check"] for answers in rounds)
        verdicts = [
            f"<= {ISSUE_9_CHECK_MS:.0f} ms (issue 9): {_verdict(check_ms, ISSUE_9_CHECK_MS)}"
        ]
        if goal:
            verdicts.append(f"<= {goal:.0f} ms (issue 13): {_verdict(check_ms, goal)}")
        if runtime in seconds:
            start = statistics.median(wall for wall, _ in seconds[runtime])
            verdicts.append(
                f"start-up <= {ISSUE_9_STARTUP_S} s: {_verdict(start, ISSUE_9_STARTUP_S)}"
            )
        print(f"goals on {runtime}, at this load: " + "; ".join(verdicts))


if __name__ == "__main__":
    main()

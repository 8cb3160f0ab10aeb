"""``detect-cars`` options, outputs and summary, with a stand-in detector (no weights needed).

Bad values are usage errors found while parsing, before TensorFlow loads: one line naming
the flag, exit 2. The stand-in (``test_pipeline.SquareDetector``) takes the model's place,
so the rest of the command runs in a blink.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from test_pipeline import SquareDetector, frame_with_square

from apps.car_detection import detector
from apps.car_detection.cli import main
from shared.images import write_image
from shared.video import VideoWriter


def run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def stand_in(monkeypatch) -> SquareDetector:
    """The model is never loaded: ``load_detector`` hands out a ``SquareDetector``."""
    found = SquareDetector()
    monkeypatch.setattr(detector, "load_detector", lambda **_: found)
    return found


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    with VideoWriter(path, 10.0, 96, 64) as writer:
        for index in range(6):
            writer.write(frame_with_square(index))
    return path


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--batch", "-3"),
        ("--batch", "0"),
        ("--batch", "100000"),
        ("--size", "100000"),
        ("--size", "100"),
        ("--size", "0"),
        ("--size", "-32"),
        ("--conf", "1.5"),
        ("--conf", "-0.1"),
        ("--iou", "0"),
        ("--iou", "1.1"),
        ("--max-det", "0"),
        ("--vid-stride", "0"),
        ("--model", "yolov9"),
        ("--model", "yunet"),
    ],
)
def test_a_bad_option_value_is_one_line_naming_the_flag_and_exit_2(
    monkeypatch, tmp_path: Path, option: str, value: str
):
    monkeypatch.setattr(detector, "load_detector", lambda **_: pytest.fail("model loaded"))
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run(["clip.mp4", option, value])
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert f"'{option}'" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_size_message_says_what_is_allowed():
    code, _, stderr = run(["clip.mp4", "--size", "100"])
    assert code == 2 and "not a positive multiple of 32 up to 1280" in stderr


def test_model_choices_are_the_catalogue_detectors_only():
    code, stdout, _ = run(["--help"])
    assert code == 0
    listed = stdout.split("--model [", 1)[1].split("]", 1)[0].split("|")
    assert listed == ["yolo-fastest-1.1", "yolo-fastest-1.1-xl", "yolov2", "X.keras"]
    _, _, stderr = run(["clip.mp4", "--model", "yolov9"])
    assert "yolov2" in stderr and "yunet" not in stderr and "squeezenet" not in stderr


def test_bad_values_fail_before_tensorflow_is_imported(tmp_path: Path):
    """Parsing must not wait for (or need) TensorFlow: its import alone takes seconds."""
    script = (
        "import sys\n"
        "from apps.car_detection.cli import main\n"
        "try:\n"
        "    main(['x.mp4', '--batch', '-3'])\n"
        "except SystemExit as end:\n"
        "    print(end.code, 'keras' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.stdout.split() == ["2", "False", "False"], done.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.jpg", "missing.jpg: no such file"),
        (
            lambda tmp: (
                (tmp / "broken.jpg").write_bytes(b"\xff\xd8 no jpeg") and tmp / "broken.jpg"
            ),
            "broken.jpg: not a readable image",
        ),
    ],
    ids=["missing", "corrupt"],
)
def test_a_bad_image_fails_before_the_model_loads(monkeypatch, tmp_path: Path, make, message):
    monkeypatch.setattr(detector, "load_detector", lambda **_: pytest.fail("model loaded"))
    monkeypatch.chdir(tmp_path)
    image = make(tmp_path)
    code, _, stderr = run([str(image)])
    assert code == 2 and stderr.count("\n") == 1 and message in stderr, stderr


def test_an_output_in_a_folder_that_is_a_file_says_so(stand_in, clip: Path, tmp_path: Path):
    (tmp_path / "text.jpg").write_text("not a folder")
    code, _, stderr = run([str(clip), "-o", str(tmp_path / "text.jpg" / "out.mp4")])
    assert code == 2 and stderr.count("\n") == 1
    assert "text.jpg is a file, not a folder" in stderr, stderr
    assert stand_in.calls == 0


def test_earlier_results_are_kept_unless_exist_ok(stand_in, clip: Path, tmp_path: Path):
    out, table = tmp_path / "out.avi", tmp_path / "cars.csv"
    args = [str(clip), "-o", str(out), "--csv", str(table)]
    assert run(args)[0] == 0
    table.write_text("earlier result")
    code, _, stderr = run(args)
    assert code == 2 and stderr.count("\n") == 1
    assert "out.avi: already exists" in stderr and "--exist-ok" in stderr
    assert table.read_text() == "earlier result"
    code, _, stderr = run([*args, "--exist-ok"])
    assert code == 0, stderr
    assert table.read_text().startswith("frame,time")


def test_an_interrupted_run_names_no_output_it_did_not_write(monkeypatch, clip, tmp_path: Path):
    """Ctrl-C before the first frame: no annotated video exists, so the summary names none."""
    monkeypatch.setattr(
        detector,
        "load_detector",
        lambda **_: SquareDetector(fail_on_call=1, error=KeyboardInterrupt),
    )
    out, lines = tmp_path / "e.mp4", tmp_path / "cars.jsonl"
    code, stdout, _ = run([str(clip), "-o", str(out), "--detections", str(lines), "--json"])
    summary = json.loads(stdout)
    assert code == 130 and summary["interrupted"]
    assert not out.exists() and "annotated" not in summary["outputs"]
    assert summary["outputs"] == {"detections": str(lines)} and lines.exists()


@pytest.mark.parametrize("source_kind", ["video", "folder"])
def test_an_earlier_result_kept_by_an_exist_ok_run_is_not_named_as_its_output(
    monkeypatch, clip: Path, tmp_path: Path, source_kind: str
):
    """``--exist-ok`` and Ctrl-C before the first frame: the earlier result stays in place
    (never lose data), and the summary does not pass it off as this run's."""
    monkeypatch.setattr(
        detector,
        "load_detector",
        lambda **_: SquareDetector(fail_on_call=1, error=KeyboardInterrupt),
    )
    if source_kind == "video":
        source, out = clip, tmp_path / "e.avi"
        out.write_bytes(b"earlier result")
        earlier = out
    else:
        source, out = tmp_path / "photos", tmp_path / "drawn"
        source.mkdir()
        write_image(source / "a.png", frame_with_square(0))
        out.mkdir()
        earlier = out / "a.png"
        earlier.write_bytes(b"earlier result")
    code, stdout, _ = run([str(source), "-o", str(out), "--exist-ok", "--json"])
    summary = json.loads(stdout)
    assert code == 130 and summary["interrupted"]
    assert earlier.read_bytes() == b"earlier result"
    assert summary["outputs"] == {}
    code, stdout, _ = run([str(source), "-o", str(out), "--exist-ok"])
    assert code == 130 and str(out) not in stdout


def test_detections_to_stdout_send_the_summary_to_stderr(stand_in, clip: Path, tmp_path: Path):
    code, stdout, stderr = run([str(clip), "--no-draw", "--detections", "-"])
    assert code == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert len(records) == 6
    assert "6 frames" in stderr and "car: 6 detections" in stderr


def test_a_folder_summary_names_the_image_not_a_frame_number(stand_in, tmp_path: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "a.png", frame_with_square(0))
    write_image(folder / "b.png", frame_with_square(3))
    code, stdout, stderr = run([str(folder), "-o", str(tmp_path / "drawn")])
    assert code == 0, stderr
    assert "at most 1 at once (a.png)" in stdout and "frame" not in stdout.split("\n", 1)[1]
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["a.png", "b.png"]


def test_an_mp4_says_when_browsers_cannot_play_it(stand_in, clip: Path, tmp_path: Path):
    """H.264 where this OpenCV build encodes it; else MPEG-4 Part 2 and a warning saying so."""
    out = tmp_path / "out.mp4"
    code, _, stderr = run([str(clip), "-o", str(out)])
    assert code == 0 and out.exists(), stderr
    codec = int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
    if codec.lower() in (b"avc1", b"h264"):
        assert "warning" not in stderr
    else:
        assert codec in (b"FMP4", b"mp4v")  # how FFmpeg reports MPEG-4 Part 2
        assert stderr.count("\n") == 1 and "no H.264 encoder" in stderr and "out.mp4" in stderr


def test_a_truncated_video_gets_a_warning(stand_in, data_dir: Path, tmp_path: Path):
    """The first 100 KB of a 221-frame file decode to a few frames; the file said 221."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((data_dir / "cars/video/udacity_solidWhiteRight.mp4").read_bytes()[:100_000])
    code, stdout, stderr = run([str(cut), "--no-draw", "--json"])
    summary = json.loads(stdout)
    assert code == 0 and summary["frames"] < 221
    assert f"decoded {summary['frames']} of the 221 frames" in stderr
    assert summary["warnings"] and "truncated" in summary["warnings"][0]
    complete = tmp_path / "complete.avi"
    with VideoWriter(complete, 10.0, 96, 64) as writer:
        for index in range(30):
            writer.write(frame_with_square(index))
    code, stdout, stderr = run([str(complete), "--no-draw", "--json"])
    assert code == 0 and json.loads(stdout)["warnings"] == [] and stderr == ""

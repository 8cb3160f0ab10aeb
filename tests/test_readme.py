"""The README's Python snippets run as shown, so the documented API cannot drift.

Every ```python block of README.md runs, in order, in one namespace (a later block may use
what an earlier one made), in a temporary folder. A block that needs real weights or data
is preceded by a marker naming the files it opens, which are linked in from ../shared:

    <!-- readme-test: needs ../shared (test.jpg, dashcam.mp4) -->

Those blocks need the ``offline_weights`` fixture, so without ../shared the test skips at the
first of them (after running the blocks before it). A new file name goes in ``STAGED``.
A block marked ``<!-- tested by tests/....py -->`` is run by that test instead (here it is
only compiled).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

# File names the snippets use -> where the real file is in ../shared/data.
STAGED = {
    "test.jpg": "cars/driveai/images/test.jpg",
    "dashcam.mp4": "cars/video/udacity_test_video.mp4",
}

_BLOCK = re.compile(
    r"(?:<!-- readme-test: needs \.\./shared \((?P<files>[^)]*)\) -->\n)?"
    r"(?P<elsewhere><!-- tested by [^>]*-->\n)?"
    r"```python\n(?P<code>.*?)```",
    re.DOTALL,
)


@dataclass
class Snippet:
    line: int
    code: str
    files: list[str]
    tested_elsewhere: bool  # "<!-- tested by tests/...py -->": that test runs it


def readme_snippets() -> list[Snippet]:
    text = README.read_text("utf-8")
    return [
        Snippet(
            text.count("\n", 0, match.start("code")) + 1,
            match["code"],
            [name.strip() for name in (match["files"] or "").split(",") if name.strip()],
            match["elsewhere"] is not None,
        )
        for match in _BLOCK.finditer(text)
    ]


def test_the_readme_shows_python_and_every_snippet_compiles():
    snippets = readme_snippets()
    assert snippets, "the README should show the Python API"
    for snippet in snippets:
        compile(snippet.code, f"README.md:{snippet.line}", "exec")
        assert set(snippet.files) <= set(STAGED), f"README.md:{snippet.line}: add to STAGED"


def test_the_readme_snippets_run(request, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for snippet in readme_snippets():
        if snippet.tested_elsewhere:
            continue
        if snippet.files:
            request.getfixturevalue("offline_weights")  # skips here without ../shared
            data_dir = request.getfixturevalue("data_dir")
            for name in snippet.files:
                if not (tmp_path / name).exists():
                    (tmp_path / name).symlink_to(data_dir / STAGED[name])
        exec(compile(snippet.code, f"README.md:{snippet.line}", "exec"), namespace)
    assert (tmp_path / "cars.csv").read_text().startswith("frame,time,image,label")

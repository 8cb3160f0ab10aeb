"""Darknet ``.cfg`` files read as an ordered list of sections.

A Darknet network definition is an INI-like text: ``[section]`` headers, each followed by
``key=value`` lines; ``#`` and ``;`` start comments, and whitespace is insignificant (Darknet
strips it, so ``anchors = 10,14,  23,27`` means ``10,14,23,27``). Order matters: layers refer to
each other by position (``route layers=-1,8``), so the file is kept as a list, and every section
remembers the line it starts on so that an error can point the user at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import InputError

# Darknet accepts these short names for the same layers (parser.c, string_to_layer_type).
SECTION_ALIASES = {
    "network": "net",
    "conv": "convolutional",
    "max": "maxpool",
    "avg": "avgpool",
    "conn": "connected",
    "soft": "softmax",
    "normalization": "lrn",
}


@dataclass
class Section:
    """One ``[type]`` block of a cfg file with its raw ``key=value`` options.

    ``index`` is the Darknet layer index (0 for the first section after ``[net]``, -1 for
    ``[net]`` itself), the number that ``route``/``shortcut`` refer to.
    """

    type: str
    line: int
    index: int
    options: dict[str, str] = field(default_factory=dict)
    source: str = "<cfg>"

    def where(self) -> str:
        """``file:line [type]`` — the prefix of every error about this section."""
        return f"{self.source}:{self.line} [{self.type}]"

    def _text(self, key: str, required: bool) -> str | None:
        text = self.options.get(key)
        if text is None and required:
            raise InputError(f"{self.where()}: missing required option '{key}'")
        return text

    def _convert(self, key: str, text: str, kind: type) -> int | float:
        try:
            return kind(text)
        except ValueError:
            raise InputError(f"{self.where()}: {key}={text} is not a number") from None

    def get_int(self, key: str, default: int | None = None) -> int:
        """An integer option; ``default`` when absent, an error when absent without default."""
        text = self._text(key, required=default is None)
        return default if text is None else int(self._convert(key, text, int))

    def get_float(self, key: str, default: float | None = None) -> float:
        """A float option; ``default`` when absent, an error when absent without default."""
        text = self._text(key, required=default is None)
        return default if text is None else float(self._convert(key, text, float))

    def get_str(self, key: str, default: str) -> str:
        """A text option such as ``activation``."""
        return self.options.get(key, default)

    def get_ints(self, key: str, default: list[int] | None = None) -> list[int]:
        """A comma-separated integer list such as ``layers=-1,8`` or ``mask=0,1,2``."""
        text = self._text(key, required=default is None)
        if text is None:
            return list(default or [])
        return [int(self._convert(key, item, int)) for item in text.split(",") if item]

    def get_floats(self, key: str, default: list[float] | None = None) -> list[float]:
        """A comma-separated float list such as ``anchors=10,14,23,27``."""
        text = self._text(key, required=default is None)
        if text is None:
            return list(default or [])
        return [float(self._convert(key, item, float)) for item in text.split(",") if item]


def parse_cfg(text: str, source: str = "<cfg>") -> list[Section]:
    """Parse cfg text into sections, ``[net]`` first.

    Raises ``InputError`` naming ``source`` and the line for anything that is not a section
    header, a comment or ``key=value``, and when the file does not start with ``[net]``.
    """
    sections: list[Section] = []
    text = text.removeprefix("\ufeff")  # a byte-order mark left by Windows editors
    for line_number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise InputError(f"{source}:{line_number}: malformed header {raw.strip()!r}")
            name = line[1:-1].lower()
            name = SECTION_ALIASES.get(name, name)
            index = -1 if name == "net" else sum(s.index >= 0 for s in sections)
            sections.append(Section(name, line_number, index, {}, source))
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise InputError(f"{source}:{line_number}: expected key=value, got {raw.strip()!r}")
        if not sections:
            raise InputError(f"{source}:{line_number}: option {key!r} before any [section]")
        if key in sections[-1].options:
            # Darknet reads the first of two values and OpenCV the last: refuse to guess.
            raise InputError(
                f"{source}:{line_number}: {key!r} given twice in {sections[-1].where()}"
            )
        sections[-1].options[key] = value
    if not sections or sections[0].index != -1:
        raise InputError(f"{source}: a Darknet cfg must start with a [net] section")
    if any(s.index == -1 for s in sections[1:]):
        raise InputError(f"{source}: more than one [net] section")
    return sections


def read_cfg(path: Path | str) -> list[Section]:
    """Read and parse a cfg file; a missing or undecodable file is an ``InputError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise InputError(f"{path}: cfg file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a Darknet cfg (not text)") from None
    return parse_cfg(text, str(path))


def format_cfg(sections: list[Section]) -> str:
    """Write sections back as cfg text (comments are not kept).

    Lets a caller change options — a smaller input size, a head's ``thresh`` — and hand the
    result to another Darknet reader such as OpenCV's.
    """
    blocks = []
    for section in sections:
        lines = [f"[{section.type}]", *(f"{key}={value}" for key, value in section.options.items())]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"

"""The README's side-by-side of stylize's two methods: content | optimisation | trained network.

Each ``--row CONTENT STYLE MODEL`` paints CONTENT at ``--size`` px (longest side) twice: by
``stylize``'s optimisation against STYLE (SqueezeNet, ``--iterations`` L-BFGS iterations,
its defaults otherwise) and in one pass through MODEL, a ``.keras`` style from
``stylize-train``. The first column shows the content with a thumbnail of the style in its
corner; each picture is labelled with how it was made and how long it took. The PNG is
reduced to 256 colours so that it stays small enough to keep in the repository.
``--work DIR`` keeps the optimisation results (minutes each on a CPU) for the next run.

    python docs/style_figure.py \\
        --row ../shared/data/style/neural_style_inputs/tubingen.jpg \\
              ../shared/data/style/neural_style_inputs/starry_night.jpg starry.keras \\
        --row ../shared/data/style/dlai_nst/images/louvre.jpg \\
              ../shared/data/style/neural_style_inputs/starry_night.jpg starry.keras \\
        --row ../shared/data/cars/driveai/images/0100.jpg \\
              ../shared/data/style/neural_style_inputs/the_scream.jpg scream.keras \\
        --size 256 --iterations 100 -o docs/style_transfer.png
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from apps.style_transfer.feedforward import load_painter
from apps.style_transfer.settings import TransferSettings
from apps.style_transfer.transfer import stylize
from shared.images import read_image

LABEL_HEIGHT = 18
GAP = 4


def fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` with its longest side at ``side`` px."""
    factor = side / max(rgb.shape[:2])
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def labelled(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` under a white strip holding ``text``."""
    strip = np.full((LABEL_HEIGHT, rgb.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, rgb])


def optimised(content: Path, style: Path, side: int, iterations: int, work: Path):
    """``stylize``'s result (RGB) and its seconds, from ``work`` when an earlier run left it."""
    image = work / f"{content.stem}_{style.stem}_{side}px_{iterations}.png"
    facts = image.with_suffix(".json")
    if not (image.is_file() and facts.is_file()):
        settings = TransferSettings(size=side, iterations=iterations)
        result = stylize(content, [style], image, settings, model="squeezenet", exist_ok=True)
        facts.write_text(json.dumps({"seconds": result.seconds}))
    return read_image(image), json.loads(facts.read_text())["seconds"]


def row(
    content: Path, style: Path, model: Path, side: int, iterations: int, work: Path
) -> np.ndarray:
    photo = fit(read_image(content), side)
    style_rgb = read_image(style)
    painted_by_optimisation, seconds = optimised(content, style, side, iterations, work)
    paint = load_painter(model)
    paint(photo[np.newaxis])  # compile and allocate before timing
    started = time.perf_counter()
    painted = paint(photo[np.newaxis])[0][0]
    milliseconds = 1000 * (time.perf_counter() - started)

    shown = photo.copy()
    thumbnail = fit(style_rgb, side // 4)
    shown[-thumbnail.shape[0] :, -thumbnail.shape[1] :] = thumbnail
    height, width = photo.shape[:2]
    painted_by_optimisation = cv2.resize(painted_by_optimisation, (width, height))
    cells = [
        labelled(shown, f"{content.stem} + {style.stem}"),
        labelled(
            painted_by_optimisation,
            f"stylize: {iterations} iterations, {seconds:.0f} s",
        ),
        labelled(painted, f"stylize --model: one pass, {milliseconds:.0f} ms"),
    ]
    gap = np.full((height + LABEL_HEIGHT, GAP, 3), 255, np.uint8)
    return np.concatenate([cells[0], gap, cells[1], gap, cells[2]], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--row",
        nargs=3,
        action="append",
        required=True,
        type=Path,
        metavar=("CONTENT", "STYLE", "MODEL"),
    )
    parser.add_argument("--size", type=int, default=256, help="longest side of each picture")
    parser.add_argument("--iterations", type=int, default=300, help="stylize's iterations")
    parser.add_argument("--work", type=Path, help="keep stylize's results here for re-runs")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/style_transfer.png"))
    args = parser.parse_args()
    if args.work is None:
        args.work = Path(tempfile.mkdtemp())
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [row(*paths, args.size, args.iterations, args.work) for paths in args.row]
    width = max(r.shape[1] for r in rows)
    padded = [
        np.pad(r, ((0, GAP), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows
    ]
    picture = Image.fromarray(np.concatenate(padded)[:-GAP])
    picture.quantize(256, method=Image.Quantize.MEDIANCUT).save(args.output, optimize=True)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()

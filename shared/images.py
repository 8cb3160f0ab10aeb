"""Reading any real image into RGB uint8, writing images atomically, drawing boxes.

Photos from phones carry their rotation in EXIF; scanners and microscopes write
16-bit PNG/TIFF; screenshots and logos are RGBA; face datasets are grey PGM. The
networks want one thing: an HxWx3 RGB uint8 array that looks as the user sees
the picture. ``read_image`` is the single place where that conversion happens.

Decoding is done by OpenCV on the file's bytes with ``IMREAD_UNCHANGED`` (full
bit depth, alpha kept, truncated JPEGs rejected, which ``cv2.imread`` does not
do: it returns a half-grey image with only a warning). Because that flag also
ignores EXIF, the orientation tag is read with Pillow (header only) and applied
here, with the same result as a viewer.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from shared.errors import InputError
from shared.files import atomic_output, require_parent_folder

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
    | {".pgm", ".ppm", ".pbm", ".pnm"}
)

_EXIF_ORIENTATION_TAG = 0x0112


def _exif_orientation(data: bytes) -> int:
    """EXIF orientation 1..8 of an encoded image, 1 when absent or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        # Formats Pillow cannot parse (PFM, EXR, huge scans) carry no EXIF we could use.
        return 1
    return orientation if orientation in range(1, 9) else 1


def apply_exif_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into the upright picture for EXIF orientation 1..8.

    The eight cases are the dihedral group of the rectangle: 2 mirrors, 3 turns
    180°, 4 flips, 6 needs a clockwise quarter turn, 8 an anticlockwise one, 5 and
    7 are the two diagonal mirrors.
    """
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return np.swapaxes(pixels, 0, 1)
    if orientation == 6:
        return np.rot90(pixels, k=-1)
    if orientation == 7:
        return np.swapaxes(pixels[::-1, ::-1], 0, 1)
    if orientation == 8:
        return np.rot90(pixels, k=1)
    return pixels


def _to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """Any supported depth to float32 in [0, 1], scaling by the type's full range."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    return np.clip(pixels.astype(np.float32), 0.0, 1.0)  # float TIFF/EXR/PFM: 0..1 by convention


def _to_rgb_uint8(pixels: np.ndarray) -> np.ndarray:
    """OpenCV's decoded array (grey, grey+alpha, BGR, BGRA; 8/16-bit or float) to RGB uint8.

    Transparent pixels are composited on white, the way viewers show them on a
    page, so a logo on a transparent background does not turn into a black block.
    16-bit values are scaled by 255/65535 with rounding (not cut to the low byte).
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    if pixels.dtype == np.uint8 and channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if pixels.dtype == np.uint8 and channels == 3:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2RGB)
    unit = _to_unit_float(pixels)
    if channels in (2, 4):
        alpha = unit[:, :, -1:]
        unit = unit[:, :, :-1] * alpha + (1.0 - alpha)
    if unit.shape[2] == 1:
        unit = np.repeat(unit, 3, axis=2)
    return np.rint(unit[:, :, ::-1] * 255.0).astype(np.uint8)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from err
    if not data:
        raise InputError(f"{path}: empty file, not an image")
    return data


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an upright HxWx3 RGB uint8 array.

    Handles EXIF orientation, grey, grey+alpha, RGBA (composited on white),
    16-bit and float images, palette images and PGM/PPM. Raises ``InputError``
    with one line naming the file when it is missing, a folder, empty, truncated,
    corrupt or not an image.
    """
    path = Path(path)
    data = _read_bytes(path)
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise InputError(f"{path}: not a readable image (corrupt, truncated or not an image)")
    if pixels.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise InputError(f"{path}: unsupported pixel type {pixels.dtype}")
    upright = apply_exif_orientation(pixels, _exif_orientation(data))
    return _to_rgb_uint8(upright)


def write_image(path: str | os.PathLike[str], rgb: np.ndarray, quality: int = 95) -> None:
    """Write an RGB (or grey) uint8 image; the format follows the suffix.

    The image is encoded in memory and written through ``atomic_output``, so the
    file under ``path`` is either the complete new image or whatever was there
    before. Whether an existing file may be replaced is the caller's decision.
    """
    path = Path(path)
    if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise ValueError(f"expected HxWx3 or HxW uint8, got {rgb.shape} {rgb.dtype}")
    pixels = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    try:
        # The quality flag means something only to JPEG; other encoders warn about it.
        is_jpeg = path.suffix.lower() in {".jpg", ".jpeg"}
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if is_jpeg else []
        ok, encoded = cv2.imencode(path.suffix, pixels, params)
    except cv2.error:
        ok = False
    if not ok:
        raise InputError(f"{path}: cannot write an image with suffix '{path.suffix}'")
    with atomic_output(path) as temp:
        temp.write_bytes(encoded.tobytes())


class ImageOutput:
    """Images written to one file, or into a folder under their input names (sub-folders kept).

    What detect-cars and stylize write for images and folders. The folder is made with its
    first image, so a run that fails or is interrupted before any leaves nothing behind; each
    image is complete when written (``write_image``), so there is nothing to finalise.
    """

    def __init__(self, path: Path, folder: bool) -> None:
        require_parent_folder(path)
        self.path, self.folder = path, folder
        self.images_written = 0

    def write(self, rgb: np.ndarray, name: str | None, index: int) -> None:
        """``name``: the input image's path within its folder (None: numbered by ``index``)."""
        target = self.path
        if self.folder:
            target = self.path / (name or f"{index:06d}.jpg")
            target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, rgb)
        self.images_written += 1


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (by suffix, any case), sorted by path.

    Hidden files are skipped: macOS leaves ``._photo.jpg`` resource forks beside
    copied photos, which have an image suffix but are not images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        path
        for path in candidates
        if path.suffix.lower() in IMAGE_SUFFIXES
        and not path.name.startswith(".")
        and path.is_file()
    )


def class_colour(key: int | str) -> tuple[int, int, int]:
    """A saturated RGB colour that depends only on ``key`` (a class id or name).

    Successive ids step round the hue circle by the golden ratio, so classes next to each
    other (car 2, motorbike 3) get clearly different colours; a name is reduced to a number
    with CRC-32, which, unlike ``hash``, is the same in every process.
    """
    number = key if isinstance(key, int) else zlib.crc32(key.encode())
    hue = round((number * _GOLDEN_RATIO_CONJUGATE) % 1.0 * 180) % 180
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


_GOLDEN_RATIO_CONJUGATE = 0.618033988749895

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_label(
    box: Rect, size: tuple[int, int], image: tuple[int, int], taken: list[Rect]
) -> Rect:
    """Where a label of ``size`` (w, h) goes: above its box, else just inside its top, else
    below it, else just inside its bottom; the first spot inside the image that overlaps no
    label in ``taken``, or above the box when every spot is taken."""
    x1, y1, _, y2 = box
    text_w, text_h = size
    width, height = image
    left = min(max(x1, 0), max(width - text_w, 0))
    spots = []
    for top in (y1 - text_h, y1, y2, y2 - text_h):
        top = min(max(top, 0), max(height - text_h, 0))
        spots.append((left, top, left + text_w, top + text_h))
    return next((spot for spot in spots if not any(_overlaps(spot, t) for t in taken)), spots[0])


def _strokes(canvas: np.ndarray) -> tuple[int, float, int]:
    """(line thickness, font scale, text thickness) for drawing on ``canvas``: they grow with
    the image, so boxes stay visible on a 1280x720 frame and do not swamp a 96x96 face chip.

    Text is drawn half as thick as lines: anti-aliased Hershey text costs OpenCV ten times
    more at thickness 2 than at 1 (0.16 against 0.016 ms a label, measured), which on a
    960x540 video with eight labels a frame was a twentieth of the whole loop.
    """
    short_side = min(canvas.shape[:2])
    thickness = max(1, round(short_side / 300))
    return thickness, max(0.3, short_side / 1000), max(1, thickness // 2)


def draw_boxes(
    rgb: np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str] | None = None,
    colour_keys: Sequence[int | str] | None = None,
) -> np.ndarray:
    """A copy of ``rgb`` with ``[x1, y1, x2, y2]`` boxes and their labels drawn.

    Boxes are drawn in the order given, so later ones lie on top: pass the most important
    last (``FrameResult.draw`` passes the best score last). Labels are drawn after every box,
    so no line crosses one, and placed from the last box backwards so that each avoids the
    labels already placed (see ``_place_label``): the best boxes get their labels where they
    belong and nothing paints over them. A box's colour follows its ``colour_keys`` entry
    (e.g. its class id), else its label, so one class keeps one colour whatever its score.
    Line width and font scale follow the image size (``_strokes``).
    """
    canvas = np.ascontiguousarray(rgb.copy())
    height, width = canvas.shape[:2]
    thickness, font_scale, text_thickness = _strokes(canvas)
    corners = np.rint(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)).astype(int).tolist()
    labels = list(labels) if labels is not None else [""] * len(corners)
    keys = list(colour_keys) if colour_keys is not None else labels
    colours = [class_colour(key) for key in keys]
    for (x1, y1, x2, y2), colour in zip(corners, colours, strict=True):
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
    placed: list[tuple[Rect, int, str, int]] = []  # (spot, baseline, text, box index)
    taken: list[Rect] = []
    for index in reversed(range(len(corners))):
        if not labels[index]:
            continue
        (text_w, text_h), baseline = cv2.getTextSize(
            labels[index], cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_thickness
        )
        spot = _place_label(corners[index], (text_w, text_h + baseline), (width, height), taken)
        taken.append(spot)
        placed.append((spot, baseline, labels[index], index))
    for (left, top, right, bottom), baseline, text, index in reversed(placed):
        cv2.rectangle(canvas, (left, top), (right, bottom), colours[index], -1)
        cv2.putText(
            canvas,
            text,
            (left, bottom - baseline),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            text_thickness,
            cv2.LINE_AA,
        )
    return canvas


def track_colour(index: int) -> tuple[int, int, int]:
    """A saturated RGB colour per integer id, neighbours far apart on the hue circle."""
    hue = int(index * 0.618033988749895 * 180) % 180  # golden-ratio steps
    hsv = np.array([[[hue, 255, 255]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_polyline(
    canvas: np.ndarray,
    points: Sequence[Sequence[float]],
    colour: tuple[int, int, int],
    caption: str | None = None,
) -> None:
    """Draw connected ``(x, y)`` points on ``canvas`` in place (a trail, a counting line),
    with an optional caption on a dark band at the first point. Thickness follows the
    image size, as in ``draw_boxes``."""
    height, width = canvas.shape[:2]
    thickness, font_scale, text_thickness = _strokes(canvas)
    vertices = np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
    if len(vertices) > 1:
        cv2.polylines(canvas, [vertices], False, colour, thickness, cv2.LINE_AA)
    if caption and len(vertices):
        (text_w, text_h), baseline = cv2.getTextSize(
            caption, cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_thickness
        )
        x = int(np.clip(vertices[0, 0], 0, max(0, width - text_w)))
        y = int(np.clip(vertices[0, 1] - baseline - 2, text_h, height - baseline))
        cv2.rectangle(canvas, (x, y - text_h), (x + text_w, y + baseline), (0, 0, 0), -1)
        cv2.putText(
            canvas,
            caption,
            (x, y),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            colour,
            text_thickness,
            cv2.LINE_AA,
        )

"""Labelled detection datasets in the two common formats, and how their classes meet a model's.

- **YOLO txt** (Darknet, ultralytics, Roboflow exports): ``images/`` and ``labels/`` side by side,
  one ``<stem>.txt`` per image, a line per object ``class cx cy w h`` normalised to the image. An
  image without a label file holds no object (the YOLO convention). Class names come from a
  ``data.yaml`` (``names: [...]`` or ``{0: name}``) in the folder or up to two folders above it
  (a split such as ``valid/`` sits under the dataset root), else from ``classes.txt`` or
  ``obj.names``; otherwise the classes are called ``0``, ``1``, ...
- **Pascal VOC XML**: ``Annotations/*.xml`` with ``JPEGImages/`` (the VOC layout; a split is
  ``ImageSets/Main/<split>.txt``), or XML files beside their images (labelImg). Objects marked
  ``difficult`` are ignored, as VOC's own evaluation does.

``open_dataset(path, split)`` reads every label at once, so a malformed line or a missing folder is
reported (``InputError`` naming the file and line) before any model loads. Boxes are kept
normalised ``[x1, y1, x2, y2]`` (fractions of the image) so that training can resize freely;
``Sample.pixel_boxes`` gives them in an image's pixels.

``resolve_class_map`` says which model class stands for each dataset class (or that it is
ignored): by equal name (case-insensitive, ``motorcycle`` = ``motorbike``) unless the user's
``--class-map`` says otherwise.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import InputError
from shared.images import list_images

IGNORE = "ignore"
# Names that mean the same class in common datasets (COCO's Darknet names on the right).
SYNONYMS = {"motorcycle": "motorbike", "airplane": "aeroplane", "tv": "tvmonitor"}
YAML_NAMES = ("data.yaml", "dataset.yaml")
NAME_FILES = ("classes.txt", "obj.names")


@dataclass(frozen=True)
class Sample:
    """One image and its objects: normalised xyxy ``boxes``, dataset ``classes``, ``ignore``.

    ``ignore`` marks objects that count neither for nor against a detector (VOC ``difficult``).
    """

    image: Path
    boxes: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray

    def pixel_boxes(self, width: int, height: int) -> np.ndarray:
        return self.boxes * np.array([width, height, width, height], dtype=np.float64)


@dataclass(frozen=True)
class Dataset:
    """A split of a labelled dataset: where it is, its format, class names and samples."""

    root: Path
    format: str
    names: list[str]
    samples: list[Sample]

    def __len__(self) -> int:
        return len(self.samples)

    def boxes_per_class(self) -> np.ndarray:
        counts = np.zeros(len(self.names), dtype=np.int64)
        for sample in self.samples:
            np.add.at(counts, sample.classes[~sample.ignore], 1)
        return counts


def _no_boxes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)


# --- YOLO txt -------------------------------------------------------------------------------


def read_yolo_labels(path: Path, class_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One label file as normalised xyxy boxes and class ids (no file: no objects).

    Raises ``InputError`` naming the file and line for a line that is not ``class cx cy w h``
    with numbers, or a class id outside ``0 .. class_count - 1``.
    """
    if not path.is_file():
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text label file") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise InputError(f"{path}:{number}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            values = [float(value) for value in fields]
        except ValueError:
            raise InputError(f"{path}:{number}: not a YOLO label line: {line.strip()!r}") from None
        if not values[0].is_integer() or values[0] < 0:
            raise InputError(f"{path}:{number}: class {fields[0]!r} is not a class number")
        if class_count is not None and values[0] >= class_count:
            raise InputError(
                f"{path}:{number}: class {int(values[0])} but the dataset names "
                f"{class_count} classes (0..{class_count - 1})"
            )
        rows.append(values)
    labels = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    centre, size = labels[:, 1:3], labels[:, 3:5]
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=1), 0.0, 1.0)
    return boxes, labels[:, 0].astype(np.int64)


def _yaml_names(path: Path) -> list[str]:
    import yaml

    try:
        content = yaml.safe_load(path.read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable YAML file ({error.__class__.__name__})") from None
    names = content.get("names") if isinstance(content, dict) else None
    if isinstance(names, dict):
        try:
            names = [names[key] for key in sorted(names, key=int)]
        except (TypeError, ValueError):
            raise InputError(f"{path}: 'names' keys must be class numbers") from None
    if not isinstance(names, list) or not names:
        raise InputError(f"{path}: no 'names' list of classes")
    return [str(name) for name in names]


def _find_yolo_names(folder: Path) -> list[str] | None:
    for place in (folder, folder.parent, folder.parent.parent):
        for name in YAML_NAMES:
            if (place / name).is_file():
                return _yaml_names(place / name)
        for name in NAME_FILES:
            if (place / name).is_file():
                lines = (place / name).read_text("utf-8").splitlines()
                return [line.strip() for line in lines if line.strip()] or None
    return None


def _open_yolo(folder: Path) -> Dataset:
    images = list_images(folder / "images")
    if not images:
        raise InputError(f"{folder / 'images'}: no images")
    labels = folder / "labels"
    if not labels.is_dir() or not any(labels.glob("*.txt")):
        raise InputError(f"{labels}: no label files (.txt, one per image)")
    names = _find_yolo_names(folder)
    samples = []
    for image in images:
        boxes, classes = read_yolo_labels(
            labels / f"{image.stem}.txt", len(names) if names else None
        )
        samples.append(Sample(image, boxes, classes, np.zeros(len(classes), dtype=bool)))
    if names is None:
        count = max((int(s.classes.max(initial=-1)) for s in samples), default=-1) + 1
        names = [str(number) for number in range(count)]
    return Dataset(folder, "yolo", names, samples)


# --- Pascal VOC XML -------------------------------------------------------------------------


def _text(element: ElementTree.Element, tag: str, path: Path) -> str:
    found = element.find(tag)
    if found is None or found.text is None or not found.text.strip():
        raise InputError(f"{path}: an <{element.tag}> without <{tag}>")
    return found.text.strip()


def _number(element: ElementTree.Element, tag: str, path: Path) -> float:
    value = _text(element, tag, path)
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{path}: <{tag}> is {value!r}, not a number") from None


def read_voc_annotation(path: Path) -> tuple[str, int, int, list[tuple[str, list[float], bool]]]:
    """(image file name, width, height, [(class name, pixel xyxy, difficult)]) of one XML file.

    A missing or zero ``<size>`` gives width and height 0: the caller reads them from the image.
    """
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise InputError(f"{path}: not a Pascal VOC XML file ({error})") from None
    if root.tag != "annotation":
        raise InputError(f"{path}: not a Pascal VOC annotation (root <{root.tag}>)")
    filename = root.findtext("filename", default="").strip()
    size = root.find("size")
    width = int(_number(size, "width", path)) if size is not None else 0
    height = int(_number(size, "height", path)) if size is not None else 0
    objects = []
    for item in root.iter("object"):
        box = item.find("bndbox")
        if box is None:
            raise InputError(f"{path}: an <object> without <bndbox>")
        corners = [_number(box, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if corners[2] <= corners[0] or corners[3] <= corners[1]:
            raise InputError(f"{path}: an empty <bndbox> {corners}")
        difficult = item.findtext("difficult", default="0").strip() == "1"
        objects.append((_text(item, "name", path), corners, difficult))
    return filename, width, height, objects


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError):
        raise InputError(f"{path}: cannot read the image's size") from None


def _voc_files(folder: Path, split: str | None) -> tuple[list[Path], Path]:
    """(annotation files, folder to look for images in)."""
    annotations = folder / "Annotations"
    if not annotations.is_dir():
        return sorted(folder.glob("*.xml")), folder
    images = folder / "JPEGImages" if (folder / "JPEGImages").is_dir() else annotations
    if split is None:
        return sorted(annotations.glob("*.xml")), images
    listing = folder / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise InputError(f"{listing}: no such split list")
    stems = [line.split()[0] for line in listing.read_text("utf-8").splitlines() if line.strip()]
    return [annotations / f"{stem}.xml" for stem in stems], images


def _find_image(images: Path, filename: str, stem: str) -> Path | None:
    if filename and (images / filename).is_file():
        return images / filename
    for candidate in sorted(images.glob(f"{stem}.*")):
        if candidate.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
            return candidate
    return None


def _open_voc(folder: Path, split: str | None, names: Sequence[str] | None) -> Dataset:
    files, images = _voc_files(folder, split)
    if not files:
        raise InputError(f"{folder}: no Pascal VOC annotations (.xml)")
    parsed = []
    for path in files:
        if not path.is_file():
            raise InputError(f"{path}: annotation listed in the split but not found")
        filename, width, height, objects = read_voc_annotation(path)
        image = _find_image(images, filename, path.stem)
        if image is None:
            raise InputError(f"{path}: its image {filename or path.stem} is not in {images}")
        if not (width and height):
            width, height = _image_size(image)
        parsed.append((image, width, height, objects))
    names = list(names) if names else sorted({obj[0] for *_, objects in parsed for obj in objects})
    index = {name: number for number, name in enumerate(names)}
    samples = []
    for image, width, height, objects in parsed:
        if not objects:
            samples.append(Sample(image, *_no_boxes()))
            continue
        scale = np.array([width, height, width, height], dtype=np.float64)
        boxes = np.clip(np.array([obj[1] for obj in objects]) / scale, 0.0, 1.0)
        classes = np.array([index[obj[0]] for obj in objects], dtype=np.int64)
        ignore = np.array([obj[2] for obj in objects], dtype=bool)
        samples.append(Sample(image, boxes, classes, ignore))
    return Dataset(folder, "voc", names, samples)


def open_dataset(path: Path | str, split: str | None = None) -> Dataset:
    """A YOLO-txt or Pascal VOC dataset (or one split of it) with every label read.

    ``split`` names a subfolder (YOLO: ``train``, ``valid``, ``test``) or a VOC
    ``ImageSets/Main`` list; without it ``path`` itself is the split.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    is_voc = (root / "Annotations").is_dir() or any(root.glob("*.xml"))
    folder = root
    if split and (root / split).is_dir():
        folder = root / split
    elif split and not is_voc:
        raise InputError(f"{root / split}: no such split folder")
    if (folder / "images").is_dir():
        return _open_yolo(folder)
    if is_voc:
        return _open_voc(root, split, None)
    raise InputError(
        f"{folder}: not a dataset (expected images/ + labels/ for YOLO txt, or Annotations/ "
        "with Pascal VOC XML)"
    )


# --- classes --------------------------------------------------------------------------------


def parse_class_map(specs: Iterable[str], dataset_names: Sequence[str]) -> dict[str, str]:
    """``["Ambulance=ignore,Motorcycle=motorbike", ...]`` -> ``{"Ambulance": "ignore", ...}``.

    Each left side must be one of ``dataset_names`` (checked here, before any model loads).
    """
    mapping: dict[str, str] = {}
    for spec in specs:
        for item in spec.split(","):
            if not item.strip():
                continue
            source, equals, target = item.partition("=")
            if not equals or not source.strip() or not target.strip():
                raise InputError(
                    f"--class-map: {item.strip()!r} is not DATASET_CLASS=MODEL_CLASS (or =ignore)"
                )
            mapping[source.strip()] = target.strip()
    _check_dataset_classes(mapping, dataset_names)
    return mapping


def _check_dataset_classes(mapping: dict[str, str], dataset_names: Sequence[str]) -> None:
    known = {class_key(name) for name in dataset_names}
    for source in mapping:
        if class_key(source) not in known:
            raise InputError(
                f"--class-map: {source!r} is not a class of the dataset "
                f"({', '.join(dataset_names)})"
            )


def class_key(name: str) -> str:
    """A class name as compared: case-insensitive, synonyms folded (motorcycle = motorbike)."""
    name = name.strip().lower()
    return SYNONYMS.get(name, name)


def resolve_class_map(
    dataset_names: Sequence[str], model_names: Sequence[str], overrides: dict[str, str]
) -> list[int | None]:
    """For each dataset class, the model class id that stands for it (None: ignored).

    A class the user does not map keeps the model class of the same name. Errors name the
    unknown class, and for a dataset class the model cannot name, how to map it.
    """
    by_name = {class_key(name): number for number, name in enumerate(model_names)}
    _check_dataset_classes(overrides, dataset_names)
    for target in overrides.values():
        if target.lower() != IGNORE and class_key(target) not in by_name:
            raise InputError(
                f"--class-map: {target!r} is not a class of the model "
                f"(e.g. {', '.join(model_names[:8])}) nor 'ignore'"
            )
    chosen = {class_key(source): target for source, target in overrides.items()}
    resolved: list[int | None] = []
    unmatched = []
    for name in dataset_names:
        target = chosen.get(class_key(name), name)
        if target.lower() == IGNORE:
            resolved.append(None)
        elif class_key(target) in by_name:
            resolved.append(by_name[class_key(target)])
        else:
            unmatched.append(name)
    if unmatched:
        hint = ",".join(f"{name}=ignore" for name in unmatched)
        raise InputError(
            f"the model has no class named {', '.join(map(repr, unmatched))}; map each with "
            f"--class-map (e.g. --class-map {hint!r}, or =MODEL_CLASS)"
        )
    return resolved

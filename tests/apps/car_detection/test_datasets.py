"""Reading YOLO-txt and Pascal VOC datasets, and mapping their classes to a model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apps.car_detection.datasets import (
    open_dataset,
    parse_class_map,
    read_yolo_labels,
    resolve_class_map,
)
from shared.errors import InputError
from shared.images import write_image

COCO_LIKE = ["person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck"]


def write_yolo(folder: Path, labels: dict[str, str], names: list[str] | None = None) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for stem, text in labels.items():
        write_image(folder / "images" / f"{stem}.jpg", np.zeros((60, 80, 3), np.uint8))
        if text is not None:
            (folder / "labels" / f"{stem}.txt").write_text(text)
    if names is not None:
        (folder.parent / "data.yaml").write_text(f"nc: {len(names)}\nnames: {names}\n")
    return folder


VOC_XML = """<annotation><filename>{name}.jpg</filename>
<size><width>80</width><height>60</height><depth>3</depth></size>
<object><name>car</name><difficult>0</difficult>
<bndbox><xmin>8</xmin><ymin>6</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object>
<object><name>bus</name><difficult>1</difficult>
<bndbox><xmin>40</xmin><ymin>30</ymin><xmax>80</xmax><ymax>60</ymax></bndbox></object>
</annotation>"""


def test_yolo_labels_become_normalised_corner_boxes(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_text("2 0.5 0.25 0.2 0.5\n\n0 0.1 0.9 0.2 0.2")
    boxes, classes = read_yolo_labels(path)
    np.testing.assert_allclose(boxes, [[0.4, 0.0, 0.6, 0.5], [0.0, 0.8, 0.2, 1.0]])
    assert classes.tolist() == [2, 0]
    assert read_yolo_labels(tmp_path / "none.txt")[0].shape == (0, 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2 0.5 0.25", r"a.txt:1: expected 'class cx cy w h'"),
        ("car 0.5 0.5 0.1 0.1", r"a.txt:1: not a YOLO label line"),
        ("1.5 0.5 0.5 0.1 0.1", r"a.txt:1: class '1.5' is not a class number"),
        ("7 0.5 0.5 0.1 0.1", r"a.txt:1: class 7 but the dataset names 5 classes"),
    ],
)
def test_malformed_yolo_lines_name_the_file_and_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "a.txt"
    path.write_text(line)
    with pytest.raises(InputError, match=message):
        read_yolo_labels(path, class_count=5)


def test_a_yolo_split_takes_its_names_from_the_root_data_yaml(tmp_path: Path):
    write_yolo(tmp_path / "valid", {"a": "1 0.5 0.5 0.5 0.5\n", "b": None}, ["Ambulance", "Car"])
    dataset = open_dataset(tmp_path, "valid")
    assert dataset.format == "yolo" and dataset.names == ["Ambulance", "Car"]
    assert [s.image.name for s in dataset.samples] == ["a.jpg", "b.jpg"]
    np.testing.assert_allclose(dataset.samples[0].pixel_boxes(80, 60), [[20, 15, 60, 45]])
    assert len(dataset.samples[1].classes) == 0  # no label file: no objects
    assert dataset.boxes_per_class().tolist() == [0, 1]
    assert open_dataset(tmp_path / "valid").names == ["Ambulance", "Car"]


def test_a_pascal_voc_dataset_ignores_difficult_objects(tmp_path: Path):
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("x1", "x2"):
        (tmp_path / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name))
        write_image(tmp_path / "JPEGImages" / f"{name}.jpg", np.zeros((60, 80, 3), np.uint8))
    (tmp_path / "ImageSets/Main/test.txt").write_text("x2\n")
    dataset = open_dataset(tmp_path, "test")
    assert dataset.format == "voc" and dataset.names == ["bus", "car"]
    (sample,) = dataset.samples
    assert sample.image.name == "x2.jpg"
    np.testing.assert_allclose(sample.boxes, [[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    assert sample.classes.tolist() == [1, 0] and sample.ignore.tolist() == [False, True]
    assert dataset.boxes_per_class().tolist() == [0, 1]
    assert len(open_dataset(tmp_path)) == 2


def test_bad_datasets_are_one_clear_error(tmp_path: Path):
    with pytest.raises(InputError, match="dataset folder not found"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not a dataset"):
        open_dataset(tmp_path)
    write_yolo(tmp_path / "nolabels", {"a": None})
    with pytest.raises(InputError, match=r"nolabels/labels: no label files"):
        open_dataset(tmp_path / "nolabels")
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc/a.xml").write_text("<annotation><object><name>car</name></object>")
    with pytest.raises(InputError, match=r"a.xml: not a Pascal VOC XML file"):
        open_dataset(tmp_path / "voc")
    (tmp_path / "voc/a.xml").write_text(VOC_XML.format(name="a"))
    with pytest.raises(InputError, match=r"a.xml: its image a.jpg is not in"):
        open_dataset(tmp_path / "voc")


def test_classes_map_by_name_unless_told_otherwise():
    dataset = ["Ambulance", "Bus", "Car", "Motorcycle", "Truck"]
    overrides = parse_class_map(["Ambulance=ignore", "Truck=truck,  "], dataset)
    assert resolve_class_map(dataset, COCO_LIKE, overrides) == [None, 5, 2, 3, 7]
    assert resolve_class_map(dataset, COCO_LIKE, {"Ambulance": "car"})[0] == 2
    assert resolve_class_map(dataset, dataset, {}) == [0, 1, 2, 3, 4]
    with pytest.raises(InputError, match=r"no class named 'Ambulance'.*Ambulance=ignore"):
        resolve_class_map(dataset, COCO_LIKE, {})
    with pytest.raises(InputError, match=r"'Tram' is not a class of the dataset"):
        resolve_class_map(dataset, COCO_LIKE, {"Tram": "ignore"})
    with pytest.raises(InputError, match=r"'van' is not a class of the model"):
        resolve_class_map(dataset, COCO_LIKE, {"Ambulance": "van"})
    with pytest.raises(InputError, match=r"'Ambulance' is not DATASET_CLASS=MODEL_CLASS"):
        parse_class_map(["Ambulance"], dataset)
    with pytest.raises(InputError, match=r"'Tram' is not a class of the dataset"):
        parse_class_map(["Tram=car"], dataset)

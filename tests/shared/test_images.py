"""read_image turns every real kind of image into upright RGB uint8, or fails in one line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from shared.errors import InputError
from shared.images import class_colour, draw_boxes, list_images, read_image, write_image


def _asymmetric_rgb(height: int = 24, width: int = 40) -> np.ndarray:
    """An image whose every flip and rotation looks different: a gradient plus a corner mark."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows * 255 // height, cols * 255 // width, (rows + cols) % 256], axis=-1)
    image[:4, :6] = (255, 0, 0)
    return image.astype(np.uint8)


def _save_with_orientation(path, rgb: np.ndarray, orientation: int) -> None:
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_png_matches_pillow_exif_transpose(tmp_path, orientation):
    path = tmp_path / "photo.png"
    _save_with_orientation(path, _asymmetric_rgb(), orientation)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_of_jpeg_matches_opencv_imread(tmp_path, orientation):
    # cv2.imread with IMREAD_COLOR applies EXIF itself: an independent oracle from the same decoder.
    path = tmp_path / "phone.jpg"
    _save_with_orientation(path, _asymmetric_rgb(), orientation)
    expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    result = read_image(path)
    assert result.shape == ((40, 24, 3) if orientation in (6, 8) else (24, 40, 3))
    np.testing.assert_array_equal(result, expected)


def test_grey_png_becomes_three_equal_channels(tmp_path):
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    result = read_image(tmp_path / "grey.png")
    assert result.shape == (12, 10, 3) and result.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(result[:, :, channel], grey)


def test_binary_pgm_like_att_faces(tmp_path):
    grey = (np.arange(7 * 5, dtype=np.uint8) * 7).reshape(7, 5)
    path = tmp_path / "1.pgm"
    Image.fromarray(grey, mode="L").save(path)
    assert path.read_bytes().startswith(b"P5")
    np.testing.assert_array_equal(read_image(path)[:, :, 1], grey)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: unchanged
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    rgba[0, 2] = (0, 100, 200, 51)  # 20 % opaque: 0.2 * c + 0.8 * 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "logo.png")
    result = read_image(tmp_path / "logo.png")
    assert result.shape == (2, 3, 3)
    assert result[0, 0].tolist() == [10, 20, 30]
    assert result[0, 1].tolist() == [255, 255, 255]
    assert result[0, 2].tolist() == [204, 224, 244]


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_sixteen_bit_is_scaled_with_rounding_not_truncated(tmp_path, suffix):
    # 500/257 = 1.95 -> 2 (the low byte would give 244, a shift by 8 would give 1).
    values = np.array([0, 257, 500, 32896, 65535], dtype=np.uint16)
    bgr16 = np.stack([values, values, np.full(5, 65535, np.uint16)], axis=-1)[None]
    path = tmp_path / f"scan{suffix}"
    assert cv2.imwrite(str(path), bgr16)
    result = read_image(path)
    assert result.dtype == np.uint8
    assert result[0, :, 2].tolist() == [0, 1, 2, 128, 255]  # blue came first in BGR
    assert result[0, :, 0].tolist() == [255] * 5


def test_grey_sixteen_bit_png(tmp_path):
    grey16 = np.array([[0, 1000, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "depth.png"), grey16)
    assert read_image(tmp_path / "depth.png")[0, :, 0].tolist() == [0, 4, 255]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("these are not pixels\n"), "not a readable image"),
    ],
    ids=["missing", "folder", "empty", "text"],
)
def test_unusable_files_are_one_line_input_errors(tmp_path, make, fragment):
    path = tmp_path / "picture.jpg"
    make(path)
    with pytest.raises(InputError) as caught:
        read_image(path)
    assert str(path) in str(caught.value) and fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_truncated_jpeg_is_rejected_not_half_grey(tmp_path):
    full = tmp_path / "full.jpg"
    Image.fromarray(_asymmetric_rgb(120, 160)).save(full, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    assert read_image(full).shape == (120, 160, 3)
    with pytest.raises(InputError, match="not a readable image"):
        read_image(cut)


def test_write_then_read_png_is_exact_and_leaves_no_temp_files(tmp_path):
    image = _asymmetric_rgb()
    write_image(tmp_path / "out.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), image)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_write_jpeg_is_close_and_unknown_suffix_is_refused(tmp_path):
    image = _asymmetric_rgb()
    write_image(tmp_path / "out.jpg", image)
    difference = np.abs(read_image(tmp_path / "out.jpg").astype(int) - image).mean()
    assert difference < 6
    with pytest.raises(InputError, match=r"suffix '\.xyz'"):
        write_image(tmp_path / "out.xyz", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg"]


def test_list_images_sorted_by_suffix_skipping_hidden_and_other_files(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.jpeg", "notes.txt", "._a.jpg", "d.pgm"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.jpg").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.jpeg", "d.pgm"]
    assert [p.name for p in list_images(tmp_path, recursive=True)][-1] == "e.jpg"
    with pytest.raises(InputError, match="no such folder"):
        list_images(tmp_path / "missing")


def test_draw_boxes_draws_on_a_copy_along_the_box_edges():
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    drawn = draw_boxes(image, [[10, 20, 50, 40]], labels=[""])
    assert not image.any()
    assert drawn[20, 30].any() and drawn[40, 30].any() and drawn[30, 10].any()
    assert not drawn[30, 30].any()  # inside the box stays untouched
    labelled = draw_boxes(image, np.array([[10, 30, 50, 50]]), labels=["car"])
    assert labelled[20:30, 10:50].any()  # the label sits above the box


def test_real_att_face_pgm(data_dir):
    path = data_dir / "faces" / "att_faces" / "s1" / "1.pgm"
    result = read_image(path)
    assert result.shape == (112, 92, 3)
    with Image.open(path) as image:
        np.testing.assert_array_equal(result[:, :, 0], np.asarray(image))


def colour_pixels(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(image == colour, axis=2).sum())


def test_labels_of_boxes_at_one_spot_do_not_cover_each_other():
    """Two boxes with the same corner: both labels stay whole, the last box's above it."""
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    boxes = [[40, 80, 200, 180], [42, 82, 200, 180]]
    drawn = draw_boxes(image, boxes, labels=["truck 0.29", "car 0.93"], colour_keys=[7, 2])
    alone = draw_boxes(image, boxes[1:], labels=["car 0.93"], colour_keys=[2])
    car, truck = class_colour(2), class_colour(7)
    assert car != truck
    # The best (last) label sits above its box, unchanged by the weaker box's label.
    above = (slice(0, 82), slice(0, 300))
    assert colour_pixels(drawn[above], car) == colour_pixels(alone[above], car) > 50
    # The weaker label is whole too, elsewhere (inside its box's top).
    truck_only = draw_boxes(image, boxes[:1], labels=["truck 0.29"], colour_keys=[7])
    assert colour_pixels(drawn, truck) >= colour_pixels(truck_only, truck) - 4 * 160


def test_a_class_keeps_its_colour_and_neighbouring_classes_differ():
    assert class_colour(2) == class_colour(2) and class_colour("car") == class_colour("car")
    colours = {class_colour(class_id) for class_id in range(10)}
    assert len(colours) == 10

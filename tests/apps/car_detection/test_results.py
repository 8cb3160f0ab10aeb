"""A frame's result drawn on its image: best on top, one colour per class whatever the score."""

from __future__ import annotations

import numpy as np

from apps.car_detection.results import Detection, FrameResult
from shared.images import class_colour


def edge_colour(drawn: np.ndarray, box: tuple[float, float, float, float]) -> tuple[int, ...]:
    """The colour of the box's left edge, halfway down (no label reaches there)."""
    x1, y1, _, y2 = (int(v) for v in box)
    return tuple(int(c) for c in drawn[(y1 + y2) // 2, x1])


def test_a_class_keeps_its_colour_whatever_the_score():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    box = (20.0, 40.0, 120.0, 110.0)
    strong = FrameResult(0, 0.0, None, [Detection("car", 2, 0.93, box)]).draw(image)
    weak = FrameResult(1, 0.1, None, [Detection("car", 2, 0.29, box)]).draw(image)
    truck = FrameResult(1, 0.1, None, [Detection("truck", 7, 0.93, box)]).draw(image)
    assert edge_colour(strong, box) == edge_colour(weak, box) == class_colour(2)
    assert edge_colour(truck, box) != edge_colour(strong, box)
    # A model fine-tuned on four vehicle classes numbers car 0: it is still drawn as a car.
    tuned = FrameResult(0, 0.0, None, [Detection("car", 0, 0.93, box)]).draw(image)
    assert edge_colour(tuned, box) == class_colour(2)
    # A class COCO does not have keeps a colour of its own name.
    van = FrameResult(0, 0.0, None, [Detection("van", 0, 0.93, box)]).draw(image)
    assert edge_colour(van, box) == class_colour("van") != class_colour(0)


def test_the_best_box_is_drawn_on_top():
    """Overlapping boxes: where their edges cross, the best box's colour shows."""
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    best = Detection("car", 2, 0.93, (20.0, 40.0, 120.0, 110.0))
    weaker = Detection("truck", 7, 0.29, (20.0, 60.0, 140.0, 110.0))
    for order in ([best, weaker], [weaker, best]):
        drawn = FrameResult(0, 0.0, None, order).draw(image)
        assert edge_colour(drawn, (20.0, 60.0, 140.0, 110.0)) == class_colour(2)

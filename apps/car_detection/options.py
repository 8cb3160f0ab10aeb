"""Command-line options that more than one car-detection command shares."""

from __future__ import annotations

import click


def model_source_options(func):
    """``--model`` (catalogue name or a detect-cars-train ``.keras`` file), ``--cfg``/``--weights``
    (the user's own Darknet pair), ``--names`` and ``--size``."""
    options = [
        click.option(
            "--model",
            default=None,
            help="Catalogue model or a .keras file from detect-cars-train "
            "[default: yolo-fastest-1.1-xl].",
        ),
        click.option(
            "--cfg", type=click.Path(dir_okay=False), help="A Darknet .cfg (with --weights)."
        ),
        click.option(
            "--weights", type=click.Path(dir_okay=False), help="Darknet .weights for --cfg."
        ),
        click.option(
            "--names", type=click.Path(dir_okay=False), help="Model class names, one per line."
        ),
        click.option(
            "--size", type=click.IntRange(32, 2048), help="Network input size, a multiple of 32."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func

"""``stylize content.jpg style.jpg``: the command line over ``transfer.stylize``.

Thin by design: parse the options, call ``stylize`` (which returns plain data), render the
result as two lines or as JSON.
"""

from __future__ import annotations

import json

import click

from shared.cli import debug_option, progress, quiet_tensorflow, user_errors
from shared.errors import InputError

EXAMPLE = """\b
Examples:
  stylize tubingen.jpg starry_night.jpg
  stylize louvre.jpg monet.jpg --preserve-colors --scales 2 -o louvre_monet.png
  stylize photo.jpg scream.jpg starry_night.jpg --style-blend 0.7,0.3 --json
  stylize dashcam.mp4 --model starry_night.keras --smooth 0.5  (trained by stylize-train)
"""


def _floats(value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(part) for part in value.split(","))
    except ValueError:
        message = f"--style-blend: expected numbers separated by commas, not {value!r}"
        raise InputError(message) from None


def _names(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(part.strip() for part in value.split(",") if part)


@click.command(epilog=EXAMPLE)
@click.argument("content", type=click.Path(path_type=str))
@click.argument("styles", nargs=-1, type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", help="Result file [default: <content>_stylized.<ext> beside it].")
@click.option(
    "--size",
    default=384,
    show_default=True,
    help="Longest side of the result in pixels (0: the content's own; at most 1024).",
)
@click.option("--iterations", default=300, show_default=True, help="Iterations at every scale.")
@click.option("--content-weight", default=1.0, show_default=True)
@click.option(
    "--style-weight",
    default=100.0,
    show_default=True,
    help="Lower (10) keeps more of the content; higher paints over it.",
)
@click.option(
    "--tv-weight",
    default=0.01,
    show_default=True,
    help="Total variation: higher smooths away speckle.",
)
@click.option("--content-layer", help="Layer the content is read from [default: per network].")
@click.option("--style-layers", help="Comma-separated layers the style is read from.")
@click.option(
    "--style-scale",
    default=1.0,
    show_default=True,
    help="Style image size relative to the content's; smaller gives larger strokes.",
)
@click.option("--style-blend", help="Weights of several style images, e.g. 0.7,0.3.")
@click.option(
    "--preserve-colors",
    is_flag=True,
    help="Transfer the style's luminance only and keep the content's colours.",
)
@click.option(
    "--scales",
    default=1,
    show_default=True,
    help="Coarse-to-fine: start at size/2^(scales-1) and double up to --size.",
)
@click.option(
    "--save-every",
    default=0,
    show_default=True,
    help="Also write <output>_<iteration> every N iterations.",
)
@click.option(
    "--logdir",
    type=click.Path(file_okay=False, path_type=str),
    help="TensorBoard folder: loss parts and the image as it forms.",
)
@click.option(
    "--model",
    default="auto",
    show_default=True,
    help="auto (VGG-19 when its weights can be had, else SqueezeNet), vgg19, squeezenet; or a "
    "style trained by stylize-train (X.keras): then CONTENT may be a photo, a folder or a video, "
    "painted in one pass, and no STYLES are given.",
)
@click.option(
    "--smooth",
    default=0.0,
    show_default=True,
    help="With a trained style on video: 0-0.95, how much still parts keep the last frame's "
    "paint (less flicker).",
)
@click.option(
    "--precision",
    type=click.Choice(["float32", "bfloat16"]),
    default="float32",
    show_default=True,
    help="The network's arithmetic; bfloat16 runs VGG-19 several times faster on CPUs with AMX.",
)
@click.option(
    "--optimizer", type=click.Choice(["lbfgs", "adam"]), default="lbfgs", show_default=True
)
@click.option(
    "--learning-rate", default=4.0, show_default=True, help="Adam's step in pixel levels (0-255)."
)
@click.option(
    "--init",
    type=click.Choice(["content", "noise", "style"]),
    default="content",
    show_default=True,
    help="The image the optimisation starts from.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the noise start.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@debug_option
@user_errors
def main(
    content,
    styles,
    output,
    size,
    iterations,
    content_weight,
    style_weight,
    tv_weight,
    content_layer,
    style_layers,
    style_scale,
    style_blend,
    preserve_colors,
    scales,
    save_every,
    logdir,
    model,
    precision,
    optimizer,
    learning_rate,
    init,
    seed,
    smooth,
    as_json,
    debug,
):
    """Paint CONTENT in the manner of STYLES (Gatys et al. neural style transfer)."""
    quiet_tensorflow()
    if model.lower().endswith(".keras"):
        from apps.style_transfer.model_cli import paint_with_model

        return paint_with_model(content, styles, output, model, smooth, as_json)
    from apps.style_transfer.optimize import LossWeights, TransferSettings
    from apps.style_transfer.transfer import stylize

    settings = TransferSettings(
        size=size,
        iterations=iterations,
        weights=LossWeights(content_weight, style_weight, tv_weight),
        style_scale=style_scale,
        style_blend=_floats(style_blend),
        preserve_colors=preserve_colors,
        scales=scales,
        optimizer=optimizer,
        init=init,
        seed=seed,
        learning_rate=learning_rate,
    )
    with progress(None, total=iterations * scales, desc="stylize", unit="it") as bar:

        def show(report):
            if report.iteration == 0:
                bar.set_description(f"scale {report.scale + 1}/{report.scales}")
                return
            bar.update(1)
            parts = report.parts
            bar.set_postfix_str(
                f"loss {parts.total:.4g} content {parts.content:.3f} "
                f"style {parts.style:.4f} tv {parts.tv:.3f}"
            )

        result = stylize(
            content,
            styles,
            output,
            settings,
            model=model,
            precision=precision,
            content_layer=content_layer,
            style_layers=_names(style_layers),
            save_every=save_every,
            logdir=logdir,
            notice=lambda message: click.echo(f"notice: {message}", err=True),
            on_iteration=show,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    height, width = result.size
    precision = "" if result.precision == "float32" else f" {result.precision}"
    click.echo(
        f"wrote {result.output} ({width}x{height}, {result.model}{precision}, {result.scales} x "
        f"{result.iterations} {result.optimizer} iterations in {result.seconds:.1f} s)"
    )
    click.echo(
        "loss "
        + "  ".join(
            f"{name} {result.first[name]:.4g} -> {result.last[name]:.4g}"
            for name in ("total", "content", "style", "tv")
        )
    )


if __name__ == "__main__":
    main()

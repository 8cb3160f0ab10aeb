"""``stylize content.jpg style.jpg``: the command line over ``transfer.stylize``.

Thin by design: parse the options, call ``stylize`` (which returns plain data), render the
result as two lines or as JSON.
"""

from __future__ import annotations

import json

import click

from apps.style_transfer.settings import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    INITS,
    MAX_SIDE,
    MODELS,
    OPTIMIZERS,
    PRECISIONS,
    LossWeights,
    TransferSettings,
)
from shared.cli import (
    ChoiceOrKerasFile,
    Command,
    checked_option,
    debug_option,
    exist_ok_option,
    progress,
    quiet_tensorflow,
    runtime_option,
    user_errors,
)
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


# Every choice and default comes from settings.py, which the library uses too.
DEFAULTS = TransferSettings()
_NOT_NEGATIVE = click.FloatRange(min=0)
_POSITIVE = click.FloatRange(min=0, min_open=True)


@click.command(cls=Command, epilog=EXAMPLE)
@click.argument("content", type=click.Path(path_type=str))
@click.argument("styles", nargs=-1, type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", help="Result file [default: <content>_stylized.<ext> beside it].")
@checked_option(
    "--size",
    DEFAULTS.size,
    click.IntRange(min=0),
    f"Longest side of the result in pixels (0: the content's own; at most {MAX_SIDE}).",
)
@checked_option(
    "--iterations", DEFAULTS.iterations, click.IntRange(min=1), "Iterations at every scale."
)
@checked_option("--content-weight", DEFAULTS.weights.content, _NOT_NEGATIVE)
@checked_option(
    "--style-weight",
    DEFAULTS.weights.style,
    _NOT_NEGATIVE,
    "Lower (10) keeps more of the content; higher paints over it.",
)
@checked_option(
    "--tv-weight",
    DEFAULTS.weights.tv,
    _NOT_NEGATIVE,
    "Total variation: higher smooths away speckle.",
)
@click.option("--content-layer", help="Layer the content is read from [default: per network].")
@click.option("--style-layers", help="Comma-separated layers the style is read from.")
@checked_option(
    "--style-scale",
    DEFAULTS.style_scale,
    _POSITIVE,
    "Style image size relative to the content's; larger gives larger strokes (the style's "
    "patterns keep their size in pixels).",
)
@click.option("--style-blend", help="Weights of several style images, e.g. 0.7,0.3.")
@click.option(
    "--preserve-colors",
    is_flag=True,
    help="Transfer the style's luminance only and keep the content's colours.",
)
@checked_option(
    "--scales",
    DEFAULTS.scales,
    click.IntRange(min=1),
    "Coarse-to-fine: start at size/2^(scales-1) and double up to --size.",
)
@checked_option(
    "--save-every",
    0,
    click.IntRange(min=0),
    "Also write <output>_<iteration> every N iterations (0: never).",
)
@click.option(
    "--logdir",
    type=click.Path(file_okay=False, path_type=str),
    help="TensorBoard folder: loss parts and the image as it forms.",
)
@checked_option(
    "--model",
    DEFAULT_MODEL,
    ChoiceOrKerasFile(MODELS),
    "auto: VGG-19 when its weights can be had, else SqueezeNet. Or a style trained by "
    "stylize-train (X.keras): CONTENT may then be a photo, a folder or a video, painted in one "
    "pass, and no STYLES are given.",
)
@checked_option(
    "--smooth",
    0.0,
    click.FloatRange(0.0, 1.0, max_open=True),
    "With a trained style on video: how much still parts keep the last frame's paint "
    "(less flicker; 0.5-0.8).",
)
@runtime_option  # with a trained style (--model X.keras)
@checked_option(
    "--precision",
    DEFAULT_PRECISION,
    click.Choice(PRECISIONS),
    "The network's arithmetic; bfloat16 runs VGG-19 several times faster on CPUs with AMX.",
)
@checked_option("--optimizer", DEFAULTS.optimizer, click.Choice(OPTIMIZERS))
@checked_option(
    "--learning-rate", DEFAULTS.learning_rate, _POSITIVE, "Adam's step in pixel levels (0-255)."
)
@checked_option(
    "--init", DEFAULTS.init, click.Choice(INITS), "The image the optimisation starts from."
)
@checked_option("--seed", DEFAULTS.seed, click.IntRange(min=0), "Seed of the noise start.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@exist_ok_option
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
    runtime,
    as_json,
    exist_ok,
    debug,
):
    """Paint CONTENT in the manner of STYLES (Gatys et al. neural style transfer)."""
    quiet_tensorflow()
    if model.lower().endswith(".keras"):
        from apps.style_transfer.model_cli import paint_with_model

        return paint_with_model(content, styles, output, model, smooth, runtime, as_json, exist_ok)
    for flag, given in (("--smooth", smooth != 0.0), ("--runtime", runtime is not None)):
        if given:
            raise InputError(f"{flag} applies to a trained style (--model X.keras) only")
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
            exist_ok=exist_ok,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    width, height = result.size
    precision = "" if result.precision == DEFAULT_PRECISION else f" {result.precision}"
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

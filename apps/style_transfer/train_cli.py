"""``stylize-train STYLE --images DIR``: the command line over ``train.train_style``.

Thin by design: parse the options, call ``train_style`` (which returns plain data), render the
result as two lines or as JSON. Ctrl-C saves the checkpoint, says how to resume, exits 130.
"""

from __future__ import annotations

import json

import click

from apps.style_transfer.settings import DEFAULT_MODEL, MODELS, TRANSFORMER_WIDTHS, TrainSettings
from shared.cli import (
    EXIT_INTERRUPTED,
    Command,
    checked_option,
    debug_option,
    exist_ok_option,
    progress,
    quiet_tensorflow,
    user_errors,
)

# Every default comes from settings.py, which the library uses too.
DEFAULTS = TrainSettings()
_NOT_NEGATIVE = click.FloatRange(min=0)
_POSITIVE = click.FloatRange(min=0, min_open=True)

EXAMPLE = """\b
Examples:
  stylize-train starry_night.jpg --images photos/ --logdir runs/starry
  stylize-train scream.jpg --images cars/ --images faces/ --width light --steps 3000 -o scream.keras
  stylize-train starry_night.jpg --images photos/ --resume        # after Ctrl-C
  stylize tubingen.jpg --model starry_night.keras                 # then use it
"""


@click.command(cls=Command, epilog=EXAMPLE)
@click.argument("style", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--images",
    "images",
    multiple=True,
    required=True,
    type=click.Path(path_type=str),
    help="Folder (searched recursively) or file of training photos; repeat for more.",
)
@click.option("-o", "--output", help="Model file [default: <style>.keras in this folder].")
@checked_option(
    "--width",
    DEFAULTS.width,
    click.Choice(TRANSFORMER_WIDTHS),
    "full: Johnson et al.'s network; light: fewer channels, depthwise-separable, for CPUs.",
)
@checked_option("--steps", DEFAULTS.steps, click.IntRange(min=1), "Training steps (batches).")
@checked_option("--batch-size", DEFAULTS.batch_size, click.IntRange(min=1))
@checked_option(
    "--image-size", DEFAULTS.image_size, click.IntRange(min=1), "Side of the square crops."
)
@checked_option(
    "--style-size",
    DEFAULTS.style_size,
    click.IntRange(min=1),
    "Longest side of the style image; larger gives larger strokes.",
)
@checked_option(
    "--learning-rate", DEFAULTS.learning_rate, _POSITIVE, "Adam's, cosine-decayed to a tenth."
)
@checked_option("--content-weight", DEFAULTS.weights.content, _NOT_NEGATIVE)
@checked_option(
    "--style-weight",
    DEFAULTS.weights.style,
    _NOT_NEGATIVE,
    "Same scale as stylize's, where one image takes 100; a network needs far less (3 for "
    "The Scream).",
)
@checked_option("--tv-weight", DEFAULTS.weights.tv, _NOT_NEGATIVE)
@checked_option(
    "--model",
    DEFAULT_MODEL,
    click.Choice(MODELS),
    "Loss network; auto: VGG-19 when its weights can be had, else SqueezeNet.",
)
@click.option("--content-layer", help="Layer the content is read from [default: per network].")
@click.option("--style-layers", help="Comma-separated layers the style is read from.")
@click.option(
    "--logdir",
    type=click.Path(file_okay=False, path_type=str),
    help="TensorBoard folder: losses, learning rate, validation photos as the style forms.",
)
@click.option(
    "--val-images",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Photos stylised for TensorBoard [default: three of the training photos].",
)
@checked_option("--val-every", DEFAULTS.val_every, click.IntRange(min=1), "Steps between them.")
@click.option("--checkpoint", help="Checkpoint file [default: <output>.ckpt.npz beside it].")
@checked_option("--checkpoint-every", DEFAULTS.checkpoint_every, click.IntRange(min=1))
@click.option("--resume", is_flag=True, help="Continue from the checkpoint.")
@checked_option("--seed", DEFAULTS.seed, click.IntRange(min=0))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@exist_ok_option
@debug_option
@user_errors
def main(
    style,
    images,
    output,
    width,
    steps,
    batch_size,
    image_size,
    style_size,
    learning_rate,
    content_weight,
    style_weight,
    tv_weight,
    model,
    content_layer,
    style_layers,
    logdir,
    val_images,
    val_every,
    checkpoint,
    checkpoint_every,
    resume,
    seed,
    as_json,
    exist_ok,
    debug,
):
    """Train a network that paints any photo in the manner of STYLE in one pass."""
    if not debug:
        quiet_tensorflow()
    from apps.style_transfer.settings import LossWeights
    from apps.style_transfer.train import train_style

    settings = TrainSettings(
        width=width,
        image_size=image_size,
        style_size=style_size,
        batch_size=batch_size,
        steps=steps,
        learning_rate=learning_rate,
        weights=LossWeights(content_weight, style_weight, tv_weight),
        val_every=val_every,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    layers = None if style_layers is None else [n.strip() for n in style_layers.split(",") if n]
    with progress(None, total=steps, desc="stylize-train", unit="step") as bar:

        def show(step, parts):
            bar.n = step
            bar.set_postfix_str(
                f"loss {parts['total']:.4g} content {parts['content']:.3f} "
                f"style {parts['style']:.4f} tv {parts['tv']:.3f}"
            )

        result = train_style(
            style,
            images,
            output,
            settings,
            model=model,
            content_layer=content_layer,
            style_layers=layers,
            logdir=logdir,
            val_images=val_images,
            checkpoint=checkpoint,
            resume=resume,
            exist_ok=exist_ok,
            notice=lambda message: click.echo(f"notice: {message}", err=True),
            on_step=show,
        )
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.as_dict().items() if k != "history"}))
    elif result.interrupted:
        click.echo(
            f"interrupted at step {result.steps}; checkpoint {result.checkpoint} "
            "(run the same command with --resume to continue)",
            err=True,
        )
    else:
        click.echo(
            f"wrote {result.output} ({result.width} network, {result.model} loss, "
            f"steps {result.first_step}-{result.steps} in {result.seconds:.0f} s, "
            f"{result.images} photos)"
        )
        click.echo(
            "loss "
            + "  ".join(
                f"{name} {result.first[name]:.4g} -> {result.last[name]:.4g}"
                for name in ("total", "content", "style", "tv")
            )
        )
    if result.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()

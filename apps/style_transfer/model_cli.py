"""``stylize SOURCE --model style.keras``: the command-line side of ``feedforward``.

Called by ``stylize`` when ``--model`` names a trained style: a progress bar over the frames,
then one line (or JSON). Ctrl-C leaves the frames painted so far and exits 130.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from shared.cli import EXIT_INTERRUPTED, progress
from shared.errors import InputError


def paint_with_model(content, styles, output, model, smooth, runtime, as_json, exist_ok) -> None:
    from apps.style_transfer.feedforward import stylize_with_model

    if styles:
        raise InputError(
            f"{model}: a trained style carries its style image; give no STYLES "
            f"(got {', '.join(styles)})"
        )
    with progress(None, desc="stylize", unit="frame") as bar:

        def show(done, total):
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        result = stylize_with_model(
            content,
            model,
            output,
            smoothing=smooth,
            on_frame=show,
            exist_ok=exist_ok,
            runtime=runtime,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        height, width = result.size
        change = ""
        if result.mean_change is not None:
            change = f", mean frame-to-frame change {result.mean_change:.2f}"
            change += f" (input {result.input_change:.2f})"
        click.echo(
            f"wrote {result.output} ({result.frames} {result.kind} frame(s) of {width}x{height} "
            f"in {result.style} style on {result.runtime}, {result.seconds:.1f} s, "
            f"{result.frames_per_second:.1f} frames/s{change})"
        )
    if result.interrupted:
        if Path(result.output).exists():
            done = f"{result.output} holds the {result.frames} frame(s) done and plays"
        else:
            done = "before the first frame; nothing was written"
        click.echo(f"interrupted: {done}", err=True)
        raise SystemExit(EXIT_INTERRUPTED)

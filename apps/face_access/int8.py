"""Make the int8 quantisation preset of a face embedder (a developer's tool; needs NNCF).

    python -m apps.face_access.int8 ../shared/data/faces/lfw_deepfunneled --model sface \\
        -o data/quantization/sface-int8-1.json
    python -m apps.face_access.int8 ../shared/data/faces/lfw_deepfunneled \\
        --model mobilefacenet --activations performance \\
        -o data/quantization/mobilefacenet-int8-1.json

Aligns the photos of ``FACES`` (one folder per person; ``--roles`` of its ``SPLITS.tsv``:
training people only, never the ones the door's settings are judged on) as the door does,
feeds ``--samples`` chips picked at random to NNCF's post-training quantisation of the float
model and writes the activation ranges it learnt (``shared.quantize``). ``--activations``: on
LFW dev chips SFace's int8 vectors lie 0.062 from the float ones at the median with
``mixed``, 0.093 with ``performance``, at the same speed; MobileFaceNet's 0.094 and 0.085, and
``mixed`` ran it slower (6.6 against 4.6 ms a chip on one core). Users never run this:
the preset ships with the package and the int8 spec (``sface-int8``) names it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from apps.face_access import facesets
from apps.face_access.detection import FaceDetector
from apps.face_access.models import SPECS, weights_path
from apps.face_access.pipeline import FacePipeline
from shared.errors import UserError
from shared.quantize import NNCF_PRESETS
from shared.weights import file_digest

SEED = 0


def preset_text(preset: dict) -> str:
    """The preset as JSON with one quantiser a line (readable, and diffs stay small)."""
    head = {key: value for key, value in preset.items() if key != "quantisers"}
    lines = [json.dumps(quantiser) for quantiser in preset["quantisers"]]
    body = ",\n  ".join(lines)
    return json.dumps(head, indent=1)[:-2] + f',\n "quantisers": [\n  {body}\n ]\n}}\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faces", type=Path, help="a folder of person folders")
    parser.add_argument("--roles", nargs="+", default=["train"], help="SPLITS.tsv roles to use")
    parser.add_argument("--model", default="sface", choices=[n for n in SPECS if n != "dlib"])
    parser.add_argument("--samples", type=int, default=300, help="calibration chips")
    parser.add_argument(
        "--activations",
        default="mixed",
        choices=NNCF_PRESETS,
        help="NNCF preset: activations over their own range (mixed) or symmetric (performance)",
    )
    parser.add_argument("--several", default="central", choices=facesets.SEVERAL_FACES)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        from shared.cli import quiet_tensorflow
        from shared.quantize import make_preset, quantize_with_nncf
        from shared.runtime import openvino_ir

        quiet_tensorflow()

        spec = SPECS[args.model]
        chips = facesets.cached_chips(
            args.faces,
            lambda: FacePipeline(FaceDetector(), chips_of=spec),
            layout=spec.chip_layout,
            roles=args.roles,
            several=args.several,
        )
        picked = np.random.default_rng(SEED).permutation(len(chips.chips))[: args.samples]
        path = weights_path(spec)
        samples = [spec.network_input(chips.chips[i : i + 1]) for i in sorted(picked)]
        quantized = quantize_with_nncf(openvino_ir(spec.build(path)), samples, args.activations)
        calibration = (
            f"NNCF {args.activations}, {len(samples)} chips of "
            f"{len({chips.people[i] for i in picked})} people, "
            f"{args.faces.name} roles {' '.join(args.roles)}, seed {SEED}"
        )
        preset = make_preset(quantized, file_digest(path), calibration)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.output.write_text(preset_text(preset), "utf-8")
    print(f"{args.output}: {len(preset['quantisers'])} quantisers from {calibration}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which Darknet model, which class names, which classes to keep: the choices a user makes.

``detect-cars`` takes ``--model NAME`` (a catalogue model, found or downloaded by
``shared.weights``) or ``--cfg/--weights`` (the user's own files), ``--names`` (default: the COCO
names shipped in ``convnet_apps_data``) and ``--classes`` (``vehicles``, ``all`` or names). Each
turns into paths or class ids here, with one clear error when it cannot.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from apps.car_detection.network import DetectorNetwork, load_network
from shared.errors import InputError
from shared.weights import catalogue, resolve_model

DEFAULT_MODEL = "yolo-fastest-1.1-xl"
VEHICLE_CLASSES = ("car", "truck", "bus")


def darknet_models() -> list[str]:
    """The catalogue's detectors: the models listed with a Darknet .cfg and .weights."""
    return sorted(
        name
        for name, entries in catalogue().items()
        if {".cfg", ".weights"} <= {Path(entry.file).suffix for entry in entries}
    )


def darknet_files(
    model: str | None = None, cfg: Path | str | None = None, weights: Path | str | None = None
) -> tuple[Path, Path]:
    """(cfg, weights) of a catalogue model, or the user's own pair.

    Own files come as a pair and win over ``model``; a catalogue model's files are found or
    downloaded by ``shared.weights.resolve_model`` (a ``WeightsError`` if impossible).
    """
    if (cfg is None) != (weights is None):
        given, missing = ("--cfg", "--weights") if cfg is not None else ("--weights", "--cfg")
        raise InputError(f"{given} needs {missing} too: a Darknet model is a .cfg and a .weights")
    if cfg is not None and weights is not None:
        if not Path(cfg).is_file():
            raise InputError(f"{cfg}: cfg file not found")
        return Path(cfg), Path(weights)
    files = resolve_model(model or DEFAULT_MODEL)
    by_suffix = {path.suffix: path for path in files.values()}
    if ".cfg" not in by_suffix or ".weights" not in by_suffix:
        raise InputError(f"model {model!r} is not a Darknet model (no .cfg and .weights)")
    return by_suffix[".cfg"], by_suffix[".weights"]


def read_class_names(path: Path | str | None = None) -> list[str]:
    """Class names, one per line (blank lines ignored); default the shipped COCO names."""
    if path is None:
        text = resources.files("convnet_apps_data").joinpath("coco.names").read_text("utf-8")
    else:
        try:
            text = Path(path).read_text("utf-8")
        except FileNotFoundError:
            raise InputError(f"{path}: class names file not found") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a text file of class names") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: holds no class names")
    return names


def select_classes(spec: str, names: list[str]) -> list[int] | None:
    """Class ids for ``--classes``: ``all`` (None: keep every class), ``vehicles`` or names.

    Names are matched case-insensitively and separated by commas; an unknown name is an error
    that lists a few known ones.
    """
    wanted = spec.strip().lower()
    if wanted == "all":
        return None
    requested = VEHICLE_CLASSES if wanted == "vehicles" else [n.strip() for n in wanted.split(",")]
    index = {name.lower(): i for i, name in enumerate(names)}
    unknown = [name for name in requested if name not in index]
    if unknown:
        examples = ", ".join(names[:8])
        listed = ", ".join(map(repr, unknown))
        raise InputError(f"unknown class {listed} in --classes; known: {examples}, ...")
    return sorted({index[name] for name in requested})


def load_model_and_names(
    model: str | None = None,
    cfg: Path | str | None = None,
    weights: Path | str | None = None,
    names: Path | str | None = None,
    size: int | None = None,
    runtime: str | None = None,
) -> tuple[DetectorNetwork, list[str]]:
    """The network ready for inference and its class names, checked to agree in number.

    ``size`` replaces the cfg's square input size (a multiple of the network's stride);
    ``runtime`` is ``openvino`` or ``tensorflow`` (None: OpenVINO where it works).
    ``model`` may also be a ``.keras`` file written by ``detect-cars-train``: it carries its
    own class names, anchors and input size.
    """
    if model is not None and model.endswith(".keras"):
        return load_trained(model, size, runtime)
    cfg_path, weights_path = darknet_files(model, cfg, weights)
    network = load_network(cfg_path, weights_path, size, runtime)
    labels = read_class_names(names)
    if len(labels) != network.classes:
        source = names or "the shipped COCO names"
        raise InputError(
            f"{source}: {len(labels)} class names but {cfg_path} predicts {network.classes} classes"
        )
    return network, labels


def load_trained(
    path: Path | str, size: int | None = None, runtime: str | None = None
) -> tuple[DetectorNetwork, list[str]]:
    """A ``detect-cars-train`` result as (network on ``runtime``, class names)."""
    from shared.cli import quiet_tensorflow

    quiet_tensorflow()  # reading the file imports Keras, as building a Darknet model does
    from apps.car_detection.network import GRAPH_VERSION
    from apps.car_detection.yolo import load_task
    from shared.runtime import load_model

    task = load_task(path)
    if size is not None and (size, size) != task.input_size:
        width, height = task.input_size
        raise InputError(f"{path}: trained at {width}x{height}; --size cannot change it")

    def build():
        darknet = task.detection_network()
        facts = {"width": darknet.width, "height": darknet.height, "classes": darknet.classes}
        return darknet.pixel_model(), facts

    model = load_model(Path(path).stem, [path], f"{GRAPH_VERSION};trained", build, runtime)
    return DetectorNetwork(model=model, **model.metadata), task.names

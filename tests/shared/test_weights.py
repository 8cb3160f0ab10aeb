"""The weights resolver: every branch in order, checks, download and the offline message."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import os
import socket
import threading
from pathlib import Path

import pytest

from shared import weights
from shared.errors import WeightsError

PAYLOAD = b"pretend these are network weights\n" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
PAYLOAD_SHA512 = hashlib.sha512(PAYLOAD).hexdigest()
REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_CATALOGUE = REPO_ROOT / "data" / "weights.tsv"
HEADER = "name\tfile\turl\tdigest\tsize\tlicense"


@pytest.fixture(autouse=True)
def checkout_catalogue(monkeypatch):
    """This checkout's catalogue (an editable install may ship another checkout's copy)."""
    monkeypatch.setattr(weights, "catalogue_text", lambda: CHECKOUT_CATALOGUE.read_text("utf-8"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No weights folder, no shipping packages, an empty cache; returns a catalogue setter."""
    monkeypatch.delenv(weights.ENV_WEIGHTS_DIR, raising=False)
    monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "SHIPPING_PACKAGES", ())

    def use_catalogue(*rows: str) -> None:
        text = "# test catalogue\n" + "\n".join([HEADER, *rows]) + "\n"
        monkeypatch.setattr(weights, "catalogue_text", lambda: text)

    return use_catalogue


def _row(url: str, digest: str = PAYLOAD_SHA, size: int | None = len(PAYLOAD)) -> str:
    return f"toy\ttoy.bin\t{url}\t{digest}\t{'' if size is None else size}\tMIT"


def _refused_url() -> str:
    """A URL on a port nobody listens on: connecting is refused at once, as when offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/toy.bin"


def test_catalogue_rows_are_complete():
    models = weights.catalogue()
    assert {"yolo-fastest-1.1", "yolo-fastest-1.1-xl", "yunet", "squeezenet-1.1"} <= set(models)
    assert [e.file for e in models["yolo-fastest-1.1"]] == [
        "yolo-fastest-1.1.cfg",
        "yolo-fastest-1.1.weights",
    ]
    for entries in models.values():
        for entry in entries:
            assert entry.url.startswith("https://") and entry.digest is not None
            assert entry.size and entry.size > 0, f"{entry.file} has no size"
    cfg, darknet = models["yolov2"]
    assert (cfg.file, cfg.digest.algorithm) == ("yolov2.cfg", "sha256")
    assert (darknet.file, darknet.digest.algorithm) == ("yolov2.weights", "sha512")
    assert darknet.url == "https://pjreddie.com/media/files/yolov2.weights"
    assert darknet.digest.hex.startswith("5271da2dd2da9151")  # as vcpkg's darknet port pins it


def test_digest_cells_bare_sha256_or_named_algorithm():
    assert weights.parse_digest(f" {PAYLOAD_SHA.upper()} ") == weights.Digest("sha256", PAYLOAD_SHA)
    assert weights.parse_digest(f"SHA512:{PAYLOAD_SHA512}") == weights.Digest(
        "sha512", PAYLOAD_SHA512
    )
    assert weights.parse_digest(f"sha256:{PAYLOAD_SHA}") == weights.Digest("sha256", PAYLOAD_SHA)
    assert weights.parse_digest("") is None
    with pytest.raises(ValueError, match="'md5' not supported"):
        weights.parse_digest("md5:" + "0" * 32)
    with pytest.raises(ValueError, match="a sha512 digest is 128 hex digits"):
        weights.parse_digest(f"sha512:{PAYLOAD_SHA}")
    with pytest.raises(ValueError, match="a sha256 digest is 64 hex digits"):
        weights.parse_digest("z" * 64)
    both = "\n".join([HEADER, _row("https://a/toy.bin"), _row("https://b/toy.bin", "sha512:00")])
    with pytest.raises(ValueError, match=r"row 3 \(toy.bin\): a sha512 digest is 128"):
        weights.parse_catalogue(both)
    models = weights.parse_catalogue(
        "\n".join(
            [HEADER, _row("https://a/toy.bin", f"sha512:{PAYLOAD_SHA512}"), _row("https://b")]
        )
    )
    assert [entry.digest.algorithm for entry in models["toy"]] == ["sha512", "sha256"]


def test_explicit_path_wins_and_is_not_checked(isolated, tmp_path):
    isolated(_row(_refused_url()))
    own = tmp_path / "my-finetuned.bin"
    own.write_bytes(b"user's own weights")
    assert weights.resolve_file("toy", "toy.bin", explicit=own) == own
    with pytest.raises(WeightsError, match="no such weights file"):
        weights.resolve_file("toy", "toy.bin", explicit=tmp_path / "typo.bin")


def test_weights_dir_found_by_name_in_nested_folders(isolated, monkeypatch, tmp_path):
    isolated(_row(_refused_url()))
    folder = tmp_path / "downloads"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "toy.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(folder))
    assert weights.resolve_file("toy", "toy.bin") == folder / "a" / "b" / "toy.bin"


def test_weights_dir_that_is_not_a_folder_is_reported(isolated, monkeypatch, tmp_path):
    isolated(_row(_refused_url()))
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(tmp_path / "nowhere"))
    with pytest.raises(WeightsError, match="is not a folder"):
        weights.resolve_file("toy", "toy.bin")


def test_package_shipping_the_file_is_found_without_importing_it(isolated, monkeypatch, tmp_path):
    isolated(_row(_refused_url()))
    package = tmp_path / "site" / "fake_models_pkg"
    (package / "models").mkdir(parents=True)
    # Importing would fail, like face_recognition_models on setuptools without pkg_resources.
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package / "models" / "toy.bin").write_bytes(PAYLOAD)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(weights, "SHIPPING_PACKAGES", ("not_installed_anywhere", "fake_models_pkg"))
    assert weights.resolve_file("toy", "toy.bin") == package / "models" / "toy.bin"


def _cached_toy_counting_hashes(monkeypatch, tmp_path) -> tuple[Path, list[str]]:
    """PAYLOAD placed in the cache by hand, and the list of algorithms it gets hashed with."""
    cached = tmp_path / "cache" / "weights" / "toy.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD)
    hashed: list[str] = []
    real_hash_file = weights.hash_file
    monkeypatch.setattr(weights, "hash_file", lambda p, a: hashed.append(a) or real_hash_file(p, a))
    return cached, hashed


def test_cache_hit_and_verification_is_remembered(isolated, monkeypatch, tmp_path):
    isolated(_row(_refused_url()))
    cached, hashed = _cached_toy_counting_hashes(monkeypatch, tmp_path)
    assert weights.resolve_file("toy", "toy.bin") == cached
    assert weights.resolve_file("toy", "toy.bin") == cached
    assert len(hashed) == 1  # the second start reused the remembered digest
    # Same size, new content and mtime: hashed again, and the corruption is caught.
    cached.write_bytes(PAYLOAD[:-1] + b"?")
    os.utime(cached, ns=(1, 1))
    with pytest.raises(WeightsError, match=r"sha256 .* does not match"):
        weights.resolve_file("toy", "toy.bin")
    assert len(hashed) == 2


def test_sha512_row_is_verified_with_sha512_and_remembered_per_algorithm(
    isolated, monkeypatch, tmp_path
):
    isolated(_row(_refused_url(), digest=f"sha512:{PAYLOAD_SHA512}"))
    cached, hashed = _cached_toy_counting_hashes(monkeypatch, tmp_path)
    assert weights.resolve_file("toy", "toy.bin") == cached
    assert weights.resolve_file("toy", "toy.bin") == cached
    assert hashed == ["sha512"]
    # Another algorithm is hashed once and remembered beside the first.
    assert weights.file_digest(cached, "sha256") == PAYLOAD_SHA
    assert weights.file_digest(cached, "sha256") == PAYLOAD_SHA
    assert weights.file_digest(cached, "sha512") == PAYLOAD_SHA512
    assert hashed == ["sha512", "sha256"]
    cached.write_bytes(PAYLOAD[:-1] + b"?")
    os.utime(cached, ns=(1, 1))
    with pytest.raises(WeightsError) as caught:
        weights.resolve_file("toy", "toy.bin")
    message = str(caught.value)
    assert f"sha512 {hashlib.sha512(PAYLOAD[:-1] + b'?').hexdigest()[:16]}" in message
    assert f"does not match {PAYLOAD_SHA512[:16]}" in message and str(cached) in message
    assert hashed == ["sha512", "sha256", "sha512"]


def test_locate_file_never_downloads(isolated, server, tmp_path):
    served, base = server
    (served / "toy.bin").write_bytes(PAYLOAD)
    isolated(_row(f"{base}/toy.bin", digest=f"sha512:{PAYLOAD_SHA512}"))
    assert weights.locate_file("toy", "toy.bin") is None
    assert not (tmp_path / "cache" / "weights" / "toy.bin").exists()
    cached = weights.resolve_file("toy", "toy.bin")
    assert weights.locate_file("toy", "toy.bin") == cached
    cached.write_bytes(b"corrupt")
    with pytest.raises(WeightsError, match=r"bytes but toy\.bin has"):
        weights.locate_file("toy", "toy.bin")


def test_corrupt_local_file_is_reported_not_used(isolated, monkeypatch, tmp_path):
    isolated(_row(_refused_url()))
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "toy.bin").write_bytes(PAYLOAD[:100])
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(folder))
    with pytest.raises(WeightsError) as caught:
        weights.resolve_file("toy", "toy.bin")
    message = str(caught.value)
    assert str(folder / "toy.bin") in message and "truncated" in message and "\n" not in message


def test_download_into_cache_from_local_server(isolated, server, tmp_path):
    served, base = server
    (served / "toy.bin").write_bytes(PAYLOAD)
    isolated(_row(f"{base}/toy.bin"))
    path = weights.resolve_file("toy", "toy.bin")
    assert path == tmp_path / "cache" / "weights" / "toy.bin"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy.bin"]
    (served / "toy.bin").unlink()  # the next start must not need the network
    assert weights.resolve_model("toy") == {"toy.bin": path}


def test_download_checked_by_sha512_and_its_digest_remembered(
    isolated, server, monkeypatch, tmp_path
):
    served, base = server
    (served / "toy.bin").write_bytes(PAYLOAD)
    isolated(_row(f"{base}/toy.bin", digest=f"sha512:{PAYLOAD_SHA512}"))
    path = weights.resolve_file("toy", "toy.bin")
    assert path == tmp_path / "cache" / "weights" / "toy.bin" and path.read_bytes() == PAYLOAD
    # The digest computed while downloading is remembered: the next start does not hash.
    monkeypatch.setattr(weights, "hash_file", lambda *_: pytest.fail("hashed again"))
    assert weights.resolve_file("toy", "toy.bin") == path


@pytest.mark.parametrize(
    ("digest", "size", "fragment"),
    [
        ("0" * 64, len(PAYLOAD), "has sha256 .* instead of 00000"),
        ("sha512:" + "0" * 128, len(PAYLOAD), f"has sha512 {PAYLOAD_SHA512[:16]}… instead of 0"),
        (PAYLOAD_SHA, len(PAYLOAD) + 1, "bytes but"),
    ],
    ids=["sha256", "sha512", "size"],
)
def test_download_mismatch_leaves_nothing_in_cache(
    isolated, server, tmp_path, digest, size, fragment
):
    served, base = server
    (served / "toy.bin").write_bytes(PAYLOAD)
    isolated(_row(f"{base}/toy.bin", digest=digest, size=size))
    with pytest.raises(WeightsError, match=fragment):
        weights.resolve_file("toy", "toy.bin")
    assert list((tmp_path / "cache" / "weights").iterdir()) == []


def test_http_error_gives_the_offline_message(isolated, server, tmp_path):
    _, base = server
    isolated(_row(f"{base}/missing.bin"))
    with pytest.raises(WeightsError, match="download failed \\(HTTP 404 "):
        weights.resolve_file("toy", "toy.bin")
    assert list((tmp_path / "cache" / "weights").iterdir()) == []


def test_offline_message_names_file_the_places_to_put_it_and_url(isolated, tmp_path):
    url = _refused_url()
    isolated(_row(url))
    with pytest.raises(WeightsError) as caught:
        weights.resolve_file("toy", "toy.bin")
    message = str(caught.value)
    assert "\n" not in message
    assert "toy.bin" in message and "refused" in message
    # No "weights option": most commands have none (stylize), or one meant for own models.
    assert "option" not in message
    assert weights.ENV_WEIGHTS_DIR in message
    assert str(tmp_path / "cache" / "weights" / "toy.bin") in message
    assert url in message


def test_uncatalogued_file_is_found_by_name_but_never_downloaded(isolated, monkeypatch, tmp_path):
    isolated(_row(_refused_url()))
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "yolov3.cfg").write_text("[net]\n")
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(tmp_path / "cfgs"))
    assert weights.resolve_file("yolov3", "yolov3.cfg").name == "yolov3.cfg"
    with pytest.raises(WeightsError, match="no download address"):
        weights.resolve_file("yolov3", "yolov3.weights")
    with pytest.raises(WeightsError, match="unknown model 'yolov3'"):
        weights.resolve_model("yolov3")


def test_default_cache_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(weights.ENV_CACHE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "convnet-apps"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_dir() == tmp_path / "home" / ".cache" / "convnet-apps"


@pytest.mark.parametrize(
    "model", ["yolo-fastest-1.1", "yolo-fastest-1.1-xl", "yunet", "squeezenet-1.1"]
)
def test_real_catalogue_files_resolve_offline_and_match(offline_weights, model):
    paths = weights.resolve_model(model)
    for entry in weights.catalogue()[model]:
        path = paths[entry.file]
        assert path.is_relative_to(offline_weights)
        assert weights.hash_file(path, entry.digest.algorithm) == entry.digest.hex
        assert path.stat().st_size == entry.size


def test_real_dlib_model_resolves_from_its_package(offline_weights):
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is not installed")
    (path,) = weights.resolve_model("dlib-face-resnet").values()
    assert path.parent.name == "models" and path.parent.parent.name == "face_recognition_models"
    assert path.stat().st_size == 22466066

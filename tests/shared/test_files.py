"""atomic_output never leaves a partial file under the final name; hash_file is exact."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from shared.errors import InputError
from shared.files import atomic_output, hash_file, refuse_to_replace


def test_success_renames_temp_file_from_the_same_folder_with_the_same_suffix(tmp_path):
    target = tmp_path / "result.mp4"
    with atomic_output(target) as temp:
        assert temp.parent == tmp_path
        assert temp.suffix == ".mp4"
        assert temp != target
        temp.write_bytes(b"frames")
        assert not target.exists()
    assert target.read_bytes() == b"frames"
    assert not temp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.mp4"]


def test_new_file_gets_umask_permissions_not_mkstemp_0600(tmp_path):
    target = tmp_path / "out.png"
    with atomic_output(target) as temp:
        temp.write_bytes(b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("error", [ValueError("encoder failed"), KeyboardInterrupt()])
def test_error_removes_temp_and_keeps_previous_file(tmp_path, error):
    target = tmp_path / "model.keras"
    target.write_bytes(b"previous good version")
    with pytest.raises(type(error)), atomic_output(target) as temp:
        temp.write_bytes(b"half writ")
        raise error
    assert target.read_bytes() == b"previous good version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_full_disk_is_one_input_error_naming_the_file(tmp_path):
    target = tmp_path / "big.mp4"
    with pytest.raises(InputError) as caught, atomic_output(target) as temp:
        temp.write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")
    message = str(caught.value)
    assert str(target) in message and "no space left" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(PermissionError), atomic_output(tmp_path / "x.txt"):
        raise PermissionError(errno.EACCES, "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_an_input_error(tmp_path):
    target = tmp_path / "no" / "such" / "out.jpg"
    with pytest.raises(InputError, match="does not exist"), atomic_output(target):
        pass


def test_hash_file_matches_known_digests(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    abc = tmp_path / "abc"
    abc.write_bytes(b"abc")
    assert hash_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert hash_file(abc) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_folder_that_is_a_file_is_named_as_such(tmp_path):
    (tmp_path / "text.jpg").write_text("a file")
    with (
        pytest.raises(InputError, match=r"text\.jpg is a file, not a folder"),
        atomic_output(tmp_path / "text.jpg" / "out.mp4"),
    ):
        pass
    with (
        pytest.raises(InputError, match=r"folder .*missing does not exist"),
        atomic_output(tmp_path / "missing" / "out.mp4"),
    ):
        pass


def test_errors_name_the_users_file_not_the_hidden_temporary_one(tmp_path, monkeypatch):
    """A refused rename (a read-only folder, say) names out.mp4, not .out.lsn2w3lq.mp4."""

    def refuse(source, _destination):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(source))

    monkeypatch.setattr(os, "replace", refuse)
    target = tmp_path / "out.mp4"
    with pytest.raises(InputError) as caught, atomic_output(target) as temp:
        temp.write_bytes(b"frames")
    assert str(caught.value) == f"{target}: cannot write (Operation not permitted)"
    assert list(tmp_path.iterdir()) == []


def test_refuse_to_replace_keeps_earlier_results_unless_allowed(tmp_path):
    earlier = tmp_path / "cars.csv"
    refuse_to_replace(earlier, exist_ok=False)  # nothing there yet
    earlier.write_text("earlier")
    with pytest.raises(InputError, match=r"cars\.csv: already exists.*--exist-ok"):
        refuse_to_replace(earlier, exist_ok=False)
    refuse_to_replace(earlier, exist_ok=True)

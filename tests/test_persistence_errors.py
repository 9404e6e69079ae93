"""Persistence errors tell the truth (issue 13, item 5): no folder is created behind the user's
back, messages name the user's path (never a temporary file), a refused file gives no advice to
load it unsafely, and weights that were changed after saving are refused."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import mcgen
from mcgen import load_dataset
from mcgen.persistence import PersistenceError, read_checkpoint
from tests._factories import gmrf, mvae

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fitted():
    X = load_dataset("copula", n_samples=100, random_state=0)[0]
    return gmrf(max_epochs=1).fit(X)


def test_save_into_a_missing_folder_is_an_error_naming_the_folder(fitted, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "m.mcgen"
    with pytest.raises(FileNotFoundError, match=rf"cannot save to {target}: the folder {target.parent} does not "
                                                r"exist; create it first"):
        fitted.save(target)
    assert not (tmp_path / "no").exists()  # nothing was created
    with pytest.raises(FileNotFoundError, match="the folder /nonexistent_dir_mcgen_probe does not exist"):
        fitted.save("/nonexistent_dir_mcgen_probe/m.mcgen")
    assert not Path("/nonexistent_dir_mcgen_probe").exists()


def test_save_below_a_file_names_the_users_path(fitted, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match=rf"cannot save to {tmp_path / 'afile' / 'm.mcgen'}: "
                                                 rf"{tmp_path / 'afile'} is not a folder"):
        fitted.save(tmp_path / "afile" / "m.mcgen")


def test_save_onto_a_folder_names_the_users_path_and_leaves_no_temporary_file(fitted, tmp_path):
    target = tmp_path / "adir"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        fitted.save(target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    assert sorted(os.listdir(tmp_path)) == ["adir"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_failed_write_names_the_users_path_not_the_temporary_file(fitted, tmp_path, monkeypatch, code):
    def failing_save(obj, f, *args, **kwargs):
        raise OSError(code, os.strerror(code), f.name if hasattr(f, "name") else "tmp")

    monkeypatch.setattr(torch, "save", failing_save)
    target = tmp_path / "m.mcgen"
    with pytest.raises(OSError) as info:
        fitted.save(target)
    assert info.value.errno == code and info.value.filename == str(target)
    assert ".tmp" not in str(info.value) and str(target) in str(info.value)
    assert os.listdir(tmp_path) == []


def test_an_unwritable_folder_names_the_users_path(fitted, tmp_path, monkeypatch):
    """Bug caught: the error named the temporary file (``....tmp``), not the user's path, and left the temporary
    file behind. The refusal is simulated (as root every folder is writable) where the OS would refuse: the
    final rename of the temporary file."""
    import mcgen.persistence as persistence

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", os.fspath(src))

    monkeypatch.setattr(persistence.os, "replace", refuse)
    target = tmp_path / "m.mcgen"
    with pytest.raises(PermissionError) as info:
        fitted.save(target)
    assert info.value.filename == os.fspath(target) and ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_refused_file_gives_no_unsafe_advice(tmp_path):
    path = tmp_path / "evil.mcgen"
    torch.save({"format_version": 1, "kind": "mcgen-estimator", "x": _Payload()}, path)
    with pytest.raises(PersistenceError) as info:
        mcgen.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path} is not a safe mcgen file: it holds pickled Python objects")
    assert "(the first refused: print)" in msg  # what it would have run
    for unsafe in ("weights_only=False", "weights_only` to `False", "can still be loaded", "trust the source"):
        assert unsafe not in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__  # torch's advice is not chained in
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"a": _Payload()}, f)
    with pytest.raises(PersistenceError) as info:
        mcgen.load(tmp_path / "plain.pkl")
    assert "weights_only=False" not in str(info.value) and "can still be loaded" not in str(info.value)
    (tmp_path / "noise.mcgen").write_bytes(os.urandom(256))
    with pytest.raises(PersistenceError, match="noise.mcgen is not an mcgen file"):
        mcgen.load(tmp_path / "noise.mcgen")


def test_load_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent.mcgen")):
        mcgen.load(tmp_path / "absent.mcgen")


def _tamper(path: Path, key: str, change) -> None:
    payload = torch.load(path, weights_only=True)
    change(payload, key)
    torch.save(payload, path)


@pytest.mark.parametrize("key", ["state_dict", "standardize_mean"])
def test_tampered_weights_are_refused(fitted, tmp_path, key):
    path = tmp_path / "m.mcgen"
    fitted.save(path)
    assert len(torch.load(path, weights_only=True)["weights_sha256"]) == 64

    def change(payload, key):
        if key == "state_dict":
            name = sorted(payload["state_dict"])[0]
            payload["state_dict"][name] = payload["state_dict"][name] + 1e-3
        else:
            payload[key][0] = payload[key][0] + 1.0

    _tamper(path, key, change)
    with pytest.raises(PersistenceError, match=rf"{path}: the weights do not match the SHA-256 recorded when the "
                                               r"file was written; it was modified or damaged"):
        mcgen.load(path)


def test_an_unchanged_file_and_an_old_file_without_a_digest_load(fitted, tmp_path):
    path = tmp_path / "m.mcgen"
    fitted.save(path)
    X = load_dataset("copula", n_samples=20, random_state=3)[0]
    np.testing.assert_array_equal(mcgen.load(path).transform(X), fitted.transform(X))
    _tamper(path, "weights_sha256", lambda p, k: p.pop(k))  # as written by mcgen 0.1
    np.testing.assert_array_equal(mcgen.load(path).transform(X), fitted.transform(X))


def test_a_tampered_checkpoint_is_refused(tmp_path):
    X = load_dataset("copula", n_samples=60, random_state=0)[0]
    mvae(max_epochs=1, checkpoint_dir=tmp_path).fit(X)
    path = tmp_path / "checkpoint.pt"

    def change(payload, key):
        name = sorted(payload["state_dict"])[-1]
        payload["state_dict"][name] = payload["state_dict"][name] * 2

    _tamper(path, "state_dict", change)
    with pytest.raises(PersistenceError, match="the weights do not match the SHA-256"):
        read_checkpoint(tmp_path)
    with pytest.raises(PersistenceError, match="the weights do not match the SHA-256"):
        mvae(max_epochs=2, checkpoint_dir=tmp_path).fit(X, resume=True)


def test_checkpoint_dir_is_created_as_documented(tmp_path):
    X = load_dataset("copula", n_samples=60, random_state=0)[0]
    mvae(max_epochs=1, checkpoint_dir=tmp_path / "a" / "b").fit(X)
    assert (tmp_path / "a" / "b" / "checkpoint.pt").is_file()

"""mcgen.data_files (also importable as mcgen.datasets._fetch): data_home resolution, download via file:// URLs,
checksums, caches."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from mcgen import data_files as _fetch
from mcgen.datasets._fetch import ChecksumError, download, fetch, get_cache_dir, get_data_home, verify_sha256


def test_data_home_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MCGEN_DATA", str(tmp_path / "env"))
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home() == tmp_path / "env"
    monkeypatch.delenv("MCGEN_DATA")
    assert get_data_home() == Path("~/.mcgen_data").expanduser()
    with pytest.raises(TypeError, match="data_home"):
        get_data_home(3)


def test_download_file_url_and_checksum(tmp_path):
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    payload = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # several chunks
    src.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = download(src.as_uri(), tmp_path / "dl" / "blob.bin", sha256=digest, progress=True)
    assert dest.read_bytes() == payload
    # a wrong digest raises and leaves neither the file nor a partial download behind
    with pytest.raises(ChecksumError, match="expected 0+, got " + digest):
        download(src.as_uri(), tmp_path / "dl2" / "blob.bin", sha256="0" * 64, progress=False)
    assert list((tmp_path / "dl2").iterdir()) == []


def test_checksum_of_decompressed_content(tmp_path):
    raw = b"idx content" * 100
    digest = hashlib.sha256(raw).hexdigest()
    for level in (1, 9):  # different gzip bytes, same content
        path = tmp_path / f"f{level}.gz"
        with gzip.open(path, "wb", compresslevel=level) as f:
            f.write(raw)
        verify_sha256(path, digest, decompress=True)
        with pytest.raises(ChecksumError, match="decompressed content"):
            verify_sha256(path, hashlib.sha256(raw + b"x").hexdigest(), decompress=True)


def test_fetch_tries_mirrors_in_order(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.txt").write_text("hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    missing = (tmp_path / "nowhere").as_uri() + "/"
    path = fetch("a.txt", tmp_path / "home", [missing, good.as_uri() + "/"], sha256=digest, progress=False)
    assert path.read_text() == "hello"
    # present files are not downloaded again
    assert fetch("a.txt", tmp_path / "home", [], sha256=digest) == path
    with pytest.raises(OSError, match="could not download b.txt"):
        fetch("b.txt", tmp_path / "home", [missing], sha256=None, progress=False)
    with pytest.raises(FileNotFoundError, match="download_if_missing=False"):
        fetch("b.txt", tmp_path / "home", [good.as_uri()], sha256=None, download_if_missing=False)


def test_cache_dir_falls_back_when_data_home_is_read_only(tmp_path, monkeypatch):
    ro = tmp_path / "shared"
    (ro / "polymnist").mkdir(parents=True)
    fallback = tmp_path / "home_default"
    monkeypatch.setattr(_fetch, "DEFAULT_DATA_HOME", fallback)
    assert get_cache_dir(ro, "polymnist") == ro / "polymnist"
    os.chmod(ro / "polymnist", stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        assert get_cache_dir(ro, "polymnist") == fallback / "polymnist"
        assert (fallback / "polymnist").is_dir()
    finally:
        os.chmod(ro / "polymnist", stat.S_IRWXU)


def test_atomic_savez_roundtrip(tmp_path):
    path = _fetch.atomic_savez(tmp_path / "c" / "x.npz", a=np.arange(5))
    with np.load(path) as z:
        np.testing.assert_array_equal(z["a"], np.arange(5))
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["x.npz"]

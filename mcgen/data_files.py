"""Where data files live, downloading, checksums and caches: shared by the file-backed datasets
and by the metrics' trained or pretrained models (the PolyMNIST digit classifiers).

``data_home`` resolution: the ``data_home`` argument, else ``$MCGEN_DATA``, else ``~/.mcgen_data``.
Raw files are looked up under ``data_home/<subdir>``; missing ones are downloaded there (from the
dataset's official source, ``urllib`` so ``file://`` URLs work too) with a progress bar and a
SHA-256 check.  Derived caches (``.npz``, trained classifiers) go to ``data_home/<subdir>`` when
it is writable, else to ``~/.mcgen_data/<subdir>`` (e.g. when ``MCGEN_DATA`` points at a read-only
shared folder).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from mcgen.exceptions import ChecksumError

DATA_ENV = "MCGEN_DATA"
DEFAULT_DATA_HOME = Path("~") / ".mcgen_data"
_CHUNK = 1 << 20


def cache_key(**parts) -> str:
    """A short, stable key (16 hex digits) for a cache file built from ``parts`` (JSON-able)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """Resolve the data folder: ``data_home``, else ``$MCGEN_DATA``, else ``~/.mcgen_data``.

    Parameters
    ----------
    data_home : path-like, optional

    Returns
    -------
    pathlib.Path
        The (user-expanded) folder; it is not created here.
    """
    if data_home is None:
        data_home = os.environ.get(DATA_ENV) or DEFAULT_DATA_HOME
    if not isinstance(data_home, (str, os.PathLike)):
        raise TypeError(f"data_home must be a path, got {type(data_home).__name__}")
    return Path(data_home).expanduser()


def _writable_dir(path: Path) -> bool:
    """True when ``path`` exists (or can be created) and may be written.

    A folder whose mode has no write bit at all counts as read-only even for root (who passes
    ``os.access``), so a shared read-only data folder is never written into.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK) and bool(path.stat().st_mode & 0o222)


def get_cache_dir(data_home: str | os.PathLike | None, subdir: str) -> Path:
    """Folder for derived files of one dataset (created on demand).

    ``data_home/subdir`` when it can be written, else ``~/.mcgen_data/subdir``.
    """
    primary = get_data_home(data_home) / subdir
    if _writable_dir(primary):
        return primary
    fallback = DEFAULT_DATA_HOME.expanduser() / subdir
    if _writable_dir(fallback):
        return fallback
    raise PermissionError(f"neither {primary} nor {fallback} can be written; pass a writable data_home")


def sha256_file(path: str | os.PathLike, *, decompress: bool = False) -> str:
    """SHA-256 hex digest of a file, or of its gzip-decompressed content when ``decompress``."""
    h = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, *, decompress: bool = False) -> None:
    """Raise :class:`ChecksumError` (naming the file and both digests) when ``path`` does not match.

    Parameters
    ----------
    path : path-like
    expected : str
        Expected SHA-256 hex digest.
    decompress : bool
        Hash the gzip-decompressed content instead of the file bytes.
    """
    try:
        actual = sha256_file(path, decompress=decompress)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ChecksumError(f"{path} could not be read for its checksum: {exc}") from None
    if actual != expected.lower():
        what = "decompressed content of " if decompress else ""
        raise ChecksumError(
            f"SHA-256 mismatch for the {what}{path}: expected {expected}, got {actual}. "
            "The file is corrupt or not the expected version; delete it to download it again."
        )


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled,
                leave=False)


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, decompress_checksum: bool = False,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar and an optional SHA-256 check.

    The file is streamed to a temporary file next to ``dest`` and renamed into place only
    once complete and verified, so an interrupted or corrupt download never leaves ``dest``.

    Parameters
    ----------
    url : str
        Any URL ``urllib`` opens (``https://``, ``http://``, ``file://``).
    dest : path-like
    sha256 : str, optional
        Expected digest; :class:`ChecksumError` is raised (and nothing kept) on mismatch.
    decompress_checksum : bool
        The digest is of the gzip-decompressed content.
    progress : bool
        Show a tqdm progress bar.
    timeout : float
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length") if response.headers else None
            total = int(length) if length and length.isdigit() else None
            with _progress(total, dest.name, progress) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
        if sha256 is not None:
            verify_sha256(tmp, sha256, decompress=decompress_checksum)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def fetch(filename: str, folder: str | os.PathLike, base_urls: Sequence[str], *, sha256: str | None,
          decompress_checksum: bool = False, download_if_missing: bool = True, progress: bool = True) -> Path:
    """Return ``folder/filename``, downloading it from the first base URL that answers if absent.

    Parameters
    ----------
    filename : str
    folder : path-like
        Where the file is looked for and stored.
    base_urls : sequence of str
        Mirrors tried in order; the URL is ``base + filename``.  Network errors move on to the
        next mirror; a checksum mismatch raises at once.
    sha256 : str or None
        Expected digest of a downloaded file (files already present are checked by the caller).
    decompress_checksum : bool
        The digest is of the gzip-decompressed content.
    download_if_missing : bool
        When False a missing file raises ``FileNotFoundError``.
    progress : bool

    Returns
    -------
    pathlib.Path
    """
    path = Path(folder) / filename
    if path.exists():
        return path
    if not download_if_missing:
        raise FileNotFoundError(f"{path} does not exist and download_if_missing=False")
    if not base_urls:
        raise FileNotFoundError(f"{path} does not exist and no download URL is known for it")
    if not _writable_dir(path.parent):
        raise PermissionError(f"{path} is missing and {path.parent} cannot be written to download it; "
                              "pass a writable data_home")
    errors = []
    for base in base_urls:
        url = base if base.endswith(filename) else base.rstrip("/") + "/" + filename
        try:
            return download(url, path, sha256=sha256, decompress_checksum=decompress_checksum, progress=progress)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:  # ChecksumError propagates
            errors.append(f"{url}: {exc}")
    raise OSError(f"could not download {filename}; tried:\n  " + "\n  ".join(errors))


def atomic_savez(path: str | os.PathLike, **arrays) -> Path:
    """``np.savez`` to a temporary file then rename, so readers never see a partial cache."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

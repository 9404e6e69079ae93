"""The data-file helpers, kept importable from here (they live in :mod:`mcgen.data_files`)."""

from mcgen.data_files import (  # noqa: F401
    DATA_ENV,
    DEFAULT_DATA_HOME,
    ChecksumError,
    atomic_savez,
    cache_key,
    download,
    fetch,
    get_cache_dir,
    get_data_home,
    sha256_file,
    verify_sha256,
)

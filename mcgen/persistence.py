"""Safe persistence: ``est.save(path)`` / ``mcgen.load(path)`` and the training checkpoints.

Files hold only tensors and plain data (parameters as JSON, weights as state dicts) and are read
with ``torch.load(weights_only=True)``: loading an untrusted file cannot run code.  (``joblib``
and ``pickle`` also work on estimators, but unpickling runs code: only unpickle trusted files.)

The estimator side of the format is a small protocol, so that this module never reaches into an
estimator's internals (and imports no estimator module):

* ``est._get_fitted_state() -> dict`` and ``est._set_fitted_state(state)``: everything learned,
  as tensors and plain data;
* ``type(est)._renamed_parameters``: ``{old name: new name}`` of renamed parameters, so that
  files written by an older mcgen still load;
* the estimator classes register themselves with :func:`register_estimator_class` (the
  estimator base class does it for every subclass), which is how :func:`load` finds the class a
  file names.

Every file records the SHA-256 of its learned numbers (``weights_sha256``: the module's state
dict and the standardisation statistics), verified when it is read, so weights changed after
saving are refused.  Errors name the user's path, never the temporary file a write goes
through; :func:`save` does not create folders (a missing folder is an error naming it), the
checkpoint folder ``checkpoint_dir`` is created when missing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from mcgen.exceptions import PersistenceError
from mcgen.version import __version__

__all__ = [
    "CHECKPOINT_FILE",
    "FORMAT_VERSION",
    "PersistenceError",
    "load",
    "params_from_json",
    "params_to_json",
    "read_checkpoint",
    "register_estimator_class",
    "save",
    "weights_digest",
    "write_checkpoint",
]

#: Version of the file layout written by :func:`save` and the checkpoints.
FORMAT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.pt"

#: The estimator classes a file may name, by class name (filled by the estimator base class).
_ESTIMATOR_CLASSES: dict[str, type] = {}


def register_estimator_class(cls: type) -> type:
    """Make ``cls`` loadable by name (first registration of a name wins)."""
    _ESTIMATOR_CLASSES.setdefault(cls.__name__, cls)
    return cls


def _atomic_torch_save(obj: Any, path: Path, create_folder: bool = False) -> None:
    """Write to a temporary file in the same folder, then rename: a reader (or a process killed
    mid-write) never sees a half-written file.

    The folder must exist unless ``create_folder``.  An ``OSError`` names ``path`` (the temporary
    file is an implementation detail, and is removed).
    """
    path = Path(path)
    folder = path.parent
    if create_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise type(exc)(exc.errno, f"cannot create the folder {folder}: {exc.strerror}",
                            os.fspath(folder)) from None
    elif not folder.exists():
        raise FileNotFoundError(errno.ENOENT, f"cannot save to {path}: the folder {folder} does not exist; create it "
                                "first (mcgen does not create folders when saving)", os.fspath(path))
    elif not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"cannot save to {path}: {folder} is not a folder",
                                 os.fspath(path))
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"cannot save to {path}: it is a folder; give a file name",
                                os.fspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror or exc}", os.fspath(path)) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        os.unlink(tmp)


def weights_digest(payload: dict) -> str:
    """SHA-256 of the learned numbers in ``payload``: every tensor of its ``state_dict`` (by
    name, with dtype and shape) and the standardisation statistics, when present."""
    h = hashlib.sha256()

    def add(name: str, t: torch.Tensor | None) -> None:
        h.update(name.encode())
        if t is None:
            h.update(b"None")
            return
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())

    for key in sorted(payload.get("state_dict") or {}):
        add(f"state_dict.{key}", payload["state_dict"][key])
    for key in ("standardize_mean", "standardize_scale"):
        for i, t in enumerate(payload.get(key) or []):
            add(f"{key}.{i}", t)
    return h.hexdigest()


def params_to_json(est, warn: bool = True) -> str:
    """The estimator's parameters as JSON; values JSON cannot hold are refused or dropped
    (training callbacks, with a warning when ``warn``)."""
    out = {}
    for name, value in est.get_params(deep=False).items():
        if name == "callbacks" and value and warn:
            warnings.warn("callbacks are not saved (they are training-time objects); the loaded estimator "
                          "has callbacks=None", UserWarning, stacklevel=3)
        if name == "callbacks":
            value = None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":  # e.g. a graph's adjacency matrix
            value = {"numpy": value.tolist(), "dtype": value.dtype.str}
        if name == "optimizer" and isinstance(value, type):
            if getattr(torch.optim, value.__name__, None) is value:
                value = {"torch.optim": value.__name__}
            else:
                raise PersistenceError(f"optimizer {value!r} is not a torch.optim class and cannot be saved; "
                                       "use joblib for custom optimizers")
        try:
            json.dumps(value)
        except TypeError:
            raise PersistenceError(f"parameter {name}={value!r} cannot be stored as JSON; use joblib to save "
                                   "estimators with non-JSON parameters") from None
        out[name] = value
    return json.dumps(out)


def upgrade_params(params: dict, renamed: dict[str, str] | None) -> dict:
    """``params`` with every old parameter name in ``renamed`` replaced by its new name."""
    renamed = renamed or {}
    return {renamed.get(k, k): v for k, v in params.items()}


def params_from_json(text: str, renamed: dict[str, str] | None = None) -> dict:
    """Inverse of :func:`params_to_json`; old parameter names are mapped through ``renamed``."""
    params = upgrade_params(json.loads(text), renamed)
    opt = params.get("optimizer")
    if isinstance(opt, dict) and "torch.optim" in opt:
        params["optimizer"] = getattr(torch.optim, opt["torch.optim"])
    for key, value in params.items():
        if isinstance(value, dict) and set(value) == {"numpy", "dtype"}:
            params[key] = np.asarray(value["numpy"], dtype=np.dtype(value["dtype"]))
    for key in ("encoder_kwargs", "decoder_kwargs"):  # JSON turns tuples into lists
        if key in params:
            params[key] = _tuples(params[key])
    return params


def _tuples(value):
    if isinstance(value, dict):
        return {k: tuple(v) if isinstance(v, list) and k == "hidden" else v for k, v in value.items()}
    if isinstance(value, list):
        return [_tuples(v) for v in value]
    return value


def _is_fitted(est) -> bool:
    try:
        check_is_fitted(est)
    except NotFittedError:
        return False
    return True


def save(est, path: str | os.PathLike) -> None:
    """Save an estimator (fitted or not) to one file: parameters as JSON, weights as a state dict
    with their SHA-256.

    Parameters
    ----------
    est : MultiComponentVAE
    path : str or path-like
        The file to write (replaced atomically).  Its folder must exist.

    Raises
    ------
    FileNotFoundError, NotADirectoryError, IsADirectoryError
        When the folder is missing, is a file, or ``path`` is a folder (the message names them).
    OSError
        When the file cannot be written (no permission, no space); it names ``path``.
    """
    fitted = _is_fitted(est)
    payload = {"format_version": FORMAT_VERSION, "kind": "mcgen-estimator", "estimator": type(est).__name__,
               "mcgen_version": __version__, "params": params_to_json(est), "fitted": fitted}
    if fitted:
        payload.update(est._get_fitted_state())
        payload["weights_sha256"] = weights_digest(payload)
    _atomic_torch_save(payload, Path(path))


#: What torch names when ``weights_only=True`` refuses a pickled object ("GLOBAL os.system").
_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global|GLOBAL)[:\s]+(?:GLOBAL\s+)?([\w.]+)")


def _read(path: str | os.PathLike, kind: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", os.fspath(path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot read {path}: {exc.strerror or exc}", os.fspath(path)) from None
    except Exception as exc:  # an UnpicklingError for files that would need code to load, or not a torch file
        text = str(exc)
        # torch's message suggests loading with weights_only=False; never repeat that advice
        found = _REFUSED_GLOBAL.search(text)
        if found:
            raise PersistenceError(
                f"{path} is not a safe mcgen file: it holds pickled Python objects (the first refused: "
                f"{found.group(1)}). Loading them could run code, so mcgen refuses them. Files written by est.save "
                "hold only tensors and plain data: this one was not written by mcgen, or was modified") from None
        raise PersistenceError(f"{path} is not an mcgen file: it cannot be read as one ({type(exc).__name__} while "
                               "reading it safely; files written by est.save can)") from None
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        raise PersistenceError(f"{path} is not an mcgen {kind.split('-')[1]} file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise PersistenceError(
            f"{path} has format version {version}, this mcgen ({__version__}) reads version {FORMAT_VERSION}; "
            f"it was written by mcgen {payload.get('mcgen_version')}: load it with that version")
    recorded = payload.get("weights_sha256")  # absent in files written by mcgen 0.1
    if recorded is not None and recorded != weights_digest(payload):
        raise PersistenceError(f"{path}: the weights do not match the SHA-256 recorded when the file was written; it "
                               "was modified or damaged after it was saved. Save the model again from its source")
    return payload


def load(path: str | os.PathLike, device: str | None = None):
    """Load an estimator saved by ``est.save(path)``.

    Parameters
    ----------
    path : str or path-like
    device : str, optional
        Where to put the model (default: where it was trained, or the CPU when CUDA is missing).

    Returns
    -------
    estimator
        Of the class the file names, with the saved parameters (renamed ones under their new
        names) and, when it was saved fitted, its fitted state.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist (the message names it).
    PersistenceError
        For a file that is not an mcgen estimator, a format-version mismatch, a file that would
        need to run code to load (pickled objects), or weights that do not match the SHA-256
        recorded when the file was written.
    """
    payload = _read(path, "mcgen-estimator")
    name = payload["estimator"]
    if name not in _ESTIMATOR_CLASSES:
        raise PersistenceError(f"{path} holds a {name!r}, which this mcgen does not provide "
                               f"(known: {', '.join(sorted(_ESTIMATOR_CLASSES))})")
    cls = _ESTIMATOR_CLASSES[name]
    est = cls(**params_from_json(payload["params"], getattr(cls, "_renamed_parameters", None)))
    if device is not None:
        est.set_params(device=device)
    elif str(est.get_params()["device"]).startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"the estimator was saved with device={est.get_params()['device']!r} but CUDA is not "
                      "available; it is loaded on the CPU", UserWarning, stacklevel=2)
        est.set_params(device="cpu")
    if payload["fitted"]:
        est._set_fitted_state(payload)
    return est


def write_checkpoint(dirname: str | os.PathLike, payload: dict) -> None:
    """Write a training checkpoint (``payload`` plus the format header and the weights' SHA-256)
    to ``dirname/checkpoint.pt``, atomically; ``dirname`` is created when missing."""
    full = {"format_version": FORMAT_VERSION, "kind": "mcgen-checkpoint", "mcgen_version": __version__, **payload}
    full["weights_sha256"] = weights_digest(full)
    _atomic_torch_save(full, Path(dirname) / CHECKPOINT_FILE, create_folder=True)


def read_checkpoint(dirname: str | os.PathLike) -> dict | None:
    """The last complete checkpoint in ``dirname``, or None when there is none."""
    path = Path(dirname) / CHECKPOINT_FILE
    if not path.exists():
        return None
    return _read(path, "mcgen-checkpoint")

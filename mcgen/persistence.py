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
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

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


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a reader (or a process killed
    mid-write) never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    """Save an estimator (fitted or not) to one file: parameters as JSON, weights as a state dict."""
    fitted = _is_fitted(est)
    payload = {"format_version": FORMAT_VERSION, "kind": "mcgen-estimator", "estimator": type(est).__name__,
               "mcgen_version": __version__, "params": params_to_json(est), "fitted": fitted}
    if fitted:
        payload.update(est._get_fitted_state())
    _atomic_torch_save(payload, Path(path))


def _read(path: str | os.PathLike, kind: str) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # an UnpicklingError for files that would need code to load
        raise PersistenceError(f"{path} is not a safe mcgen file (refused by torch.load(weights_only=True): "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        raise PersistenceError(f"{path} is not an mcgen {kind.split('-')[1]} file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise PersistenceError(
            f"{path} has format version {version}, this mcgen ({__version__}) reads version {FORMAT_VERSION}; "
            f"it was written by mcgen {payload.get('mcgen_version')}: load it with that version")
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
    PersistenceError
        For a file that is not an mcgen estimator, a format-version mismatch, or a file that
        would need to run code to load (pickled objects).
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
    """Write a training checkpoint (``payload`` plus the format header) to
    ``dirname/checkpoint.pt``, atomically."""
    full = {"format_version": FORMAT_VERSION, "kind": "mcgen-checkpoint", "mcgen_version": __version__, **payload}
    _atomic_torch_save(full, Path(dirname) / CHECKPOINT_FILE)


def read_checkpoint(dirname: str | os.PathLike) -> dict | None:
    """The last complete checkpoint in ``dirname``, or None when there is none."""
    path = Path(dirname) / CHECKPOINT_FILE
    if not path.exists():
        return None
    return _read(path, "mcgen-checkpoint")

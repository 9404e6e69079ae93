"""Safe persistence: ``est.save(path)`` / ``mcgen.load(path)`` and per-epoch training checkpoints.

Files hold only tensors and plain data (parameters as JSON, weights as state dicts) and are read
with ``torch.load(weights_only=True)``: loading an untrusted file cannot run code.  (``joblib``
and ``pickle`` also work on estimators, but unpickling runs code: only unpickle trusted files.)
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.history import History

#: Version of the file layout written by :func:`save` and the checkpoints.
FORMAT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.pt"


class PersistenceError(ValueError):
    """A saved file cannot be loaded (wrong kind, version mismatch, mismatching estimator)."""


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


def params_from_json(text: str) -> dict:
    params = json.loads(text)
    opt = params.get("optimizer")
    if isinstance(opt, dict) and "torch.optim" in opt:
        params["optimizer"] = getattr(torch.optim, opt["torch.optim"])
    for key in ("encoder_kwargs", "decoder_kwargs"):  # JSON turns tuples into lists
        params[key] = _tuples(params.get(key))
    return params


def _tuples(value):
    if isinstance(value, dict):
        return {k: tuple(v) if isinstance(v, list) and k == "hidden" else v for k, v in value.items()}
    if isinstance(value, list):
        return [_tuples(v) for v in value]
    return value


def _estimator_classes() -> dict[str, type]:
    import mcgen  # noqa: F401  (import registers every public estimator class)
    from mcgen.base import MultiComponentVAE

    found, todo = {}, [MultiComponentVAE]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("mcgen"):
                found[sub.__name__] = sub
            todo.append(sub)
    return found


def _fitted_state(est) -> dict:
    return {
        "component_shapes": [list(s) for s in est.component_shapes_],
        "standardize_mean": [None if m is None else torch.from_numpy(np.asarray(m)) for m in est.standardize_mean_],
        "standardize_scale": [None if s is None else torch.from_numpy(np.asarray(s))
                              for s in est.standardize_scale_],
        "seed": int(est._seed_),
        "state_dict": {k: v.detach().cpu() for k, v in est.net_.module_.state_dict().items()},
        "history": json.dumps(est.net_.history.to_list(), default=float),
    }


def save(est, path: str | os.PathLike) -> None:
    """Save an estimator (fitted or not) to one file: parameters as JSON, weights as a state dict."""
    payload = {"format_version": FORMAT_VERSION, "kind": "mcgen-estimator", "estimator": type(est).__name__,
               "mcgen_version": _version(), "params": params_to_json(est), "fitted": hasattr(est, "net_")}
    if payload["fitted"]:
        payload.update(_fitted_state(est))
    _atomic_torch_save(payload, Path(path))


def _version() -> str:
    from mcgen import __version__

    return __version__


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
            f"{path} has format version {version}, this mcgen ({_version()}) reads version {FORMAT_VERSION}; "
            f"it was written by mcgen {payload.get('mcgen_version')}: load it with that version")
    return payload


def _restore(est, payload: dict, device: str | None) -> None:
    """Rebuild the fitted state of ``est`` from a payload written by ``_fitted_state``."""
    shapes = [tuple(s) for s in payload["component_shapes"]]
    est.n_components_ = len(shapes)
    est.component_shapes_ = tuple(shapes)
    est.standardize_mean_ = [None if m is None else m.numpy() for m in payload["standardize_mean"]]
    est.standardize_scale_ = [None if s is None else s.numpy() for s in payload["standardize_scale"]]
    est._seed_ = int(payload["seed"])
    specs = est._resolve_specs(None, shapes)
    est.latent_dims_ = [s.latent_dim for s in specs]
    module = est._build_module(specs)
    module.load_state_dict(payload["state_dict"])
    if device is not None:
        est.device = device
    elif isinstance(est.device, str) and est.device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"the estimator was saved with device={est.device!r} but CUDA is not available; "
                      "it is loaded on the CPU", UserWarning, stacklevel=3)
        est.device = "cpu"
    est.net_ = est._make_net(module, est._seed_)
    est.net_.initialize()
    est.net_.history = History(json.loads(payload["history"]))
    est.net_.module_.eval()
    est.history_ = est.net_.history


def load(path: str | os.PathLike, device: str | None = None):
    """Load an estimator saved by ``est.save(path)``.

    Parameters
    ----------
    path : str or path-like
    device : str, optional
        Where to put the model (default: where it was trained, or the CPU when CUDA is missing).

    Raises
    ------
    PersistenceError
        For a file that is not an mcgen estimator, a format-version mismatch, or a file that
        would need to run code to load (pickled objects).
    """
    payload = _read(path, "mcgen-estimator")
    classes = _estimator_classes()
    name = payload["estimator"]
    if name not in classes:
        raise PersistenceError(f"{path} holds a {name!r}, which this mcgen does not provide "
                               f"(known: {', '.join(sorted(classes))})")
    est = classes[name](**params_from_json(payload["params"]))
    if payload["fitted"]:
        _restore(est, payload, device)
    return est


class EpochCheckpoint(Callback):
    """Saves everything needed to resume after every epoch (atomically, one file).

    Built on skorch's callback protocol; holds the module and optimizer state dicts, the
    history, and the RNG states, so a resumed fit reproduces an uninterrupted one.
    """

    def __init__(self, dirname: str, estimator):
        self.dirname = dirname
        self.estimator = estimator

    def on_epoch_end(self, net, **kwargs):
        est = self.estimator
        payload = {"format_version": FORMAT_VERSION, "kind": "mcgen-checkpoint", "mcgen_version": _version(),
                   "estimator": type(est).__name__, "params": params_to_json(est, warn=False),
                   "n_rows": int(est._fit_rows_), "epoch": len(net.history),
                   "optimizer": net.optimizer_.state_dict(), "torch_rng": torch.get_rng_state(),
                   "shuffle_rng": net.shuffle_generator.get_state()}
        if torch.cuda.is_available():
            payload["cuda_rng"] = torch.cuda.get_rng_state_all()
        payload.update(_fitted_state(est))
        _atomic_torch_save(payload, Path(self.dirname) / CHECKPOINT_FILE)

    def __getstate__(self):  # the estimator holds this callback through its net: no cycle in pickles
        state = dict(self.__dict__)
        state["estimator"] = None
        return state


def read_checkpoint(dirname: str | os.PathLike) -> dict | None:
    """The last complete checkpoint in ``dirname``, or None when there is none."""
    path = Path(dirname) / CHECKPOINT_FILE
    if not path.exists():
        return None
    return _read(path, "mcgen-checkpoint")

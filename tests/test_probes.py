"""The probe suite of issue 13: every failure mode it lists, tried as a new user would, and
classified.

Each fixed probe is a call and what it should give: a clear error (an exception of the
expected class whose message matches, saying what is wrong and where) or a documented result.
An outcome is

* **clear**: the expected exception with the expected message;
* **ok**: no error where none is expected (the check passed);
* **silent**: no error where one was expected (a wrong result nobody is told about);
* **raw**: an exception raised by torch, NumPy or SciPy themselves, a generic Python error
  (``RuntimeError``, ``IndexError``, ``KeyError``, ...), or a warning from them, reaching the user;
* **unclear**: an mcgen error with another message than expected.

``test_every_probe_gives_its_expected_outcome`` requires every probe to be clear or ok, and
``test_the_counts_in_docs_reliability_md_are_the_measured_ones`` that ``docs/reliability.md``
states the counts this run measures.  The property-based tests at the end (hypothesis, small
``max_examples``, derandomised) cover the large input spaces.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.model_selection import GridSearchCV
from torch import nn

import mcgen
from mcgen import Components, load_dataset
from mcgen.architectures.mlp import MLPDecoder, MLPEncoder
from mcgen.cli import build_parser
from mcgen.cli import main as cli_main
from mcgen.exceptions import (
    DataTypeError,
    InvalidParameterError,
    PersistenceError,
    PluginBrokenError,
    PluginContractError,
    PluginError,
    PluginSignatureError,
    TrainingDivergedError,
)
from mcgen.plugins import DISABLE_AUTOLOAD_ENV, get_registries, hookimpl, register_plugin, reset_plugins
from mcgen.testing import check_architecture
from tests._factories import FACTORIES, LinearDecoder, gmrf, mvae

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
RELIABILITY = ROOT / "docs" / "reliability.md"

#: Exception classes that are never an acceptable answer to a user (they come from deep inside).
RAW = (RuntimeError, IndexError, KeyError, AttributeError, ZeroDivisionError, AssertionError, NameError,
       UnboundLocalError, RecursionError, OverflowError)


@dataclass
class Probe:
    """One call and what it should give: ``error`` (a class or tuple) with ``match``, or
    ``error=None`` for a call that must succeed (and ``check``, when given, must hold)."""

    item: int
    name: str
    call: Callable[[], object]
    error: type | tuple | None = None
    match: str = ""
    check: Callable[[object], bool] | None = None


def _from_library(exc: BaseException) -> bool:
    """Raised by torch, NumPy or SciPy themselves (not by mcgen around them)."""
    module = type(exc).__module__ or ""
    return module.split(".")[0] in ("torch", "numpy", "scipy") or isinstance(exc, RAW) and not \
        type(exc).__module__.startswith("mcgen")


def classify(probe: Probe) -> tuple[str, str]:
    """``(outcome, detail)`` of running ``probe``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = probe.call()
        except SystemExit as exc:  # argparse errors
            result = exc
        except BaseException as exc:  # noqa: BLE001 - classifying is the point
            if probe.error is not None and isinstance(exc, probe.error) and not _from_library(exc) \
                    and re.search(probe.match, str(exc), re.S):
                return "clear", f"{type(exc).__name__}: {str(exc)[:160]}"
            if _from_library(exc):
                return "raw", f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:300]}"
            return "unclear", f"{type(exc).__name__}: {str(exc)[:300]}"
    leaked = [w for w in caught if (w.filename and any(f"{os.sep}{lib}{os.sep}" in w.filename
                                                        for lib in ("numpy", "torch", "scipy")))
              or issubclass(w.category, RuntimeWarning)]
    if leaked:
        return "raw", f"warning leaked: {leaked[0].category.__name__}: {str(leaked[0].message)[:200]}"
    if probe.error is not None:
        if isinstance(probe.error, type) and issubclass(probe.error, SystemExit) and isinstance(result, SystemExit):
            return "clear", f"SystemExit {result.code}"
        return "silent", f"no error; returned {type(result).__name__}"
    if probe.check is not None and not probe.check(result):
        return "silent", f"the result failed its check: {str(result)[:200]}"
    return "ok", ""


# ------------------------------------------------------------------------------------------------
# the pieces the probes use
# ------------------------------------------------------------------------------------------------
class NAType:
    """Stands for pandas' ``pd.NA`` (pandas is not a dependency)."""

    def __float__(self):
        raise TypeError("float() argument must be a string or a real number, not 'NAType'")


class NaNInTraining(MLPEncoder):
    def forward(self, x):
        h = super().forward(x)
        return h * float("nan") if self.training else h


class _Enc(nn.Module):
    def __init__(self, input_shape, extra=0, declare=True, as_module=True):
        super().__init__()
        self.lin = nn.Linear(int(np.prod(input_shape)), 6 + extra)
        if declare:
            self.out_features = 6

    def forward(self, x):
        return self.lin(x.flatten(1))


class _MixesRows(_Enc):
    def forward(self, x):
        h = self.lin(x.flatten(1))
        return h - h.mean(0, keepdim=True)


class _Unused(_Enc):
    def __init__(self, input_shape):
        super().__init__(input_shape)
        self.spare = nn.Linear(2, 2)


ARCHS = {
    "p_wide": (lambda s, **k: _Enc(s, extra=1), LinearDecoder),
    "p_undeclared": (lambda s, **k: _Enc(s, declare=False), LinearDecoder),
    "p_not_module": (lambda s, **k: object(), LinearDecoder),
    "p_flat": (_Enc, lambda d, s, **k: LinearDecoder(d, (int(np.prod(s)),))),
    "p_transposed": (_Enc, lambda d, s, **k: LinearDecoder(d, tuple(reversed(s)))),
    "p_too_long": (_Enc, lambda d, s, **k: LinearDecoder(d, (int(np.prod(s)) + 1,))),
    "p_nan": (NaNInTraining, MLPDecoder),
}


class ProbePlugin:
    @hookimpl
    def mcgen_register_architectures(self, register):
        for name, (enc, dec) in ARCHS.items():
            register(name, enc, dec, kinds=("vector", "sequence"))

    @hookimpl
    def mcgen_register_datasets(self, register):
        register("p_none", lambda **kw: None)
        register("p_list", lambda **kw: [np.zeros((3, 2))])
        register("p_no_info", lambda **kw: (Components([np.zeros((3, 2))]), None))


class _NoArg:
    @hookimpl
    def mcgen_register_metrics(self):
        pass


class _Returns:
    @hookimpl
    def mcgen_register_metrics(self, register):
        return [("m", lambda g, r: 0.0)]


class _Raises:
    @hookimpl
    def mcgen_register_metrics(self, register):
        raise KeyError("boom")


BROKEN_SOURCES = {
    "import": "import mcgen_probe_no_such_module\n",
    "raises": """
        from mcgen.plugins import hookimpl

        @hookimpl
        def mcgen_register_datasets(register):
            register("probe_raises_ds", dict)
            raise RuntimeError("plugin bug")
    """,
    "returns": """
        from mcgen.plugins import hookimpl

        @hookimpl
        def mcgen_register_datasets(register):
            return [("probe_returns_ds", dict)]
    """,
    "noarg": """
        from mcgen.plugins import hookimpl

        @hookimpl
        def mcgen_register_datasets():
            pass
    """,
    "clash": """
        from mcgen.plugins import hookimpl

        @hookimpl
        def mcgen_register_datasets(register):
            register("probe_clash_own", dict)
            register("copula", dict)
    """,
    "typo": """
        from mcgen.plugins import hookimpl

        @hookimpl
        def mcgen_register_dataset(register):
            register("probe_typo", dict)
    """,
}


def _install_broken(root: Path) -> None:
    for kind, source in BROKEN_SOURCES.items():
        info = root / f"probe-{kind}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: probe-{kind}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[mcgen]\nprobe-{kind} = mcgen_probe_{kind}\n")
        (root / f"mcgen_probe_{kind}.py").write_text(textwrap.dedent(source))


def _tamper(path: Path, change) -> Path:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


def _bump_first_weight(payload):
    key = sorted(payload["state_dict"])[0]
    payload["state_dict"][key] = payload["state_dict"][key] + 1e-3


def _failing_torch_save(code):
    def save(obj, f, *a, **k):
        raise OSError(code, os.strerror(code), getattr(f, "name", "tmp"))
    return save


class _Evil:
    def __reduce__(self):
        return (print, ("ran",))


# ------------------------------------------------------------------------------------------------
# the fixed probes
# ------------------------------------------------------------------------------------------------
def build_probes(env: dict) -> list[Probe]:
    X, A, fitted, tmp = env["X"], env["A"], env["fitted"], env["tmp"]
    P: list[Probe] = []

    # item 1: plugins (six broken installed plugins, a good registry around them)
    P += [
        Probe(1, "registries with 6 broken plugins", lambda: get_registries(),
              check=lambda r: len(r.broken) == 6 and "mlp" in r.architectures),
        Probe(1, "load_dataset('copula') beside broken plugins", lambda: load_dataset("copula", n_samples=5),
              check=lambda r: r[0].n_components == 4),
        Probe(1, "mcgen plugins lists the broken ones", lambda: cli_main(["plugins"]), check=lambda rc: rc == 1),
        Probe(1, "name of a plugin whose hook raised", lambda: load_dataset("probe_raises_ds"), PluginBrokenError,
              r"comes from the plugin 'probe-raises' \(probe-raises 1.0\), which is broken.*RuntimeError: plugin bug"),
        Probe(1, "name of a clashing plugin", lambda: load_dataset("probe_clash_own"), PluginBrokenError,
              r"plugin 'probe-clash'.*registered twice"),
        Probe(1, "name returned instead of registered", lambda: load_dataset("probe_returns_ds"), ValueError,
              r"unknown dataset 'probe_returns_ds'.*broken plugin.*probe-returns.*returned a list instead of calling "
              r"register"),
        Probe(1, "unknown name lists broken plugins", lambda: load_dataset("nope"), ValueError,
              r"it may come from a broken plugin that was skipped: .*probe-import.*ModuleNotFoundError"),
        Probe(1, "in-process hook without register", lambda: register_plugin(_NoArg(), name="p-noarg"),
              PluginSignatureError, "without the `register` argument"),
        Probe(1, "in-process hook returning registrations", lambda: register_plugin(_Returns(), name="p-ret"),
              PluginSignatureError, "returned a list instead of calling register"),
        Probe(1, "in-process hook that raises", lambda: register_plugin(_Raises(), name="p-raise"), PluginError,
              r"plugin 'p-raise' \(registered in-process\): its hook mcgen_register_metrics raised KeyError"),
    ]

    # item 2: the architecture and dataset contract
    def fit_with(arch, shape, cls=gmrf):
        rng = np.random.default_rng(0)
        data = Components([rng.standard_normal((20, *shape)) for _ in range(2)])
        return lambda: cls(encoder=arch, decoder=arch, encoder_kwargs={}, decoder_kwargs={}, max_epochs=1).fit(data)

    where = r"architecture '{}' of plugin 'probes' \(registered in-process\), {} of component 0"
    P += [
        Probe(2, "encoder wider than out_features (gmrf)", fit_with("p_wide", (3,)), PluginContractError,
              where.format("p_wide", "encoder") + r".*returned shape \(2, 7\), but it declares out_features=6"),
        Probe(2, "encoder wider than out_features (mopoe)", fit_with("p_wide", (3,), FACTORIES["mopoe"]),
              PluginContractError, where.format("p_wide", "encoder")),
        Probe(2, "encoder without out_features", fit_with("p_undeclared", (3,)), PluginContractError,
              "positive integer attribute `out_features`"),
        Probe(2, "encoder factory returning no module", fit_with("p_not_module", (3,)), PluginContractError,
              "returned a object, not a torch.nn.Module"),
        Probe(2, "decoder (B, 16) for (1, 16)", fit_with("p_flat", (1, 16)), PluginContractError,
              where.format("p_flat", "decoder") + r".*returned shape \(2, 16\)"),
        Probe(2, "decoder (B, 16, 1) for (1, 16)", fit_with("p_transposed", (1, 16)), PluginContractError,
              where.format("p_transposed", "decoder") + r".*returned shape \(2, 16, 1\)"),
        Probe(2, "decoder one value too long", fit_with("p_too_long", (16,)), PluginContractError,
              r"returned shape \(2, 17\)"),
        Probe(2, "loader returning None", lambda: load_dataset("p_none"), PluginContractError,
              r"dataset 'p_none' of plugin 'probes'.*returned NoneType"),
        Probe(2, "loader returning a list", lambda: load_dataset("p_list"), PluginContractError, "returned list"),
        Probe(2, "loader returning no info dict", lambda: load_dataset("p_no_info"), PluginContractError,
              "NoneType as the info"),
        Probe(2, "check_architecture: rows mixed",
              lambda: check_architecture((_MixesRows, LinearDecoder), [(4,)], fit=False),
              PluginContractError, "rows must be processed independently"),
        Probe(2, "check_architecture: unused parameter", lambda: check_architecture((_Unused, LinearDecoder), [(4,)],
                                                                                   fit=False),
              PluginContractError, r"\['spare.weight', 'spare.bias'\] receive no gradient"),
        Probe(2, "check_architecture: a good one", lambda: check_architecture("mlp", [(3,)], fit=False,
                                                                             encoder_kwargs={"hidden": (4,)},
                                                                             decoder_kwargs={"hidden": (4,)})),
    ]

    # item 3: divergence
    diverged = r"at epoch \d+, batch \d+.*smaller learning rate"
    P += [Probe(3, "lr=1e6, default GMRF", lambda: mcgen.GMRFMultiComponentVAE(lr=1e6, max_epochs=2,
                                                                                random_state=0).fit(X),
                TrainingDivergedError, diverged)]
    for name, factory in sorted(FACTORIES.items()):
        P += [Probe(3, f"lr=1e6, {name}", lambda f=factory: f(lr=1e6, max_epochs=3, batch_size=50).fit(X),
                    TrainingDivergedError, diverged),
              Probe(3, f"encoder outputs NaN, {name}",
                    lambda f=factory: f(encoder="p_nan", encoder_kwargs={"hidden": (8,)}).fit(X),
                    TrainingDivergedError, diverged)]
    huge = [a.astype(np.float64) for a in A]
    huge[1][3, 0] = 1e40
    P += [
        Probe(3, "1e40 at fit", lambda: gmrf().fit(huge), ValueError,
              r"component 1 holds 1 value beyond float32's range"),
        Probe(3, "1e40 at transform", lambda: fitted.transform(huge), ValueError,
              r"component 1 holds 1 value beyond float32's range"),
    ]

    # item 4: resume with other data
    ck = tmp / "ck"
    gmrf(max_epochs=1, checkpoint_dir=ck).fit(X)

    def resume(arrays):
        return lambda: gmrf(max_epochs=2, checkpoint_dir=ck).fit(arrays, resume=True)

    other = r"written for other data: the SHA-256 of the training data differs"
    changed = [a.copy() for a in A]
    changed[0][0, 0] += 0.5
    P += [
        Probe(4, "resume on reversed rows", resume([a[::-1] for a in A]), PersistenceError, other),
        Probe(4, "resume on A * 2", resume([a * 2 for a in A]), PersistenceError, other),
        Probe(4, "resume on another draw", resume(load_dataset("copula", n_samples=len(X), random_state=9)[0]),
              PersistenceError, other),
        Probe(4, "resume on one changed value", resume(changed), PersistenceError, other),
        Probe(4, "resume on fewer rows", resume([a[:-1] for a in A]), PersistenceError, "other data"),
        Probe(4, "resume on the same data says so", lambda: _resume_said(ck, X), check=bool),
    ]

    # item 5: persistence
    saved = tmp / "m.mcgen"
    fitted.save(saved)
    (tmp / "a_file").write_text("x")
    (tmp / "a_folder").mkdir()
    evil = tmp / "evil.mcgen"
    torch.save({"kind": "mcgen-estimator", "x": _Evil()}, evil)
    noise = tmp / "noise.mcgen"
    noise.write_bytes(os.urandom(200))
    tampered = tmp / "t.mcgen"
    fitted.save(tampered)
    _tamper(tampered, _bump_first_weight)
    ck2 = tmp / "ck2"
    mvae(max_epochs=1, checkpoint_dir=ck2).fit(X)
    _tamper(ck2 / "checkpoint.pt", _bump_first_weight)
    P += [
        Probe(5, "save into a missing folder", lambda: fitted.save("/nonexistent_dir_probe/m.mcgen"),
              FileNotFoundError, "the folder /nonexistent_dir_probe does not exist; create it first"),
        Probe(5, "no folder was created", lambda: Path("/nonexistent_dir_probe").exists(), check=lambda e: not e),
        Probe(5, "save below a file", lambda: fitted.save(tmp / "a_file" / "m.mcgen"), NotADirectoryError,
              "is not a folder"),
        Probe(5, "save onto a folder", lambda: fitted.save(tmp / "a_folder"), IsADirectoryError,
              rf"cannot save to {re.escape(str(tmp / 'a_folder'))}: it is a folder"),
        Probe(5, "disk full names the user's path", lambda: _with_failing_save(fitted, tmp / "full.mcgen",
                                                                               errno.ENOSPC),
              OSError, rf"cannot write {re.escape(str(tmp / 'full.mcgen'))}: No space left"),
        Probe(5, "read-only names the user's path", lambda: _with_failing_save(fitted, tmp / "ro.mcgen", errno.EACCES),
              PermissionError, rf"cannot write {re.escape(str(tmp / 'ro.mcgen'))}: Permission denied"),
        Probe(5, "a file holding pickled code", lambda: mcgen.load(evil), PersistenceError,
              r"not a safe mcgen file: it holds pickled Python objects \(the first refused: print\)(?!.*weights_only)"),
        Probe(5, "random bytes", lambda: mcgen.load(noise), PersistenceError, "is not an mcgen file"),
        Probe(5, "a missing file", lambda: mcgen.load(tmp / "absent.mcgen"), FileNotFoundError, "absent.mcgen"),
        Probe(5, "tampered weights", lambda: mcgen.load(tampered), PersistenceError,
              "the weights do not match the SHA-256"),
        Probe(5, "tampered checkpoint", lambda: mvae(max_epochs=2, checkpoint_dir=ck2).fit(X, resume=True),
              PersistenceError, "the weights do not match the SHA-256"),
        Probe(5, "an intact file loads", lambda: mcgen.load(saved), check=lambda e: hasattr(e, "net_")),
    ]

    # item 6: the command line
    def cli(*argv):
        return lambda: cli_main(list(argv))

    P += [Probe(6, f"mcgen {' '.join(a)}", cli(*a), SystemExit, "") for a in (
        ("demo", "--epochs", "-1"), ("demo", "--epochs", "0"), ("demo", "--n-samples", "0"),
        ("demo", "--n-test", "1"), ("demo", "--seed", "-1"), ("demo", "--threads", "-3"),
        ("demo", "--verbose", "-2"), ("demo", "--plot", "/nonexistent_dir_probe/p.png"),
        ("demo", "--plot", str(tmp / "p.txt")), ("demo", "--plot", str(tmp)), ("demo", "--epochs", "x"))]
    P += [
        Probe(6, "mcgen --version", cli("--version"), SystemExit, ""),
        Probe(6, "mcgen demo --metrics nope", cli("demo", "--metrics", "nope", "--plot", ""), check=lambda rc: rc == 2),
        Probe(6, "every option has help", lambda: _options_without_help(), check=lambda missing: missing == []),
    ]

    # item 7: inputs
    def fit_comp1(value):
        arrays = list(A)
        arrays[1] = value
        return lambda: gmrf().fit(arrays)

    try:  # pandas is in the test extra; the stand-in keeps the probe where it is not installed
        import pandas as pd

        na = pd.DataFrame(A[1]).astype("Float64")
        na.iloc[2, 0] = pd.NA
    except ImportError:
        na = A[1].astype(object)
        na[2, 0] = NAType()
    none = A[1].astype(object)
    none[0, 1] = None
    const = [a.copy() for a in A]
    const[2][:, 1] = 3.0
    P += [
        Probe(7, "scipy csr_matrix", fit_comp1(sparse.csr_matrix(A[1])), DataTypeError, "component 1 .*densify it"),
        Probe(7, "scipy csr_array", fit_comp1(sparse.csr_array(A[1])), DataTypeError, "component 1 .*densify it"),
        Probe(7, "torch sparse tensor", fit_comp1(torch.tensor(A[1]).to_sparse()), DataTypeError, "densify it"),
        Probe(7, "pandas NA", fit_comp1(na), ValueError, r"component 1 has 1 missing value \(pandas NA or None\)"),
        Probe(7, "None in an object array", fit_comp1(none), ValueError,  # NumPy reads None as NaN
              r"component 1 is NaN in part of row 0: a component is either observed in full or missing"),
        Probe(7, "a component NaN throughout a row (missing)",
              fit_comp1(np.where(np.arange(len(A[1]))[:, None] == 0, np.nan, A[1])),
              check=lambda e: np.isfinite(e.predict_missing([a[:1] for a in A[:1]] +
                                                            [np.full_like(A[1][:1], np.nan)] +
                                                            [a[:1] for a in A[2:]])[1]).all()),
        Probe(7, "NaN in part of a component", fit_comp1(np.where(np.arange(len(A[1]))[:, None] == 5,
                                                                  [[np.nan, 0.0]], A[1])),
              ValueError, r"component 1 is NaN in part of row 5"),
        Probe(7, "a row with every component NaN",
              lambda: gmrf(max_epochs=1).fit([np.where(np.arange(len(a))[:, None] == 4, np.nan, a) for a in A]),
              ValueError, r"row 4 has no observed component"),
        Probe(7, "one 2-D array is one component", lambda: gmrf(max_epochs=1).fit(A[0]),
              check=lambda e: e.n_components_ == 1),
        Probe(7, "GridSearchCV over a list of 3", lambda: GridSearchCV(gmrf(max_epochs=1), {"beta": [0.1, 1]}, cv=2,
                                                                       error_score="raise").fit(list(A[:3])),
              ValueError, r"wrap it: mcgen.Components"),
        Probe(7, "GridSearchCV over a list of 4", lambda: GridSearchCV(gmrf(max_epochs=1), {"beta": [0.1, 1]}, cv=2,
                                                                       error_score="raise").fit(list(A)),
              ValueError, r"wrap it: mcgen.Components"),
        Probe(7, "wrong number of components", lambda: fitted.transform(list(A[:2])), ValueError,
              r"X has 2 components .*wrap the list in mcgen.Components(?!.*pass a list)"),
        Probe(7, "neg_dependency_error on a constant column",
              lambda: mcgen.scoring.neg_dependency_error(fitted, Components(const)), check=np.isfinite),
        Probe(7, "one output dtype per component", lambda: _dtypes(A),
              check=lambda d: d == [np.float64, np.float32, np.float32, np.float64]),
    ]

    # item 8: threads
    P += [
        Probe(8, "n_threads=0", lambda: gmrf(n_threads=0).fit(X), InvalidParameterError, "'n_threads' parameter"),
        Probe(8, "n_threads='many'", lambda: gmrf(n_threads="many").fit(X), InvalidParameterError,
              "'n_threads' parameter"),
        Probe(8, "one torch thread per joblib worker thread", lambda: _threads_in_workers(X),
              check=lambda seen: seen == [1, 1]),
    ]

    # item 9: self-contained tests
    P += [Probe(9, "no test reads a data folder outside the repository", _tests_reading_outside,
                check=lambda found: found == [])]
    return P


def _resume_said(ck: Path, X) -> bool:
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("mcgen")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        gmrf(max_epochs=2, checkpoint_dir=ck).fit(X, resume=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    return any("resuming from the checkpoint" in r.getMessage() for r in records)


def _with_failing_save(est, path, code):
    real = torch.save
    torch.save = _failing_torch_save(code)
    try:
        est.save(path)
    finally:
        torch.save = real


def _options_without_help() -> list[str]:
    import argparse

    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.option_strings and not action.help:
                missing.append(f"{path} {action.option_strings[0]}")

    walk(build_parser(), "mcgen")
    return missing


def _dtypes(A) -> list:
    data = [A[0].astype(np.float64), A[1].astype(np.float32), (A[2] * 10).astype(np.int32), A[3].astype(np.float64)]
    est = gmrf(max_epochs=1).fit(data)
    return [o.dtype for o in est.predict_missing([data[1]], known=[1])]


def _threads_in_workers(X) -> list[int]:
    from skorch.callbacks import Callback

    class Threads(Callback):
        def on_epoch_end(self, net, **kw):
            net.history.record("t", torch.get_num_threads())

    def one():
        return mvae(max_epochs=1, callbacks=[Threads()]).fit(X).history_[-1, "t"]

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return Parallel(n_jobs=2, backend="threading")(delayed(one)() for _ in range(2))
    finally:
        torch.set_num_threads(before)


def _tests_reading_outside() -> list[str]:
    pattern = re.compile(r"""parents\[2\]|["']shared["']\s*/\s*["']data["']|\.\./shared|MCGEN_DATA["']\]""")
    found = []
    for path in sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "plugins").glob("*/tests/*.py")):
        if path.name == Path(__file__).name:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    return found


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probes")
    site = tmp / "site"
    site.mkdir()
    _install_broken(site)
    sys.path.insert(0, str(site))
    before_env = os.environ.pop(DISABLE_AUTOLOAD_ENV, None)
    reset_plugins()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the broken plugins' one warning
            get_registries()
            register_plugin(ProbePlugin(), name="probes")
        X = load_dataset("copula", n_samples=100, random_state=0)[0]
        env = {"X": X, "A": list(X.arrays), "fitted": mvae(max_epochs=1).fit(X), "tmp": tmp}
        results = []
        for probe in build_probes(env):
            outcome, detail = classify(probe)
            results.append((probe, outcome, detail))
        yield results
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith("mcgen_probe_")]:
            del sys.modules[name]
        if before_env is not None:
            os.environ[DISABLE_AUTOLOAD_ENV] = before_env
        reset_plugins()


def counts(results) -> dict[str, int]:
    out = {"tried": len(results), "clear": 0, "ok": 0, "silent": 0, "raw": 0, "unclear": 0}
    for _, outcome, _ in results:
        out[outcome] += 1
    return out


def test_every_probe_gives_its_expected_outcome(outcomes):
    bad = [f"item {p.item} {p.name}: {o} ({d})" for p, o, d in outcomes if o not in ("clear", "ok")]
    assert not bad, "\n".join(bad)
    assert {p.item for p, _, _ in outcomes} == set(range(1, 10))


def test_the_counts_in_docs_reliability_md_are_the_measured_ones(outcomes):
    c = counts(outcomes)
    text = RELIABILITY.read_text()
    stated = dict(re.findall(r"\| (probes tried|clear errors|documented results|silent results|raw tracebacks"
                             r"[^|]*|unclear errors) \| (\d+) \|", text))
    assert stated, "docs/reliability.md has no probe counts table"
    measured = {"probes tried": c["tried"], "clear errors": c["clear"], "documented results": c["ok"],
                "silent results": c["silent"], "unclear errors": c["unclear"]}
    raw_key = next(k for k in stated if k.startswith("raw tracebacks"))
    assert {k: int(v) for k, v in stated.items()} == {**measured, raw_key: c["raw"]}
    per_item = dict(re.findall(r"\| item (\d) [^|]*\| (\d+) \|", text))
    assert {int(k): int(v) for k, v in per_item.items()} == {
        i: sum(p.item == i for p, _, _ in outcomes) for i in range(1, 10)}


def test_report(outcomes, capsys):
    """Prints the table (``pytest -s tests/test_probes.py::test_report``)."""
    for p, o, d in outcomes:
        print(f"{p.item} {o:7s} {p.name:50s} {d[:110]}")
    print(json.dumps(counts(outcomes)))


# ------------------------------------------------------------------------------------------------
# property-based probes (hypothesis): the large input spaces
# ------------------------------------------------------------------------------------------------
FAST = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def data():
    X = load_dataset("copula", n_samples=60, random_state=0)[0]
    return X, mvae(max_epochs=1).fit(X)


BAD_VALUES = {
    "nan": (lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, np.nan, a), ValueError, "NaN"),
    "inf": (lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, -np.inf, a), ValueError, "infinite"),
    "huge": (lambda a: np.where(np.arange(a.size).reshape(a.shape) == 1, 3e39, a), ValueError, "float32's range"),
    "na": (lambda a: np.where(np.arange(a.size).reshape(a.shape) == 2, NAType(), a.astype(object)), ValueError,
           "missing value"),
    "sparse": (lambda a: sparse.csr_matrix(a), DataTypeError, "densify it"),
    "torch_sparse": (lambda a: torch.tensor(a).to_sparse(), DataTypeError, "densify it"),
    "complex": (lambda a: a + 1j, DataTypeError, "complex"),
    "text": (lambda a: a.astype(str), DataTypeError, "non-numeric"),
}


@FAST
@given(kind=st.sampled_from(sorted(BAD_VALUES)), component=st.integers(0, 3),
       method=st.sampled_from(["fit", "transform", "score_samples", "predict_missing"]))
def test_property_a_bad_component_is_named_with_what_is_wrong(data, kind, component, method):
    X, est = data
    change, error, what = BAD_VALUES[kind]
    arrays = [a.astype(np.float64) for a in X.arrays]
    arrays[component] = change(arrays[component])
    calls = {"fit": lambda: mvae(max_epochs=1).fit(arrays), "transform": lambda: est.transform(arrays),
             "score_samples": lambda: est.score_samples(arrays),
             "predict_missing": lambda: est.predict_missing([arrays[component]], known=[component])}
    with pytest.raises(error, match=rf"component {component} .*{what}"):
        calls[method]()


INT_OPTIONS = {"--epochs": 1, "--n-samples": 2, "--n-test": 2, "--seed": 0, "--threads": 0, "--verbose": 0}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(option=st.sampled_from(sorted(INT_OPTIONS)), value=st.integers(-10**6, 10**6))
def test_property_cli_integers_are_accepted_or_refused_by_argparse(option, value):
    parser = build_parser()
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(["demo", option, str(value)])
    except SystemExit as exc:
        assert exc.code == 2 and f"argument {option}: must be at least {INT_OPTIONS[option]}" in err.getvalue()
        assert value < INT_OPTIONS[option]
    else:
        assert value >= INT_OPTIONS[option] and getattr(args, option[2:].replace("-", "_")) == value


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    X = load_dataset("copula", n_samples=50, random_state=0)[0]
    ck = tmp_path_factory.mktemp("ck")
    gmrf(max_epochs=1, checkpoint_dir=ck).fit(X)
    return X, ck


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(["permute", "scale", "shift", "cell"]), seed=st.integers(0, 2**16))
def test_property_resume_refuses_any_other_data(checkpoint, how, seed):
    X, ck = checkpoint
    rng = np.random.default_rng(seed)
    arrays = [a.copy() for a in X.arrays]
    if how == "permute":
        order = rng.permutation(len(X))
        if (order == np.arange(len(X))).all():
            order = order[::-1]
        arrays = [a[order] for a in arrays]
    elif how == "scale":
        arrays = [a * float(rng.choice([0.5, 2.0, -1.0, 1.001])) for a in arrays]
    elif how == "shift":
        arrays[int(rng.integers(4))] += 0.25
    else:
        c, r, f = int(rng.integers(4)), int(rng.integers(len(X))), int(rng.integers(2))
        arrays[c][r, f] += 1.0
    with pytest.raises(PersistenceError, match="written for other data"):
        gmrf(max_epochs=2, checkpoint_dir=ck).fit(arrays, resume=True)


@pytest.fixture(scope="module")
def saved_file(tmp_path_factory):
    X = load_dataset("copula", n_samples=40, random_state=0)[0]
    path = tmp_path_factory.mktemp("saved") / "m.mcgen"
    gmrf(max_epochs=1).fit(X).save(path)
    return path


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 10**6), where=st.integers(0, 10**6), delta=st.sampled_from([1e-6, -0.5, 3.0]))
def test_property_any_changed_weight_is_refused(saved_file, tmp_path_factory, which, where, delta):
    payload = torch.load(saved_file, weights_only=True)
    keys = [k for k, v in sorted(payload["state_dict"].items()) if v.is_floating_point() and v.numel()]
    key = keys[which % len(keys)]
    t = payload["state_dict"][key].clone().reshape(-1)
    t[where % t.numel()] += delta
    payload["state_dict"][key] = t.reshape(payload["state_dict"][key].shape)
    path = tmp_path_factory.mktemp("t") / "m.mcgen"
    torch.save(payload, path)
    with pytest.raises(PersistenceError, match="the weights do not match the SHA-256"):
        mcgen.load(path)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
       out=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple))
def test_property_a_decoder_of_any_other_shape_is_refused_at_build(shape, out):
    from mcgen.plugins.contract import check_decoder

    module = LinearDecoder(3, out)
    if out == shape:
        check_decoder(module, 3, shape)
    else:
        with pytest.raises(PluginContractError, match=rf"decoder returned shape \(2, {', '.join(map(str, out))},?\)"):
            check_decoder(module, 3, shape, "decoder of component 0")

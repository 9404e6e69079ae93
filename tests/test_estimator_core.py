"""The estimator core: parameters declared once, failed fits that change nothing, likelihood
instances, renamed parameters, the exceptions module and the "auto" architecture choice."""

from __future__ import annotations

import ast
import inspect
import json
import re

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from torch import nn

import mcgen
from mcgen import GMRFMultiComponentVAE, MultiComponentVAE, load_dataset
from mcgen.base import SHARED_PARAMETER_DOCS
from mcgen.likelihoods import GaussianLikelihood
from mcgen.plugins import DISABLE_AUTOLOAD_ENV, hookimpl, register_plugin, reset_plugins, unregister_plugin
from tests._factories import FACTORIES, LinearDecoder, LinearEncoder, gmrf

torch.set_num_threads(1)

ESTIMATORS = [mcgen.GMRFMultiComponentVAE, mcgen.MVAE, mcgen.MMVAE, mcgen.MoPoEVAE, mcgen.MMVAEPlus]


@pytest.fixture(scope="module")
def X():
    return load_dataset("copula", n_samples=64, random_state=0)[0]


def _fitted_snapshot(est):
    """Every fitted attribute, the weights and a sample: what a failed fit must not change."""
    attrs = {k: v for k, v in vars(est).items() if k.endswith("_")}
    weights = {k: v.clone() for k, v in est.module_.state_dict().items()}
    return attrs, weights, est.sample(5, random_state=0)


def _assert_unchanged(est, snapshot):
    attrs, weights, samples = snapshot
    now = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert now.keys() == attrs.keys()
    assert all(now[k] is attrs[k] or now[k] == attrs[k] for k in attrs)
    for k, v in est.module_.state_dict().items():
        assert torch.equal(v, weights[k]), k
    for a, b in zip(est.sample(5, random_state=0), samples):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# a failed fit leaves a fitted estimator exactly as it was
# ------------------------------------------------------------------------------------------------
def test_failed_fit_on_an_invalid_parameter_keeps_the_fitted_model(X):
    """The reproduced bug: fitted attributes were set before the model module validated."""
    est = gmrf(max_epochs=1).fit(X)
    snapshot = _fitted_snapshot(est)
    est.set_params(covariance="bogus")
    with pytest.raises(ValueError, match="'covariance' parameter"):
        est.fit(X.arrays[:2])
    assert est.n_components_ == 4
    assert [a.shape for a in est.sample(3, random_state=0)] == [(3, 2)] * 4
    _assert_unchanged(est, snapshot)


class _Boom(Callback):
    def on_epoch_end(self, net, **kwargs):
        raise RuntimeError("boom at the end of the first epoch")


class _RaisingEncoder(nn.Module):
    def __init__(self, input_shape, **kwargs):
        raise ValueError("this encoder refuses every shape")


class _Refuser:
    @hookimpl
    def mcgen_register_architectures(self, register):
        register("refuser", _RaisingEncoder, _RaisingEncoder)


@pytest.mark.parametrize("failure", ["data", "module", "architecture", "training"])
def test_failed_fit_at_any_stage_keeps_the_fitted_model(failure, X, monkeypatch):
    est = gmrf(max_epochs=1).fit(X)
    snapshot = _fitted_snapshot(est)
    two = list(X.arrays[:2])
    if failure == "data":  # data-dependent check of the likelihood
        est.set_params(likelihood="bernoulli")
        call, match = (lambda: est.fit([two[0] * 5, two[1]])), "outside \\[0, 1\\]"
    elif failure == "module":  # raised while the torch module is built
        monkeypatch.setattr(type(est), "_build_module", lambda self, specs: (_ for _ in ()).throw(
            ValueError("the module refuses")))
        call, match = (lambda: est.fit(two)), "the module refuses"
    elif failure == "architecture":
        monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
        reset_plugins()
        register_plugin(_Refuser(), name="refuser-plugin")
        est.set_params(encoder="refuser")
        call, match = (lambda: est.fit(two)), "refuses every shape"
    else:  # training itself fails after an epoch
        est.set_params(callbacks=[_Boom()])
        call, match = (lambda: est.fit(two)), "boom"
    try:
        with pytest.raises((ValueError, RuntimeError), match=match):
            call()
    finally:
        reset_plugins()
    _assert_unchanged(est, snapshot)


def test_failed_partial_fit_validation_keeps_the_model(X):
    est = gmrf(max_epochs=1).fit(X)
    snapshot = _fitted_snapshot(est)
    with pytest.raises(ValueError, match="X has 2 components but the estimator was fitted with 4"):
        est.partial_fit(X.arrays[:2])
    with pytest.raises(ValueError, match="epochs == 0, must be >= 1"):
        est.partial_fit(X, epochs=0)
    _assert_unchanged(est, snapshot)


# ------------------------------------------------------------------------------------------------
# parameters declared once
# ------------------------------------------------------------------------------------------------
SHARED = [name for name in inspect.signature(MultiComponentVAE.__init__).parameters if name != "self"]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_estimator_has_every_shared_parameter_documented_with_its_default(cls):
    params = cls().get_params()
    assert set(SHARED) <= set(params)
    assert set(cls._parameter_constraints) == set(params)  # one constraint per parameter
    signature = inspect.signature(cls)
    doc = cls.__doc__
    for name in params:
        entry = re.search(rf"^    {name} : (.*), default=(.*)$", doc, re.M)
        assert entry, f"{cls.__name__} does not document {name}"
        assert ast.literal_eval(entry.group(2)) == signature.parameters[name].default, name
    assert "[shared parameters]" not in doc


def test_shared_parameter_table_is_complete():
    assert list(SHARED_PARAMETER_DOCS) == SHARED


def test_a_subclass_lists_only_its_own_parameters_and_changed_defaults():
    class Tiny(mcgen.MVAE):
        """A user subclass (its docstring has no shared-parameter line: nothing is inserted)."""

        def __init__(self, latent_dim=5, *, width=3, **shared):
            super().__init__(latent_dim, **shared)
            self.width = width

    params = Tiny().get_params()
    assert params["latent_dim"] == 5 and params["width"] == 3 and params["max_epochs"] == 200
    assert set(mcgen.MVAE().get_params()) | {"width"} == set(params)
    est = Tiny(beta=0.5, width=4)
    assert (est.beta, est.width) == (0.5, 4)
    from sklearn.base import clone

    assert clone(est).get_params() == est.get_params()
    with pytest.raises(TypeError, match="unexpected keyword argument 'valid_fraction'"):
        Tiny(valid_fraction=0.1)


def test_a_public_estimator_docstring_without_the_shared_parameter_line_fails_loudly():
    with pytest.raises(TypeError, match=r"must hold the line '\[shared parameters\]' exactly once \(found 0\)"):
        type("Broken", (MultiComponentVAE,), {"__module__": "mcgen.estimators.broken",
                                               "__doc__": "Parameters\n    ----------\n"})
    with pytest.raises(TypeError, match="rewords unknown parameters"):
        type("Broken2", (MultiComponentVAE,), {"__module__": "mcgen.estimators.broken",
                                                "__doc__": "    [shared parameters]\n",
                                                "_shared_parameter_docs": {"latnt_dim": ("int", "typo")}})


# ------------------------------------------------------------------------------------------------
# renamed parameters: old saved files load under the new names
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,old,new,value", [
    ("gmrf", "valid_fraction", "validation_fraction", 0.25),
    ("gmrf", "patience", "n_iter_no_change", 3),
    ("mmvae", "llik_scaling", "llik_scale", [1.0, 2.0, 1.0, 1.0]),
    ("mvae", "n_subsets", "n_random_subsets", 0),
])
def test_files_saved_with_old_parameter_names_load(name, old, new, value, X, tmp_path):
    est = FACTORIES[name](max_epochs=1).set_params(**{new: value}).fit(X)
    est.save(tmp_path / "new.mcgen")
    payload = torch.load(tmp_path / "new.mcgen", weights_only=True)
    params = json.loads(payload["params"])
    params[old] = params.pop(new)
    payload["params"] = json.dumps(params)
    torch.save(payload, tmp_path / "old.mcgen")
    loaded = mcgen.load(tmp_path / "old.mcgen")
    assert loaded.get_params()[new] == value and old not in loaded.get_params()
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


# ------------------------------------------------------------------------------------------------
# likelihood instances
# ------------------------------------------------------------------------------------------------
def test_a_likelihood_instance_is_copied_per_component_and_standardised(X):
    """The reproduced bug: one instance was shared by every component (one learned scale for
    all) and silently skipped the standardisation its name gets."""
    scaled = [a * 100.0 + 7.0 for a in X.arrays]
    lik = GaussianLikelihood((2,))
    est = gmrf(max_epochs=2, likelihood=lik).fit(scaled)
    liks = list(est.module_.likelihoods)
    assert all(isinstance(lk, GaussianLikelihood) for lk in liks)
    assert len({id(lk) for lk in liks} | {id(lik)}) == 5  # four copies, none of them the user's
    assert not any(p is q for p in lik.parameters() for lk in liks for q in lk.parameters())
    assert all(m is not None for m in est.standardize_mean_)  # standardised like likelihood="gaussian"
    by_name = gmrf(max_epochs=2, likelihood="gaussian").fit(scaled)
    np.testing.assert_allclose(est.transform(scaled), by_name.transform(scaled), rtol=1e-6, atol=1e-6)
    assert torch.equal(lik.log_scale, torch.zeros(2))  # the user's object was never trained


def test_a_likelihood_instance_of_the_wrong_shape_is_refused(X):
    with pytest.raises(ValueError, match=r"GaussianLikelihood given as likelihood for component 0 has log_scale of "
                                         r"shape \(3,\), which does not fit the component's shape \(2,\)"):
        gmrf(likelihood=GaussianLikelihood((3,))).fit(X)


# ------------------------------------------------------------------------------------------------
# exceptions
# ------------------------------------------------------------------------------------------------
def test_every_exception_class_lives_in_mcgen_exceptions_and_is_exported():
    import mcgen.exceptions as exc_module

    defined = {name for name, obj in vars(exc_module).items()
               if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == exc_module.__name__}
    assert defined == {"ChecksumError", "DataTypeError", "PersistenceError", "PluginBrokenError", "PluginClashError",
                       "PluginContractError", "PluginError", "PluginLoadError", "PluginSignatureError",
                       "TrainingDivergedError"}
    for name in defined:
        assert getattr(mcgen, name) is getattr(exc_module, name)
    # the old import paths keep working
    from mcgen.datasets._fetch import ChecksumError
    from mcgen.persistence import PersistenceError
    from mcgen.plugins import PluginClashError
    from mcgen.training import TrainingDivergedError

    assert (ChecksumError, PersistenceError, PluginClashError, TrainingDivergedError) == (
        mcgen.ChecksumError, mcgen.PersistenceError, mcgen.PluginClashError, mcgen.TrainingDivergedError)
    assert issubclass(mcgen.DataTypeError, TypeError) and issubclass(mcgen.DataTypeError, ValueError)


# ------------------------------------------------------------------------------------------------
# "auto" architectures by declared kinds
# ------------------------------------------------------------------------------------------------


class _Preferred:
    @hookimpl
    def mcgen_register_architectures(self, register):
        register("linear_seq", LinearEncoder, LinearDecoder, kinds=("sequence",))
        register("linear_vec", LinearEncoder, LinearDecoder, kinds=("vector",), priority=5,
                 supports=lambda shape: shape[0] >= 3)


def test_a_plugin_architecture_is_the_automatic_choice_for_the_kinds_it_declares(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    reset_plugins()
    register_plugin(_Preferred(), name="preferred")
    try:
        rng = np.random.default_rng(0)
        X = [rng.standard_normal((16, 2, 5)), rng.standard_normal((16, 3)), rng.standard_normal((16, 2))]
        est = GMRFMultiComponentVAE(max_epochs=1, batch_size=8, offdiag_hidden=8, random_state=0).fit(X)
        # a sequence goes to the only architecture declaring the kind; a 3-vector to the
        # vector architecture that outranks mlp; a 2-vector (not supported by it) to mlp
        assert [type(e).__name__ for e in est.module_.encoders] == ["LinearEncoder", "LinearEncoder", "MLPEncoder"]
        assert [type(d).__name__ for d in est.module_.decoders] == ["LinearDecoder", "LinearDecoder",
                                                                    "MLPDecoder"]
        unregister_plugin("preferred")
        est = GMRFMultiComponentVAE(max_epochs=1, batch_size=8, offdiag_hidden=8, random_state=0).fit(X)
        assert [type(e).__name__ for e in est.module_.encoders] == ["MLPEncoder"] * 3  # sequences fall back
    finally:
        reset_plugins()


def test_a_checkpoint_written_with_old_parameter_names_resumes(X, tmp_path):
    from mcgen.persistence import read_checkpoint, write_checkpoint

    ref = gmrf(max_epochs=3, validation_fraction=0.25, n_iter_no_change=5).fit(X)
    gmrf(max_epochs=2, validation_fraction=0.25, n_iter_no_change=5, checkpoint_dir=tmp_path).fit(X)
    ck = read_checkpoint(tmp_path)
    params = json.loads(ck["params"])
    params["valid_fraction"], params["patience"] = params.pop("validation_fraction"), params.pop("n_iter_no_change")
    ck["params"] = json.dumps(params)
    write_checkpoint(tmp_path, {k: v for k, v in ck.items() if k not in ("format_version", "kind", "mcgen_version")})
    resumed = gmrf(max_epochs=3, validation_fraction=0.25, n_iter_no_change=5, checkpoint_dir=tmp_path)
    resumed.fit(X, resume=True)
    np.testing.assert_allclose(resumed.history_[:, "train_loss"], ref.history_[:, "train_loss"], rtol=1e-6)

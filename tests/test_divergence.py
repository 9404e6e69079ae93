"""Every way training can blow up is a ``TrainingDivergedError`` saying where and what to try,
and values float32 cannot hold are refused at the door (issue 13, item 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mcgen
from mcgen import TrainingDivergedError, load_dataset
from mcgen.architectures.mlp import MLPDecoder, MLPEncoder
from mcgen.plugins import DISABLE_AUTOLOAD_ENV, hookimpl, register_plugin, reset_plugins
from tests._factories import FACTORIES

torch.set_num_threads(1)

WHERE = r"at epoch \d+, batch \d+"
ADVICE = r"smaller learning rate \(lr=.* now\), gradient clipping \(clip_grad_norm=\.\.\.\)"


@pytest.fixture(scope="module")
def X():
    return load_dataset("copula", n_samples=200, random_state=0)[0]


class NaNInTraining(nn.Module):
    """The mlp encoder, whose output is NaN in train mode (finite in eval mode, so the build-time
    contract check passes, as it does for a network that only breaks on real data)."""

    def __init__(self, shape, **kw):
        super().__init__()
        self.inner = MLPEncoder(shape, **kw)
        self.out_features = self.inner.out_features

    def forward(self, x):
        h = self.inner(x)
        return h * float("nan") if self.training else h


class NaNPlugin:
    @hookimpl
    def mcgen_register_architectures(self, register):
        register("nan_in_training", NaNInTraining, MLPDecoder)


@pytest.fixture
def nan_encoder(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    reset_plugins()
    register_plugin(NaNPlugin(), name="nan-plugin")
    yield "nan_in_training"
    reset_plugins()


def test_a_huge_learning_rate_on_the_default_gmrf_is_a_divergence_error(X):
    # before: torch._C._LinAlgError "Cholesky failed for 200 matrices even with relative jitter 0.1"
    est = mcgen.GMRFMultiComponentVAE(lr=1e6, max_epochs=2, random_state=0)
    with pytest.raises(TrainingDivergedError, match=rf"training diverged {WHERE} \(training step\): a latent "
                                                    r"covariance could not be factorised \(Cholesky failed.*\); "
                                                    r"the parameters grew to magnitude .*, so the networks "
                                                    r"produced extreme values. Try a " + ADVICE):
        est.fit(X)
    assert not hasattr(est, "net_")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_huge_learning_rate_is_a_divergence_error_for_every_estimator(name, X):
    with pytest.raises(TrainingDivergedError, match=WHERE + ".*" + ADVICE):
        FACTORIES[name](lr=1e6, max_epochs=3, batch_size=50).fit(X)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_an_encoder_that_outputs_nan_is_a_divergence_error(name, X, nan_encoder):
    with pytest.raises(TrainingDivergedError, match=WHERE + ".*" + ADVICE):
        FACTORIES[name](encoder=nan_encoder, encoder_kwargs={"hidden": (8,)}).fit(X)


def test_the_gmrf_says_the_networks_produced_the_non_finite_values(X, nan_encoder):
    with pytest.raises(TrainingDivergedError, match=r"at epoch 1, batch 1 \(training step\).*the networks produced "
                                                    r"non-finite or extreme values while the parameters are "
                                                    r"moderate .*: check a custom encoder or the data"):
        FACTORIES["gmrf"](encoder=nan_encoder).fit(X)


def test_the_error_carries_no_torch_traceback(X, nan_encoder):
    with pytest.raises(TrainingDivergedError) as info:
        FACTORIES["gmrf"](encoder=nan_encoder).fit(X)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("value", [1e40, -1e39, 3.5e38, np.finfo(np.float64).max])
def test_values_beyond_float32_are_refused_at_the_door_naming_the_component(value, X):
    arrays = [a.astype(np.float64) for a in X.arrays]
    arrays[2][5, 1] = value
    with pytest.raises(ValueError, match=r"component 2 holds 1 value beyond float32's range \(largest magnitude "
                                         r".* > 3.4e\+38\).*rescale the component"):
        FACTORIES["gmrf"]().fit(arrays)
    est = FACTORIES["mvae"]().fit(X)
    with pytest.raises(ValueError, match="component 2 holds 1 value beyond float32's range"):
        est.transform(arrays)
    with pytest.raises(ValueError, match="component 2 holds 1 value beyond float32's range"):
        est.predict_missing([arrays[2]], known=[2])


def test_the_largest_float32_values_are_accepted(X):
    arrays = [a.astype(np.float64) for a in X.arrays]
    arrays[1] = arrays[1] * 1e37  # within float32, standardised to ordinary values
    est = FACTORIES["gmrf"](max_epochs=1).fit(arrays)
    assert np.isfinite(est.sample(3, random_state=0)[1]).all()

"""The plugin's own tests: run with ``python -m pytest plugins/mcgen-sequence/tests``.

They register the plugin module in-process (no installation needed for these), then check the
architecture contract, the dataset's formula and that an estimator uses ``tcn`` by name.
"""

from __future__ import annotations

import mcgen_sequence.plugin
import numpy as np
import pytest
import torch
from mcgen_sequence import TCNDecoder, TCNEncoder, make_oscillators

from mcgen import GMRFMultiComponentVAE
from mcgen.plugins import collect_registries, make_plugin_manager, register_plugin, reset_plugins, unregister_plugin
from mcgen.testing import check_architecture, check_dataset

torch.set_num_threads(1)


@pytest.fixture
def plugin_registered(monkeypatch):
    """The plugin registered in-process, with installed plugins (maybe this one) switched off."""
    monkeypatch.setenv("MCGEN_DISABLE_PLUGIN_AUTOLOAD", "1")
    reset_plugins()
    register_plugin(mcgen_sequence.plugin, name="sequence-under-test")
    yield
    unregister_plugin("sequence-under-test")
    reset_plugins()


def test_hooks_register_tcn_and_oscillators():
    pm = make_plugin_manager(load_entrypoints=False, builtins=False)
    pm.register(mcgen_sequence.plugin, name="sequence")
    regs = collect_registries(pm)
    assert list(regs.architectures) == ["tcn"] and list(regs.datasets) == ["oscillators"]
    assert regs.architectures["tcn"].obj.kinds == ("sequence",)


@pytest.mark.parametrize("shape", [(1, 32), (3, 20), (17,)])
def test_tcn_contract(shape):
    enc = TCNEncoder(shape, channels=8, n_blocks=3, out_features=12)
    dec = TCNDecoder(4, shape, channels=8, n_blocks=3)
    assert enc(torch.randn(5, *shape)).shape == (5, 12) and enc.out_features == 12
    assert dec(torch.randn(5, 4)).shape == (5, *shape)
    dilations = [m.dilation[0] for m in enc.modules() if isinstance(m, torch.nn.Conv1d) and m.kernel_size[0] == 3]
    assert dilations == [1, 1, 2, 2, 4, 4]
    with pytest.raises(ValueError, match="positive odd"):
        TCNEncoder((1, 8), kernel_size=4)
    with pytest.raises(ValueError, match=r"tcn needs sequence components of shape \(channels, length\)"):
        TCNDecoder(2, (1, 8, 8))


def test_oscillators_follow_their_formula():
    X, info = make_oscillators(50, length=40, noise=0.0, waveforms=("sine", "cosine", "square", "triangle"),
                               random_state=3)
    t = np.arange(40) / 40
    theta = 2 * np.pi * info["frequency"][:, None] * t + info["phase"][:, None]
    a = info["amplitude"][:, None]
    np.testing.assert_allclose(X.arrays[0][:, 0], a * np.sin(theta), atol=1e-5)
    np.testing.assert_allclose(X.arrays[1][:, 0], a * np.cos(theta), atol=1e-5)
    np.testing.assert_allclose(X.arrays[2][:, 0], a * np.tanh(3 * np.sin(theta)), atol=1e-5)
    np.testing.assert_allclose(X.arrays[3][:, 0], a * 2 / np.pi * np.arcsin(np.sin(theta)), atol=1e-5)
    assert ((info["frequency"] >= 1) & (info["frequency"] <= 3)).all()
    noisy, _ = make_oscillators(2000, length=8, noise=0.1, random_state=3)
    clean, _ = make_oscillators(2000, length=8, noise=0.0, random_state=3)
    assert 0.09 < (noisy.arrays[0] - clean.arrays[0]).std() < 0.11
    with pytest.raises(ValueError, match="unknown waveform"):
        make_oscillators(5, waveforms=("saw",))


def test_an_estimator_uses_tcn_by_name(plugin_registered):
    from mcgen import load_dataset

    X, _ = load_dataset("oscillators", n_samples=32, length=16)
    small = {"channels": 4, "n_blocks": 2}
    est = GMRFMultiComponentVAE(encoder="tcn", decoder="tcn", encoder_kwargs=small, decoder_kwargs=small,
                                max_epochs=1, batch_size=16, random_state=0).fit(X)
    assert [type(e).__name__ for e in est.net_.module_.encoders] == ["TCNEncoder"] * 3
    assert [a.shape for a in est.sample(2, random_state=0)] == [(2, 1, 16)] * 3


def test_tcn_keeps_mcgens_architecture_contract(plugin_registered):
    """mcgen's own checks: output shapes and out_features, gradients to every parameter, rows
    independent, one epoch of two estimators using it."""
    small = {"channels": 4, "n_blocks": 2}
    checked = check_architecture("tcn", encoder_kwargs=small, decoder_kwargs=small)
    assert checked == [(1, 16), (3, 20)]  # mcgen's default shapes for the declared kind, "sequence"
    check_architecture("tcn", shapes=[(17,), (2, 9)], encoder_kwargs=small, decoder_kwargs=small, fit=False)


def test_oscillators_keep_mcgens_dataset_contract(plugin_registered):
    X, info = check_dataset("oscillators", n_samples=16, length=12)
    assert X.component_shapes == ((1, 12),) * 3

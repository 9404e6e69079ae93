"""The architecture and dataset contract, checked (issue 13, item 2): at build time, before any
training, with errors naming the plugin, the architecture and the component; and
``mcgen.testing`` for plugin authors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import mcgen
from mcgen import Components
from mcgen.exceptions import PluginContractError
from mcgen.plugins import DISABLE_AUTOLOAD_ENV, hookimpl, load_dataset, register_plugin, reset_plugins
from mcgen.testing import check_architecture, check_dataset
from tests._factories import FACTORIES

torch.set_num_threads(1)


class Encoder(nn.Module):
    """A linear encoder; ``extra`` output columns beyond the declared ``out_features``."""

    def __init__(self, input_shape, width=8, extra=0, declare=True):
        super().__init__()
        self.lin = nn.Linear(math.prod(input_shape), width + extra)
        if declare:
            self.out_features = width

    def forward(self, x):
        return self.lin(x.flatten(1))


class Decoder(nn.Module):
    """A linear decoder; ``shape`` overrides the output shape it reshapes to."""

    def __init__(self, latent_dim, output_shape, shape=None, extra=0):
        super().__init__()
        self.shape = tuple(output_shape) if shape is None else tuple(shape)
        self.lin = nn.Linear(latent_dim, math.prod(self.shape) + extra)

    def forward(self, z):
        return self.lin(z).reshape(z.shape[0], -1)[:, :math.prod(self.shape)].reshape(z.shape[0], *self.shape)


class MixesRows(Encoder):
    def forward(self, x):
        h = self.lin(x.flatten(1))
        return h - h.mean(0, keepdim=True)


class UnusedParameter(Encoder):
    def __init__(self, input_shape, width=8):
        super().__init__(input_shape, width)
        self.unused = nn.Linear(2, 2)


def _enc(**kw):
    return lambda shape, **more: Encoder(shape, **kw, **more)


def _dec(**kw):
    return lambda latent, shape, **more: Decoder(latent, shape, **kw, **more)


ARCHITECTURES = {
    "good": (Encoder, Decoder),
    "wide": (_enc(extra=1), Decoder),                       # declares 8, returns 9 columns
    "undeclared": (_enc(declare=False), Decoder),           # no out_features
    "not_a_module": (lambda shape, **kw: "encoder", Decoder),
    "long": (Encoder, _dec(extra=1)),                       # (B, 17) for (16,)... sliced: see below
    "flat": (Encoder, lambda latent, shape, **kw: Decoder(latent, (math.prod(shape),))),
    "transposed": (Encoder, lambda latent, shape, **kw: Decoder(latent, tuple(reversed(shape)))),
}


class ContractPlugin:
    @hookimpl
    def mcgen_register_architectures(self, register):
        for name, (enc, dec) in ARCHITECTURES.items():
            register(f"ct_{name}", enc, dec, kinds=("vector", "sequence"))

    @hookimpl
    def mcgen_register_datasets(self, register):
        register("ct_none", lambda **kw: None)
        register("ct_list", lambda **kw: [np.zeros((3, 2))])
        register("ct_no_info", lambda **kw: (Components([np.zeros((3, 2))]), None))


@pytest.fixture(autouse=True)
def plugin(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    reset_plugins()
    register_plugin(ContractPlugin(), name="contract-test")
    yield
    reset_plugins()


def data(shape, n=24):
    rng = np.random.default_rng(0)
    return Components([rng.standard_normal((n, *shape)).astype(np.float32) for _ in range(2)])


LABEL = r"architecture 'ct_{}' of plugin 'contract-test' \(registered in-process\), {} of component 0"


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_an_encoder_wider_than_it_declares_fails_at_build_naming_plugin_and_component(name):
    with pytest.raises(PluginContractError, match=LABEL.format("wide", "encoder") + r" \(shape \(3,\)\): .*"
                                                  r"returned shape \(2, 9\), but it declares out_features=8"):
        FACTORIES[name](encoder="ct_wide", decoder="mlp", decoder_kwargs={"hidden": (8,)},
                        encoder_kwargs={}, max_epochs=1).fit(data((3,)))


@pytest.mark.parametrize("arch, shape, match", [
    ("undeclared", (3,), "encoder must have a positive integer attribute `out_features`"),
    ("not_a_module", (3,), "the encoder factory returned a str, not a torch.nn.Module"),
    ("long", (16,), None),
    ("flat", (1, 16), r"decoder returned shape \(2, 16\); the component's shape is \(1, 16\)"),
    ("transposed", (1, 16), r"decoder returned shape \(2, 16, 1\); the component's shape is \(1, 16\), so "
                            r"\(B, \*component_shape\) = \(2, 1, 16\) is expected"),
])
def test_contract_mistakes_fail_at_build_time(arch, shape, match):
    est = mcgen.GMRFMultiComponentVAE(encoder=f"ct_{arch}", decoder=f"ct_{arch}", max_epochs=1, random_state=0)
    if match is None:  # a decoder with surplus units that it slices away keeps the contract
        est.fit(data(shape))
        return
    role = "decoder" if "decoder" in match else "encoder"
    with pytest.raises(PluginContractError, match=LABEL.format(arch, role) + ".*" + match):
        est.fit(data(shape))
    assert not hasattr(est, "net_")


def test_a_checked_estimator_still_pickles_and_saves(tmp_path):
    est = mcgen.GMRFMultiComponentVAE(encoder="ct_good", decoder="ct_good", max_epochs=1, random_state=0)
    est.fit(data((3,)))
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(data((3,))), est.transform(data((3,))))
    est.save(tmp_path / "m.mcgen")
    np.testing.assert_array_equal(mcgen.load(tmp_path / "m.mcgen").transform(data((3,))), est.transform(data((3,))))


def test_checking_draws_no_random_numbers():
    """The dummy batch is deterministic: a seeded fit gives what it gave before the check existed
    (equal to a fit whose networks are built without checks)."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    mcgen.GMRFMultiComponentVAE(encoder="ct_good", decoder="ct_good", max_epochs=1, random_state=0).fit(data((3,)))
    assert torch.equal(torch.get_rng_state(), before)
    from mcgen.plugins.contract import CheckedFactory

    torch.manual_seed(0)
    plain = Encoder((3,))
    torch.manual_seed(0)
    checked = CheckedFactory(Encoder, "encoder", "x")((3,))
    after_checked = torch.rand(1)
    torch.manual_seed(0)
    Encoder((3,))
    assert torch.equal(after_checked, torch.rand(1))
    for a, b in zip(plain.parameters(), checked.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name, match", [
    ("ct_none", r"dataset 'ct_none' of plugin 'contract-test' \(registered in-process\): the loader returned "
                r"NoneType; a dataset loader must return \(Components, info\)"),
    ("ct_list", "the loader returned list"),
    ("ct_no_info", "the loader returned NoneType as the info"),
])
def test_loader_return_values_are_checked(name, match):
    with pytest.raises(PluginContractError, match=match):
        load_dataset(name)


# ------------------------------------------------------------------------------------------------
# mcgen.testing
# ------------------------------------------------------------------------------------------------
def test_check_architecture_passes_the_builtins_and_a_good_plugin():
    assert check_architecture("mlp", encoder_kwargs={"hidden": (8,)}, decoder_kwargs={"hidden": (8,)}) == [
        (1,), (7,), (1, 8, 8), (3, 28, 28)]
    assert check_architecture("conv", shapes=[(1, 8, 8)], encoder_kwargs={"channels": (4,), "hidden": 8},
                              decoder_kwargs={"channels": (4,), "hidden": 8}, fit=False) == [(1, 8, 8)]
    check_architecture("ct_good", shapes=[(3,), (2, 5)])
    check_architecture((Encoder, Decoder), shapes=[(4,)])


@pytest.mark.parametrize("arch, match", [
    ("ct_wide", "declares out_features=8"),
    ("ct_transposed", r"returned shape \(2, 16, 1\)"),
    ((MixesRows, Decoder), "rows must be processed independently"),
    ((UnusedParameter, Decoder), r"parameters \['unused.weight', 'unused.bias'\] receive no gradient"),
])
def test_check_architecture_finds_each_mistake(arch, match):
    with pytest.raises(PluginContractError, match=match):
        check_architecture(arch, shapes=[(1, 16)], fit=False)


def _loader(n_samples=10, random_state=None, data_home=None, bad=None):
    rng = np.random.default_rng(random_state)
    a = rng.standard_normal((n_samples, 2, 3))
    info = {"names": ["a", "b"], "kinds": ["sequence", "sequence"], "shapes": [(2, 3), (2, 3)]}
    if bad == "nan":
        a[0, 0, 0] = np.nan
    if bad == "shapes":
        info["shapes"] = [(3, 2), (2, 3)]
    if bad == "kinds":
        info["kinds"] = ["image", "sequence"]
    if bad == "rows":
        a = a[:-1]
    if bad == "seed":
        a = np.random.default_rng().standard_normal(a.shape)
    return Components([a, a + 1]), info


def test_check_dataset():
    X, info = check_dataset(_loader, n_samples=6)
    assert X.n_samples == 6 and info["names"] == ["a", "b"]
    for bad, match in [("nan", "component 0 holds NaN"), ("shapes", r"info\['shapes'\] says"),
                       ("kinds", r"info\['kinds'\] says \['image', 'sequence'\]"), ("rows", "got 5 rows"),
                       ("seed", "two calls with random_state=0 gave different data")]:
        with pytest.raises(PluginContractError, match=match):
            check_dataset(_loader, n_samples=6, bad=bad)
    X, info = check_dataset("copula", n_samples=20)
    assert X.n_components == 4
    with pytest.raises(PluginContractError, match="the loader returned NoneType"):
        check_dataset("ct_none")

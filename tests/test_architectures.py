"""Built-in architectures (mlp, conv, resnet): the contract, the paper's ResNet, training in a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mcgen import GMRFMultiComponentVAE, MultiComponentVAE
from mcgen.plugins import collect_registries, get_architecture, get_registries, make_plugin_manager, reset_plugins

torch.set_num_threads(1)

BUILTINS = ("mlp", "conv", "resnet")
#: Small settings per architecture so that CPU tests stay fast.
SMALL = {"mlp": {"hidden": (16,)}, "conv": {"channels": (4, 8), "hidden": 16}, "resnet": {"nf": 4, "nf_max": 8}}


@pytest.fixture(autouse=True)
def _default_plugins():
    reset_plugins()
    yield
    reset_plugins()


def _images(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((n, 3, 28, 28), dtype=np.float32), rng.random((n, 1, 64, 64), dtype=np.float32)]


# ------------------------------------------------------------------------------------------------
# the contract: (B, *shape) -> (B, F) and (B, latent) -> (B, *shape), differentiable end to end
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("shape", [(3, 28, 28), (1, 64, 64), (2, 12, 10)])
def test_encoder_decoder_contract(name, shape):
    torch.manual_seed(0)
    arch = get_architecture(name)
    enc = arch.encoder_factory(shape, **SMALL[name])
    dec = arch.decoder_factory(3, shape, **SMALL[name])
    x = torch.randn(5, *shape)
    h = enc(x)
    assert isinstance(enc.out_features, int) and h.shape == (5, enc.out_features)
    z = torch.randn(5, 3)
    y = dec(z)
    assert y.shape == (5, *shape)
    (h.square().mean() + y.square().mean()).backward()
    for module in (enc, dec):
        for pname, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (name, pname)
            assert p.grad.abs().sum() > 0, (name, pname)
    # rows are processed independently (no mixing across the batch)
    enc.eval()
    dec.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(x[2:3]), enc(x)[2:3], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dec(z[2:3]), dec(z)[2:3], rtol=1e-5, atol=1e-5)


def test_builtin_kinds():
    regs = get_registries().architectures
    assert regs["resnet"].meta["kinds"] == ("image",) and regs["conv"].meta["kinds"] == ("image",)
    assert "vector" in regs["mlp"].meta["kinds"]


# ------------------------------------------------------------------------------------------------
# resnet: the paper's network (Mescheder-style ResNet, LeakyReLU 0.2, avg-pool down, upsample up)
# ------------------------------------------------------------------------------------------------
def _blocks(module):
    return [m for m in module.modules() if type(m).__name__ == "ResnetBlock"]


@pytest.mark.parametrize("fin,fout", [(4, 4), (4, 6), (6, 4)])
def test_resnet_block_is_the_papers_formula(fin, fout):
    torch.manual_seed(1)
    arch = get_architecture("resnet")
    block = _blocks(arch.encoder_factory((fin, 8, 8), nf=fin, nf_max=fin))[0]
    block = type(block)(fin, fout)
    x = torch.randn(3, fin, 8, 8)
    c0, c1 = block.conv_0, block.conv_1
    assert c0.out_channels == min(fin, fout) and c0.kernel_size == (3, 3) and c1.kernel_size == (3, 3)
    dx = F.conv2d(F.leaky_relu(F.conv2d(F.leaky_relu(x, 0.2), c0.weight, c0.bias, padding=1), 0.2),
                  c1.weight, c1.bias, padding=1)
    if fin == fout:
        xs = x
    else:
        assert block.shortcut.bias is None and block.shortcut.kernel_size == (1, 1)
        xs = F.conv2d(x, block.shortcut.weight)
    torch.testing.assert_close(block(x), xs + 0.1 * dx)


@pytest.mark.parametrize("shape,levels,widths,s0", [
    ((3, 28, 28), 2, [32, 64, 128], 7),        # PolyMNIST: 28 -> 14 -> 7
    ((1, 64, 64), 4, [32, 64, 128, 256, 256], 4),  # BIKED components: 64 -> 4, capped at nf_max
])
def test_resnet_structure_for_the_papers_images(shape, levels, widths, s0):
    arch = get_architecture("resnet")
    enc = arch.encoder_factory(shape)
    dec = arch.decoder_factory(4, shape)
    pools = [m for m in enc.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == levels and all((p.kernel_size, p.stride, p.padding) == (3, 2, 1) for p in pools)
    assert [(b.conv_0.in_channels, b.conv_1.out_channels) for b in _blocks(enc)] == \
        [(widths[0], widths[0])] + list(zip(widths[:-1], widths[1:]))
    assert enc.out_features == widths[-1] * s0 * s0
    ups = [m for m in dec.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == levels and all(u.scale_factor == 2 for u in ups)
    assert [(b.conv_0.in_channels, b.conv_1.out_channels) for b in _blocks(dec)] == \
        list(zip(widths[::-1][:-1], widths[::-1][1:])) + [(widths[0], widths[0])]
    assert dec.fc.out_features == widths[-1] * s0 * s0
    lrelus = [m for m in list(enc.modules()) + list(dec.modules()) if isinstance(m, nn.LeakyReLU)]
    assert lrelus and all(m.negative_slope == 0.2 for m in lrelus)
    assert not any(isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.BatchNorm2d))
                   for m in list(enc.modules()) + list(dec.modules()))
    last = [m for m in dec.modules() if isinstance(m, nn.Conv2d)][-1]
    assert last.out_channels == shape[0] and last.kernel_size == (3, 3)
    # parameter counts stay CPU-sized at the defaults
    n_params = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in dec.parameters())
    assert n_params < 4_000_000


def test_resnet_parameters_nf_nf_max_s0():
    arch = get_architecture("resnet")
    enc = arch.encoder_factory((1, 64, 64), nf=8, nf_max=16, s0=8)
    assert len([m for m in enc.modules() if isinstance(m, nn.AvgPool2d)]) == 3
    assert [b.conv_1.out_channels for b in _blocks(enc)] == [8, 16, 16, 16]
    assert enc.out_features == 16 * 8 * 8
    assert arch.encoder_factory((1, 64, 64), nf=8, nf_max=16, out_features=10).out_features == 10
    dec = arch.decoder_factory(2, (1, 64, 32), nf=8, s0=(8, 4))  # 64 x 32: three levels to 8 x 4
    assert dec.fc.out_features == 64 * 8 * 4 and dec(torch.zeros(2, 2)).shape == (2, 1, 64, 32)
    with pytest.raises(ValueError, match="s0=5 does not divide the image size 28x28"):
        arch.encoder_factory((3, 28, 28), s0=5)
    with pytest.raises(ValueError, match="power of two"):
        arch.decoder_factory(2, (3, 28, 28), s0=(7, 14))
    with pytest.raises(ValueError, match=r"resnet needs image components of shape \(channels, height, width\)"):
        arch.encoder_factory((784,))
    with pytest.raises(ValueError, match="nf and nf_max must be positive"):
        arch.encoder_factory((1, 28, 28), nf=0)


# ------------------------------------------------------------------------------------------------
# conv and mlp
# ------------------------------------------------------------------------------------------------
def test_conv_round_trips_odd_sizes_exactly():
    arch = get_architecture("conv")
    enc = arch.encoder_factory((1, 15, 17), channels=(4, 8), hidden=12)
    dec = arch.decoder_factory(3, (1, 15, 17), channels=(4, 8), hidden=12)
    assert enc(torch.zeros(2, 1, 15, 17)).shape == (2, 12)
    assert dec.bottom == (8, 3, 4)  # 15x17 -> 7x8 -> 3x4
    assert dec(torch.zeros(2, 3)).shape == (2, 1, 15, 17)
    with pytest.raises(ValueError, match="cannot be halved 3 times"):
        arch.encoder_factory((1, 4, 4), channels=(4, 4, 4))
    with pytest.raises(ValueError, match="conv needs image components"):
        arch.decoder_factory(3, (10, 10))


def test_mlp_options():
    arch = get_architecture("mlp")
    enc = arch.encoder_factory((2, 3), hidden=(5, 6), activation="tanh", dropout=0.25)
    linears = [m for m in enc.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 5), (5, 6)] and enc.out_features == 6
    assert sum(isinstance(m, nn.Tanh) for m in enc.modules()) == 2
    assert [m.p for m in enc.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25]
    dec = arch.decoder_factory(2, (2, 3), hidden=(7,))
    assert dec(torch.zeros(4, 2)).shape == (4, 2, 3)
    default = arch.encoder_factory((2,))
    assert [(m.in_features, m.out_features) for m in default.modules() if isinstance(m, nn.Linear)] == \
        [(2, 256), (256, 256)]
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        arch.encoder_factory((2,), activation="nope")


# ------------------------------------------------------------------------------------------------
# inside a model
# ------------------------------------------------------------------------------------------------
def test_auto_picks_by_shape():
    # mcgen's own architectures (an installed plugin may rank higher for its kinds)
    regs = collect_registries(make_plugin_manager(load_entrypoints=False)).architectures
    pick = MultiComponentVAE._auto_architecture
    assert [pick(s, regs) for s in [(3, 28, 28), (1, 64, 64), (3, 32, 32)]] == ["resnet"] * 3
    assert pick((1, 20, 20), regs) == "conv" and pick((1, 4, 4), regs) == "mlp"
    assert pick((5,), regs) == "mlp" and pick((4, 6), regs) == "mlp"


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_trains_inside_the_gmrf_model(name):
    X = _images()
    kw = SMALL[name]
    est = GMRFMultiComponentVAE(encoder=name, decoder=name, encoder_kwargs=kw, decoder_kwargs=kw,
                                likelihood="bernoulli", latent_dim=2, max_epochs=1, batch_size=8,
                                offdiag_hidden=8, random_state=0)
    torch.manual_seed(0)
    est.fit(X)
    module = est.net_.module_
    assert len(est.history_) == 1 and np.isfinite(est.history_[-1, "train_loss"])
    # another epoch moves the encoder and decoder weights (gradients reach them through the model)
    before = [p.detach().clone() for p in list(module.encoders.parameters()) + list(module.decoders.parameters())]
    est.partial_fit(X, epochs=1)
    after = list(est.net_.module_.encoders.parameters()) + list(est.net_.module_.decoders.parameters())
    assert len(est.history_) == 2 and np.isfinite(est.history_[-1, "train_loss"])
    assert sum(not torch.equal(a, b) for a, b in zip(before, after)) >= 0.9 * len(before)
    for out in (est.sample(3, random_state=0), est.reconstruct([a[:3] for a in X])):
        assert [a.shape for a in out] == [(3, 3, 28, 28), (3, 1, 64, 64)]
        assert all(np.all((a >= 0) & (a <= 1)) for a in out)  # bernoulli means of logits
    assert est.transform(X).shape == (16, 4)


def test_per_component_choice():
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((16, 3)).astype(np.float32), *_images()]
    est = GMRFMultiComponentVAE(encoder=["mlp", "conv", "resnet"], decoder=["mlp", "resnet", "conv"],
                                encoder_kwargs=[SMALL["mlp"], SMALL["conv"], SMALL["resnet"]],
                                decoder_kwargs=[SMALL["mlp"], SMALL["resnet"], SMALL["conv"]],
                                likelihood=["gaussian", "bernoulli", "bernoulli"], max_epochs=1, batch_size=8,
                                offdiag_hidden=8, random_state=0).fit(X)
    module = est.net_.module_
    assert [type(m).__name__ for m in module.encoders] == ["MLPEncoder", "ConvEncoder", "ResNetEncoder"]
    assert [type(m).__name__ for m in module.decoders] == ["MLPDecoder", "ResNetDecoder", "ConvDecoder"]
    filled = est.predict_missing([X[0]], known=[0])
    assert [a.shape for a in filled] == [(16, 3), (16, 3, 28, 28), (16, 1, 64, 64)]
    np.testing.assert_array_equal(filled[0], X[0])
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'; registered architectures: .*conv"):
        GMRFMultiComponentVAE(encoder=["mlp", "resnet50", "conv"], max_epochs=1).fit(X)

"""The plugin registry: built-ins through the hooks, in-process and entry-point plugins, errors."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import mcgen
from mcgen import GMRFMultiComponentVAE, load_dataset
from mcgen.cli import main as cli_main
from mcgen.plugins import (
    DISABLE_AUTOLOAD_ENV,
    PluginClashError,
    PluginLoadError,
    PluginSignatureError,
    get_architecture,
    get_metric,
    get_plugin_manager,
    get_registries,
    hookimpl,
    make_plugin_manager,
    register_plugin,
    reset_plugins,
    unregister_plugin,
)
from mcgen.plugins.manager import BUILTIN_PLUGINS, collect_registries
from tests._factories import LinearDecoder, LinearEncoder, fresh_plugins  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

MCGEN_DIR = Path(mcgen.__file__).parent


@pytest.fixture
def no_autoload(monkeypatch):
    """Keep installed plugins out of the way of tests about in-process plugins."""
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    reset_plugins()


# ------------------------------------------------------------------------------------------------
# an in-process plugin (no installation)
# ------------------------------------------------------------------------------------------------


def toy_loader(n_samples=40, random_state=0, data_home=None):
    rng = np.random.default_rng(random_state)
    a = rng.standard_normal((n_samples, 3))
    return mcgen.Components([a, a[:, :2] + 0.1 * rng.standard_normal((n_samples, 2))]), {"name": "toyset"}


def toy_metric(generated, reference):
    return float(sum(np.abs(g.mean() - r.mean()) for g, r in zip(generated, reference)))


class ToyPlugin:
    """A plugin object: any object whose methods carry ``@hookimpl`` works."""

    @hookimpl
    def mcgen_register_architectures(self, register):
        register("toy_linear", LinearEncoder, LinearDecoder, kinds=("vector",), description="one linear layer")

    @hookimpl
    def mcgen_register_datasets(self, register):
        register("toyset", toy_loader, description="two correlated vectors")

    @hookimpl
    def mcgen_register_metrics(self, register):
        register("toy_mean_gap", toy_metric, greater_is_better=False)


def test_in_process_plugin_is_used_by_name_in_an_estimator(no_autoload):
    name = register_plugin(ToyPlugin(), name="toy-plugin")
    assert name == "toy-plugin"
    regs = get_registries()
    entry = regs.architectures["toy_linear"]
    assert (entry.plugin, entry.distribution, entry.version) == ("toy-plugin", None, None)
    assert entry.meta == {"kinds": ("vector",), "description": "one linear layer"}
    assert regs.metrics["toy_mean_gap"].meta == {"greater_is_better": False}

    X, info = load_dataset("toyset", n_samples=32)
    assert info == {"name": "toyset"} and X.n_samples == 32
    est = GMRFMultiComponentVAE(encoder="toy_linear", decoder=["toy_linear", "mlp"], encoder_kwargs={"width": 7},
                                decoder_kwargs=[{}, {"hidden": (8,)}], latent_dim=2, max_epochs=1,
                                batch_size=16, offdiag_hidden=8, random_state=0).fit(X)
    module = est.net_.module_
    assert [type(e).__name__ for e in module.encoders] == ["LinearEncoder", "LinearEncoder"]
    assert [e.out_features for e in module.encoders] == [7, 7]
    assert [type(d).__name__ for d in module.decoders] == ["LinearDecoder", "MLPDecoder"]
    assert [a.shape for a in est.sample(4, random_state=0)] == [(4, 3), (4, 2)]
    assert get_metric("toy_mean_gap")(X.arrays, X.arrays) == 0.0

    unregister_plugin("toy-plugin")
    with pytest.raises(ValueError, match="unknown architecture 'toy_linear'; registered architectures: .*mlp"):
        get_architecture("toy_linear")
    with pytest.raises(ValueError, match="unknown dataset 'toyset'"):
        load_dataset("toyset")


def test_a_module_registers_too(no_autoload, tmp_path, monkeypatch):
    (tmp_path / "mcgen_inproc_mod.py").write_text(textwrap.dedent("""
        from mcgen.plugins import hookimpl

        @hookimpl
        def mcgen_register_metrics(register):
            register("always_one", lambda generated, reference: 1.0)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import mcgen_inproc_mod

    try:
        assert register_plugin(mcgen_inproc_mod) == "mcgen_inproc_mod"  # pluggy's canonical name
        assert get_metric("always_one")(None, None) == 1.0
    finally:
        sys.modules.pop("mcgen_inproc_mod", None)


# ------------------------------------------------------------------------------------------------
# built-ins come through the same door
# ------------------------------------------------------------------------------------------------
def test_builtins_are_registered_through_the_hooks():
    regs = collect_registries(make_plugin_manager(load_entrypoints=False))
    assert {"mlp", "conv", "resnet"} <= set(regs.architectures)
    assert "copula" in regs.datasets
    assert {"marginal_wasserstein", "sliced_wasserstein"} <= set(regs.metrics)
    for table in (regs.architectures, regs.datasets, regs.metrics):
        for entry in table.values():
            assert entry.plugin in BUILTIN_PLUGINS
            assert (entry.distribution, entry.version) == ("mcgen", mcgen.__version__)
    assert regs.architectures["resnet"].plugin == "mcgen.architectures.resnet"
    assert regs.architectures["resnet"].meta["kinds"] == ("image",)

    empty = collect_registries(make_plugin_manager(load_entrypoints=False, builtins=False))
    assert not empty.architectures and not empty.datasets and not empty.metrics


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    rel = path.relative_to(MCGEN_DIR.parent).with_suffix("")
    package = ".".join(rel.parts[:-1]) if rel.name != "__init__" else ".".join(rel.parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def test_no_core_module_imports_the_builtin_architectures_or_datasets():
    # reproduce.py is not core: it runs the paper's experiments on the built-in datasets (PolyMNIST's own
    # digit classifiers included), an application above the plugin door like benchmarks/ and examples/.
    core = [p for p in MCGEN_DIR.rglob("*.py")
            if not {"architectures", "datasets"} & set(p.relative_to(MCGEN_DIR).parts) and p.name != "reproduce.py"]
    assert any(p.name == "base.py" for p in core) and any(p.name == "manager.py" for p in core)
    offenders = {}
    for path in core:
        bad = {m for m in _imported_modules(path)
               if m.startswith(("mcgen.architectures", "mcgen.datasets"))}
        if bad:
            offenders[str(path.relative_to(MCGEN_DIR))] = sorted(bad)
    assert offenders == {}


def test_a_builtin_removed_from_the_manager_is_gone_everywhere(no_autoload):
    pm = make_plugin_manager(load_entrypoints=False)
    pm.unregister(name="mcgen.architectures.resnet")
    reset_plugins(pm)
    with pytest.raises(ValueError, match="unknown architecture 'resnet'; registered architectures: conv, mlp"):
        get_architecture("resnet")
    rng = np.random.default_rng(0)
    X = [rng.random((8, 1, 28, 28), dtype=np.float32), rng.random((8, 2), dtype=np.float32)]
    est = GMRFMultiComponentVAE(likelihood=["bernoulli", "gaussian"], max_epochs=1, batch_size=8,
                                encoder_kwargs=[{"channels": (4,), "hidden": 8}, {"hidden": (8,)}],
                                decoder_kwargs=[{"channels": (4,), "hidden": 8}, {"hidden": (8,)}],
                                offdiag_hidden=8, random_state=0).fit(X)
    # "auto" falls back to conv for the image once resnet is not registered.
    assert [type(e).__name__ for e in est.net_.module_.encoders] == ["ConvEncoder", "MLPEncoder"]
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        GMRFMultiComponentVAE(encoder="resnet", max_epochs=1).fit(X)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
class Clasher:
    @hookimpl
    def mcgen_register_architectures(self, register):
        register("mlp", LinearEncoder, LinearDecoder)


def test_a_name_registered_twice_is_refused_naming_both_plugins(no_autoload):
    with pytest.raises(PluginClashError) as info:
        register_plugin(Clasher(), name="clasher")
    msg = str(info.value)
    assert "architecture 'mlp' is registered twice" in msg
    assert "'mcgen.architectures.mlp' (mcgen 0.1.0)" in msg and "'clasher' (registered in-process)" in msg
    # refused: the registry and the manager are as before
    assert get_plugin_manager().get_plugin("clasher") is None
    assert get_registries().architectures["mlp"].plugin == "mcgen.architectures.mlp"
    assert type(get_architecture("mlp").encoder_factory((3,))).__name__ == "MLPEncoder"


def test_clash_between_two_third_party_plugins():
    class A:
        @hookimpl
        def mcgen_register_datasets(self, register):
            register("shared_name", toy_loader)

    class B(A):
        pass

    pm = make_plugin_manager(load_entrypoints=False, builtins=False)
    pm.register(A(), name="plugin-a")
    pm.register(B(), name="plugin-b")
    with pytest.raises(PluginClashError, match="dataset 'shared_name' is registered twice: by plugin 'plugin-a' "
                                               r"\(registered in-process\) and by plugin 'plugin-b'"):
        collect_registries(pm)
    assert issubclass(PluginClashError, ValueError)


class WrongArgName:
    @hookimpl
    def mcgen_register_architectures(self, registry):  # the spec's argument is `register`
        registry("x", LinearEncoder, LinearDecoder)


class UnknownHook:
    @hookimpl
    def mcgen_register_dataset(self, register):  # singular: not a hook of mcgen
        register("x", toy_loader)


class BadRegisterCall:
    @hookimpl
    def mcgen_register_architectures(self, register):
        register("half", LinearEncoder)  # no decoder factory


def test_a_hook_implementation_with_a_wrong_signature_is_refused_clearly(no_autoload):
    with pytest.raises(PluginSignatureError) as info:
        register_plugin(WrongArgName(), name="wrong-args")
    msg = str(info.value)
    assert "plugin 'wrong-args' implements mcgen_register_architectures with the wrong signature" in msg
    assert "def mcgen_register_architectures(register)" in msg and "{'registry'}" in msg
    assert isinstance(info.value, TypeError)
    assert get_plugin_manager().get_plugin("wrong-args") is None  # nothing half-registered
    assert "x" not in get_registries().architectures

    with pytest.raises(PluginSignatureError, match="implements a hook mcgen does not define: unknown hook "
                                                   "'mcgen_register_dataset'.*mcgen_register_datasets"):
        register_plugin(UnknownHook(), name="unknown-hook")
    assert get_plugin_manager().get_plugin("unknown-hook") is None

    with pytest.raises(PluginSignatureError, match=r"plugin 'bad-call' \(registered in-process\) registered "
                                                   r"architecture 'half' wrongly .*register\(name, encoder_factory, "
                                                   r"decoder_factory"):
        register_plugin(BadRegisterCall(), name="bad-call")
    assert "half" not in get_registries().architectures

    class Wrapper:
        @hookimpl(wrapper=True)
        def mcgen_register_metrics(self, register):
            return (yield)

    with pytest.raises(PluginSignatureError, match="implements mcgen_register_metrics as a wrapper"):
        register_plugin(Wrapper(), name="wrapper")
    assert get_plugin_manager().get_plugin("wrapper") is None


# ------------------------------------------------------------------------------------------------
# entry-point discovery with a fake distribution on sys.path (no pip involved)
# ------------------------------------------------------------------------------------------------
def _fake_distribution(root: Path, dist: str, version: str, module: str, source: str, ep_name: str) -> None:
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[mcgen]\n{ep_name} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """A directory on sys.path to put fake distributions in; their modules are forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("mcgen_fake_"):
            del sys.modules[name]


GOOD_PLUGIN = """
    import numpy as np
    from mcgen.plugins import hookimpl

    def load(n_samples=10, random_state=0, data_home=None):
        from mcgen import Components
        return Components([np.zeros((n_samples, 2))]), {"name": "fake_zeros"}

    @hookimpl
    def mcgen_register_datasets(register):
        register("fake_zeros", load, description="zeros")
"""


def test_entry_point_plugin_is_discovered_with_its_distribution(fake_site, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    _fake_distribution(fake_site, "fakeplug", "0.0.7", "mcgen_fake_good", GOOD_PLUGIN, "fake")
    pm = make_plugin_manager()
    assert pm.get_plugin("fake").__name__ == "mcgen_fake_good"
    assert pm.plugin_distribution(pm.get_plugin("fake")) == ("fakeplug", "0.0.7")
    reset_plugins(pm)
    entry = get_registries().datasets["fake_zeros"]
    assert (entry.plugin, entry.distribution, entry.version) == ("fake", "fakeplug", "0.0.7")
    X, info = load_dataset("fake_zeros", n_samples=3)
    assert X.arrays[0].shape == (3, 2) and info == {"name": "fake_zeros"}


def test_disable_autoload_env_keeps_entry_points_out(fake_site, monkeypatch):
    _fake_distribution(fake_site, "fakeplug", "0.0.7", "mcgen_fake_good", GOOD_PLUGIN, "fake")
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    pm = make_plugin_manager()
    assert pm.get_plugin("fake") is None and "mcgen_fake_good" not in sys.modules
    regs = collect_registries(pm)
    assert "fake_zeros" not in regs.datasets and "tcn" not in regs.architectures
    assert {"mlp", "conv", "resnet"} <= set(regs.architectures)  # built-ins are not entry points
    # an explicit request still loads them
    assert "fake_zeros" in collect_registries(make_plugin_manager(load_entrypoints=True)).datasets


def test_entry_point_with_wrong_signature_names_its_distribution(fake_site, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    _fake_distribution(fake_site, "fakebad", "2.1", "mcgen_fake_bad", """
        from mcgen.plugins import hookimpl

        @hookimpl
        def mcgen_register_metrics(reg):
            pass
    """, "bad")
    with pytest.raises(PluginSignatureError, match=r"(?s)plugin 'bad' implements mcgen_register_metrics with the "
                                                   r"wrong signature.*from entry point 'bad' = 'mcgen_fake_bad' "
                                                   r"of distribution 'fakebad' 2\.1"):
        make_plugin_manager()


def test_entry_point_that_fails_to_import_names_its_distribution(fake_site, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    _fake_distribution(fake_site, "fakebroken", "1.0", "mcgen_fake_broken", "import mcgen_no_such_module\n",
                       "broken")
    with pytest.raises(PluginLoadError, match="cannot load the mcgen plugin entry point 'broken' = "
                                              "'mcgen_fake_broken' of distribution 'fakebroken' 1.0: "
                                              "ModuleNotFoundError"):
        make_plugin_manager()


def test_entry_point_clashing_with_a_builtin(fake_site, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    _fake_distribution(fake_site, "fakeclash", "0.3", "mcgen_fake_clash", """
        from mcgen.plugins import hookimpl

        @hookimpl
        def mcgen_register_datasets(register):
            register("copula", lambda **kw: None)
    """, "clash")
    pm = make_plugin_manager()
    with pytest.raises(PluginClashError, match=r"dataset 'copula' is registered twice: by plugin "
                                               r"'mcgen.datasets.copula' \(mcgen 0.1.0\) and by plugin 'clash' "
                                               r"\(fakeclash 0.3\)"):
        collect_registries(pm)


# ------------------------------------------------------------------------------------------------
# the installed example plugin (CI installs plugins/mcgen-sequence as README says)
# ------------------------------------------------------------------------------------------------
def test_installed_example_plugin_is_found_through_its_entry_point(monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    reset_plugins()
    dist = importlib.metadata.distribution("mcgen-sequence")
    eps = [ep for ep in dist.entry_points if ep.group == "mcgen"]
    assert [(ep.name, ep.value) for ep in eps] == [("sequence", "mcgen_sequence.plugin")]

    regs = get_registries()
    for entry in (regs.architectures["tcn"], regs.datasets["oscillators"]):
        assert (entry.plugin, entry.distribution, entry.version) == ("sequence", "mcgen-sequence", dist.version)
    pm = get_plugin_manager()
    assert [p for p, d in pm.list_plugin_distributions() if d.metadata["Name"] == "mcgen-sequence"] == \
        [pm.get_plugin("sequence")]
    assert get_architecture("tcn").encoder_factory.__module__ == "mcgen_sequence.tcn"

    X, info = load_dataset("oscillators", n_samples=48, length=16)
    assert info["kinds"] == ["sequence"] * 3 and [a.shape for a in X.arrays] == [(48, 1, 16)] * 3
    small = {"channels": 4, "n_blocks": 2}
    est = GMRFMultiComponentVAE(encoder="tcn", decoder=["tcn", "tcn", "mlp"], encoder_kwargs=small,
                                decoder_kwargs=[small, small, {"hidden": (8,)}], max_epochs=1, batch_size=16,
                                offdiag_hidden=8, random_state=0).fit(X)
    assert [type(e).__name__ for e in est.net_.module_.encoders] == ["TCNEncoder"] * 3
    assert np.isfinite(est.history_[-1, "train_loss"])
    out = est.predict_missing([X.arrays[0]], known=[0])
    assert [a.shape for a in out] == [(48, 1, 16)] * 3


# ------------------------------------------------------------------------------------------------
# mcgen plugins
# ------------------------------------------------------------------------------------------------
def test_cli_lists_everything_with_its_origin(capsys):
    assert cli_main(["plugins"]) == 0
    text = capsys.readouterr().out
    regs = get_registries()
    lines = text.splitlines()
    for table in (regs.architectures, regs.datasets, regs.metrics):
        for name, entry in table.items():
            row = [ln for ln in lines if ln.split()[:1] == [name]]
            assert len(row) == 1, name
            assert entry.plugin in row[0] and f"{entry.distribution} {entry.version}" in row[0]
    assert any(ln.split()[:3] == ["tcn", "sequence", "mcgen-sequence"] for ln in lines)

    assert cli_main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["plugins"]["sequence"]["distribution"] == "mcgen-sequence"
    assert data["plugins"]["mcgen.architectures.resnet"] == {"distribution": "mcgen", "version": mcgen.__version__}
    assert set(data["architectures"]) == set(regs.architectures)
    assert set(data["datasets"]) == set(regs.datasets) and set(data["metrics"]) == set(regs.metrics)
    assert data["architectures"]["tcn"]["kinds"] == ["sequence"]


def test_the_example_plugins_own_tests_pass():
    """The worked example of docs/plugins.md keeps its own test suite green."""
    import subprocess

    tests = MCGEN_DIR.parent / "plugins" / "mcgen-sequence" / "tests"
    assert tests.is_dir()
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                         capture_output=True, text=True, cwd=MCGEN_DIR.parent, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "failed" not in res.stdout


def test_cli_reports_a_broken_plugin_without_a_traceback(fake_site, monkeypatch, capsys):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    _fake_distribution(fake_site, "fakeclash", "0.3", "mcgen_fake_clash2", """
        from mcgen.plugins import hookimpl

        @hookimpl
        def mcgen_register_architectures(register):
            register("resnet", object, object)
    """, "clash2")
    assert cli_main(["plugins"]) == 1  # the clashing plugin is skipped and listed; the rest is listed too
    out, err = capsys.readouterr()
    assert err.startswith("mcgen plugins: the plugin 'clash2' (fakeclash 0.3) is broken and was skipped: "
                          "PluginClashError: architecture 'resnet' is registered twice")
    assert "Traceback" not in err and "resnet" in out


def test_cli_survives_a_closed_pipe():
    import subprocess
    import sys

    # The reader closes the pipe before mcgen writes anything (as `mcgen plugins | head` can).
    proc = subprocess.Popen([sys.executable, "-m", "mcgen.cli", "plugins"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 0, err
    assert "BrokenPipeError" not in err and "Traceback" not in err, err

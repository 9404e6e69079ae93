"""A broken third-party plugin is contained (issue 13, item 1): it is skipped and listed with its
reason, everything else keeps working, and asking for its names says why they are missing."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

import mcgen
from mcgen.cli import main as cli_main
from mcgen.exceptions import PluginBrokenError, PluginError, PluginSignatureError
from mcgen.plugins import (
    DISABLE_AUTOLOAD_ENV,
    get_architecture,
    get_registries,
    hookimpl,
    load_dataset,
    register_plugin,
)
from tests._factories import fresh_plugins  # noqa: F401 (autouse fixture)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path for fake distributions, with entry-point loading on."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("mcgen_iso_"):
            del sys.modules[name]


def install(root: Path, dist: str, module: str, source: str, ep: str, version: str = "1.0") -> None:
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[mcgen]\n{ep} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


HEADER = """
    import numpy as np
    from mcgen import Components
    from mcgen.plugins import hookimpl

    def loader(n_samples=4, random_state=0, data_home=None):
        return Components([np.zeros((n_samples, 2))]), {"names": ["z"]}
"""

BROKEN = {
    "import": ("import mcgen_no_such_module_anywhere\n", "ModuleNotFoundError"),
    "raises": (HEADER + """
    @hookimpl
    def mcgen_register_datasets(register):
        register("iso_raises_ds", loader)
        raise RuntimeError("the plugin's own bug")
    """, "its hook mcgen_register_datasets raised RuntimeError: the plugin's own bug"),
    "returns": (HEADER + """
    @hookimpl
    def mcgen_register_datasets(register):
        return [("iso_returns_ds", loader)]
    """, "returned a list instead of calling register"),
    "noarg": (HEADER + """
    @hookimpl
    def mcgen_register_datasets():
        pass
    """, "without the `register` argument"),
    "clash": (HEADER + """
    @hookimpl
    def mcgen_register_datasets(register):
        register("iso_clash_ok", loader)
        register("copula", loader)
    """, "dataset 'copula' is registered twice"),
    "unknown_hook": (HEADER + """
    @hookimpl
    def mcgen_register_dataset(register):
        register("iso_typo", loader)
    """, "unknown hook 'mcgen_register_dataset'"),
}

GOOD = HEADER + """
    @hookimpl
    def mcgen_register_datasets(register):
        register("iso_good_ds", loader)
"""


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_plugin_is_skipped_and_everything_else_works(site, kind, capsys):
    source, reason = BROKEN[kind]
    install(site, f"isobroken-{kind}", f"mcgen_iso_{kind}", source, f"iso-{kind}", "2.5")
    install(site, "isogood", "mcgen_iso_good", GOOD, "iso-good")
    with pytest.warns(UserWarning, match=rf"mcgen skipped the broken plugin 'iso-{kind}' \(isobroken-{kind} 2.5\)"):
        regs = get_registries()
    assert set(regs.broken) == {f"iso-{kind}"}
    assert reason in regs.broken[f"iso-{kind}"].reason
    # the built-ins and the good plugin keep working
    X, info = load_dataset("copula", n_samples=8)
    assert X.n_components == 4
    assert load_dataset("iso_good_ds")[0].n_samples == 4
    assert get_architecture("mlp") is regs.architectures["mlp"].obj
    # none of the broken plugin's names is registered
    assert not {n for n in regs.datasets if n.startswith("iso_") and n != "iso_good_ds"}
    assert regs.datasets["copula"].plugin == "mcgen.datasets.copula"

    # mcgen plugins lists it with the reason and exits 1
    capsys.readouterr()
    assert cli_main(["plugins"]) == 1
    out, err = capsys.readouterr()
    assert "broken plugins (skipped" in out and f"iso-{kind}" in out and reason in out
    assert "iso_good_ds" in out and "copula" in out
    assert f"the plugin 'iso-{kind}' (isobroken-{kind} 2.5) is broken and was skipped" in err
    assert "Traceback" not in err
    assert cli_main(["plugins", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert reason in data["broken"][f"iso-{kind}"]["reason"]
    assert data["broken"][f"iso-{kind}"]["distribution"] == f"isobroken-{kind}"


def test_asking_for_a_broken_plugins_name_names_the_plugin_and_the_reason(site):
    install(site, "isoraise", "mcgen_iso_raises", BROKEN["raises"][0], "iso-raises")
    with pytest.warns(UserWarning):
        get_registries()
    with pytest.raises(PluginBrokenError, match=r"dataset 'iso_raises_ds' comes from the plugin 'iso-raises' "
                                                r"\(isoraise 1.0\), which is broken and was skipped: PluginError: "
                                                r".*raised RuntimeError: the plugin's own bug"):
        load_dataset("iso_raises_ds")
    assert issubclass(PluginBrokenError, ValueError)
    # an unknown name lists the registered ones and mentions the broken plugin
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; registered datasets: .*copula.*; it may come "
                                         r"from a broken plugin that was skipped: plugin 'iso-raises'"):
        load_dataset("nope")
    # an estimator asking for an unknown architecture says the same
    with pytest.raises(ValueError, match="broken plugin that was skipped: plugin 'iso-raises'"):
        mcgen.GMRFMultiComponentVAE(encoder="nope", max_epochs=1).fit(load_dataset("copula", n_samples=8)[0])


def test_the_clashing_plugins_names_are_reported_as_its_own(site):
    install(site, "isoclash", "mcgen_iso_clash", BROKEN["clash"][0], "iso-clash")
    with pytest.warns(UserWarning):
        regs = get_registries()
    assert "iso_clash_ok" not in regs.datasets  # the plugin goes as a whole
    with pytest.raises(PluginBrokenError, match="dataset 'iso_clash_ok' comes from the plugin 'iso-clash'"):
        load_dataset("iso_clash_ok")


class _NoRegisterArgument:
    @hookimpl
    def mcgen_register_metrics(self):
        pass


class _ReturnsRegistrations:
    @hookimpl
    def mcgen_register_metrics(self, register):
        return {"returned_metric": lambda g, r: 0.0}


class _Raises:
    @hookimpl
    def mcgen_register_metrics(self, register):
        raise KeyError("oops")


def test_in_process_plugins_with_these_mistakes_are_refused_clearly(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    with pytest.raises(PluginSignatureError, match="implements mcgen_register_metrics without the `register` "
                                                   "argument"):
        register_plugin(_NoRegisterArgument(), name="no-arg")
    with pytest.raises(PluginSignatureError, match=r"plugin 'returns' \(registered in-process\): its hook "
                                                   "mcgen_register_metrics returned a dict instead of calling "
                                                   "register"):
        register_plugin(_ReturnsRegistrations(), name="returns")
    with pytest.raises(PluginError, match=r"plugin 'raises' \(registered in-process\): its hook "
                                          r"mcgen_register_metrics raised KeyError: 'oops'"):
        register_plugin(_Raises(), name="raises")
    # each was refused and the registry is intact
    regs = get_registries()
    assert not regs.broken and "returned_metric" not in regs.metrics and "marginal_wasserstein" in regs.metrics


def test_an_installed_broken_plugin_does_not_refuse_an_in_process_one(site):
    install(site, "isoimp", "mcgen_iso_import", BROKEN["import"][0], "iso-import")

    class Fine:
        @hookimpl
        def mcgen_register_metrics(self, register):
            register("iso_fine_metric", lambda g, r: 0.0)

    register_plugin(Fine(), name="fine")
    regs = get_registries()
    assert "iso_fine_metric" in regs.metrics and set(regs.broken) == {"iso-import"}


class _LooksUpInItsHook:
    @hookimpl
    def mcgen_register_architectures(self, register):
        from mcgen.plugins import get_architecture

        register("iso_wrapped_mlp", get_architecture("mlp").encoder_factory, get_architecture("mlp").decoder_factory)


def test_a_hook_that_looks_up_the_registry_is_a_clear_error_not_a_recursion(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    with pytest.raises(PluginError, match="the registries were looked up while they are being collected"):
        register_plugin(_LooksUpInItsHook(), name="looks-up")
    assert "iso_wrapped_mlp" not in get_registries().architectures

"""The ``mcgen`` command checks its options before any work, documents every option, has
``--version`` and shows progress by default (issue 13, item 6)."""

from __future__ import annotations

import argparse

import pytest

import mcgen
from mcgen.cli import build_parser, main


@pytest.fixture
def no_work(monkeypatch):
    """Any training or data loading fails the test: option errors must come first."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(mcgen.GMRFMultiComponentVAE, "fit", forbidden)
    monkeypatch.setattr(mcgen, "load_dataset", forbidden)


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "-1"], "argument --epochs: must be at least 1 (training epochs), got -1"),
    (["--epochs", "0"], "argument --epochs: must be at least 1"),
    (["--epochs", "ten"], "argument --epochs: must be an integer (training epochs), got 'ten'"),
    (["--n-samples", "0"], "argument --n-samples: must be at least 2 (training rows), got 0"),
    (["--n-samples", "1"], "argument --n-samples: must be at least 2"),
    (["--n-test", "-5"], "argument --n-test: must be at least 2"),
    (["--seed", "-1"], "argument --seed: must be at least 0 (a seed), got -1"),
    (["--seed", str(2**32)], "argument --seed: must be at most 2**32 - 1"),
    (["--threads", "-3"], "argument --threads: must be at least 0"),
    (["--verbose", "-1"], "argument --verbose: must be at least 0"),
    (["--plot", "/nonexistent_mcgen_dir/pairs.png"], "argument --plot: the folder '/nonexistent_mcgen_dir' does not "
                                                      "exist; create it first"),
    (["--plot", "pairs.txt"], "argument --plot: 'pairs.txt' has no image suffix"),
])
def test_bad_options_are_argparse_errors_before_any_work(argv, message, capsys, no_work):
    with pytest.raises(SystemExit) as info:
        main(["demo", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage: mcgen demo" in err and "Traceback" not in err


def test_a_folder_as_plot_path_is_refused(tmp_path, capsys, no_work):
    with pytest.raises(SystemExit):
        main(["demo", "--plot", str(tmp_path)])
    assert "is a folder; give a file name" in capsys.readouterr().err


def test_an_unknown_metric_is_refused_before_any_work(capsys, no_work):
    assert main(["demo", "--metrics", "nope", "--plot", ""]) == 2
    assert "unknown metrics ['nope']" in capsys.readouterr().err


def _options(parser: argparse.ArgumentParser, path: str = "mcgen"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings:
            yield path, action


def test_every_option_has_help_text():
    options = list(_options(build_parser()))
    assert len(options) > 15
    for path, action in options:
        assert action.help, f"{path} {'/'.join(action.option_strings)} has no help text"


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"mcgen {mcgen.__version__}"


@pytest.mark.slow
def test_demo_shows_an_epoch_progress_bar_by_default(capsys, tmp_path):
    args = ["demo", "--epochs", "2", "--n-samples", "200", "--n-test", "100", "--threads", "1"]
    assert main([*args, "--plot", str(tmp_path / "pairs.png")]) == 0
    out, err = capsys.readouterr()
    assert "training: 100%" in err and "2/2" in err and "epoch" in err and "computing the metrics" in err
    assert "GMRF MCVAE on copula: 200 rows, 2 epochs" in out and (tmp_path / "pairs.png").stat().st_size > 0
    assert main([*args, "--plot", "", "--no-progress"]) == 0
    assert "training:" not in capsys.readouterr().err

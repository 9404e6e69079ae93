"""``mcgen reproduce``: every experiment runs end to end at the hidden ``--tiny`` setting (seconds,
on self-made MNIST and BIKED fixtures where data are needed), prints its table beside the
paper's values and writes its JSON and figure."""

from __future__ import annotations

import json

import pytest
import torch

from mcgen import reproduce
from mcgen.cli import main
from mcgen.datasets import biked, polymnist
from tests._datasets_fixtures import jittered_rows, make_mnist, write_biked


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_reproduce_table1_tiny_from_the_command_line(tmp_path, capsys):
    assert main(["reproduce", "table1", "--tiny", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "table1.json").read_text())
    assert saved["mode"] == "tiny" and saved["experiment"] == "table1"
    assert set(saved["summary"]) == set(reproduce.MODELS)
    for model, cell in saved["summary"].items():
        assert len(cell["unconditional"]["mean"]) == 2 and cell["conditional_mean"]["mean"] > 0
        # the table shows our value and the paper's on the same row
        row = next(line for line in printed.splitlines() if line.startswith(reproduce.LABELS[model] + " "))
        assert f"{reproduce.PAPER['table1']['unconditional'][model]:.2f}" in row
    assert "noise floor" in printed and saved["noise_floor"]["rows"] == 200
    assert (tmp_path / "fig2.png").stat().st_size > 10_000
    # the paper's GMRF model, not the library defaults
    gmrf = next(r for r in saved["runs"] if r["model"] == "gmrf")
    assert gmrf["params"]["prior_components"] == 1 and gmrf["params"]["cond_weight"] == 0.0


def test_reproduce_polymnist_table_and_figure_tiny(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setattr(polymnist, "MNIST_FILES", make_mnist(home / "mnist", n_train=80, n_test=40))
    res = reproduce.run("table2", tiny=True, out=tmp_path / "out", data_home=home, log=lambda *a: None)
    for cell in res["summary"].values():
        for key in ("unconditional_coherence", "conditional_coherence", "conditional_ssim"):
            assert 0.0 <= cell[key]["mean"] <= 1.0
    assert (tmp_path / "out" / "fig3.png").exists()
    text = reproduce.format_table("table2", res["runs"])
    assert "0.869" in text and "0.993-0.995" in text  # the paper's GMRF coherence and SSIM range


def test_reproduce_biked_figure_tiny(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setattr(biked, "BIKED_SHA256", write_biked(home / "biked", jittered_rows(48)))
    res = reproduce.run("fig4", tiny=True, out=tmp_path, data_home=home, log=lambda *a: None)
    assert [r["model"] for r in res["runs"]] == ["gmrf"] and "summary" not in res
    assert (tmp_path / "fig4.png").stat().st_size > 5_000


def test_table3_format_shows_the_papers_values():
    runs = [{"model": m, "seconds_per_epoch": 1.0, "columns": {"ssim_full_bike": 0.8, "com_wasserstein": 0.03}}
            for m in reproduce.MODELS]
    text = reproduce.format_table("table3", runs)
    assert "0.64" in text and "0.31" in text and "0.800" in text


def test_figure5_is_refused_with_a_reason(capsys):
    assert main(["reproduce", "fig5"]) == 2
    assert "Figure 5 is not reproduced" in capsys.readouterr().out


def test_unknown_experiment_is_refused():
    with pytest.raises(ValueError, match="unknown experiment"):
        reproduce.run("table9", tiny=True)


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs: must be at least 1, got 0"),
    (["--rows", "-5"], "--rows: must be at least 2, got -5"),
    (["--n-jobs", "0"], "--n-jobs: must be at least 1, got 0"),
    (["--seeds", "1", "-1"], "--seeds: must be at least 0, got -1"),
    (["--epochs", "ten"], "--epochs: must be an integer, got 'ten'"),
])
def test_numeric_options_are_checked_before_any_work(argv, message, capsys, monkeypatch):
    """Bug caught: ``type=int`` let ``--epochs 0`` or ``--rows -5`` through to the protocol, which then failed
    deep inside training with a traceback (or, for ``--n-jobs 0``, in joblib)."""
    monkeypatch.setattr(reproduce, "run", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "table1", "--tiny", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err

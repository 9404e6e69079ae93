"""examples/polymnist.py, examples/biked.py and examples/missing_components.py run end to end (``--smoke``) on tiny
fixtures (the last on the bundled digits)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from mcgen.datasets import biked, polymnist
from tests._datasets_fixtures import jittered_rows, make_mnist, write_biked

ROOT = Path(__file__).resolve().parents[1]


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_polymnist_example_smoke(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setattr(polymnist, "MNIST_FILES", make_mnist(home / "mnist", n_train=80, n_test=40))
    # stand-in classifiers so the coherence path runs too
    clf = home / "polymnist_classifiers"
    clf.mkdir(parents=True)
    for name in polymnist.PRETRAINED_NAMES:
        torch.save(polymnist.PolyMNISTClassifier().state_dict(), clf / name)
    out = tmp_path / "poly.png"
    result = _load_example("polymnist").main(["--smoke", "--data-home", str(home), "--out", str(out)])
    assert out.exists() and out.stat().st_size > 1000
    assert result["n_train"] == 64 and 0.0 <= result["coherence_from_m0"] <= 1.0
    assert len(result["coherence_per_modality"]) == 4


def test_biked_example_smoke(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setattr(biked, "BIKED_SHA256", write_biked(home / "biked", jittered_rows(30)))
    out, grid = tmp_path / "bike.png", tmp_path / "grid.png"
    result = _load_example("biked").main(["--smoke", "--data-home", str(home), "--n", "0", "--known", "frame",
                                          "wheels", "--out", str(out), "--examples-out", str(grid)])
    assert out.exists() and grid.exists()
    assert result["n_train"] + result["n_test"] == 30 and result["known"] == ["frame", "wheels"]
    assert -1.0 <= result["ssim_full_bike_mean"] <= 1.0


def test_missing_components_example_smoke(tmp_path):
    """examples/missing_components.py end to end (``--smoke``: one epoch per model) on the bundled digits."""
    out = tmp_path / "missing.png"
    threads = torch.get_num_threads()
    try:  # the example pins one torch thread
        result = _load_example("missing_components").main(["--smoke", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert out.exists() and out.stat().st_size > 0
    assert set(result) == {"complete rows", "30% missing", "complete rows only"}
    assert all(np.isfinite(v["energy_score"]) and v["energy_score"] > 0 for v in result.values())

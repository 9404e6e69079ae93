"""The benchmark scripts run end to end at a tiny setting and write their JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_copula_all_estimators_benchmark_runs(tmp_path):
    threads = torch.get_num_threads()
    try:
        out = tmp_path / "copula.json"
        res = _load("copula").main(["--epochs", "1", "--n-train", "200", "--n-test", "200", "--seeds", "0",
                                    "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads(out.read_text())
    assert set(saved["summary"]) == {"gmrf", "mvae", "mmvae", "mopoe", "mmvaeplus"}
    for s in res["summary"].values():
        assert len(s["table1_unconditional"]["per_coordinate_mean"]) == 2
        assert s["seconds_per_epoch"] > 0
        for kind in ("unconditional", "conditional"):
            assert set(s[kind]) == {"marginal_wasserstein", "joint_wasserstein", "sliced_wasserstein",
                                    "dependency_error"}
    assert saved["settings"]["epochs"] == 1 and len(saved["runs"]) == 5
    merged = _load("copula").main(["--merge", str(out), str(out), "--out", str(tmp_path / "m.json")])
    assert len(merged["runs"]) == 10 and merged["summary"]["mvae"]["seeds"] == [0, 0]


def test_copula_gmrf_benchmark_runs(tmp_path):
    out = tmp_path / "gmrf.json"
    res = _load("copula_gmrf").main(["--epochs", "1", "--n-train", "200", "--n-test", "200", "--seeds", "0", "1",
                                     "--out", str(out)])
    saved = json.loads(out.read_text())
    assert len(saved["runs"]) == 2 and saved["settings"]["epochs"] == 1
    for kind in ("unconditional", "conditional"):
        assert set(res["summary"][kind]) == set(saved["noise_floor"])
        assert all(v["mean"] > 0 for v in res["summary"][kind].values())
    assert res["summary"]["seconds_per_epoch"] > 0


def test_gmrf_step_overhead_benchmark_runs(tmp_path):
    out = tmp_path / "steps.json"
    rows = _load("gmrf_step_overhead").main(["--components", "2", "3", "--steps", "1", "--rounds", "1",
                                             "--batch-size", "32", "--out", str(out)])
    assert [r["D"] for r in rows] == [4, 6]
    assert all(r["gmrf_ms"] > 0 and r["independent_ms"] > 0 for r in rows)
    assert json.loads(out.read_text())["rows"] == rows


def tiny_polymnist_home(tmp_path: Path, monkeypatch, n_train: int, n_test: int, pretrained: bool = False) -> Path:
    """A data home made here, offline: tiny MNIST files (their checksums patched in) and, with
    ``pretrained``, five randomly initialised classifiers in the pretrained classifiers' layout.
    ``MCGEN_DATA`` is unset and ``HOME`` is ``tmp_path``, so nothing outside it is read or written."""
    from mcgen.datasets import polymnist
    from mcgen.metrics.classifiers import PRETRAINED_NAMES, PolyMNISTClassifier
    from tests._datasets_fixtures import make_mnist

    home = tmp_path / "data"
    monkeypatch.setattr(polymnist, "MNIST_FILES", make_mnist(home / "mnist", n_train=n_train, n_test=n_test))
    monkeypatch.delenv("MCGEN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # derived caches go to a fresh ~/.mcgen_data
    if pretrained:
        folder = home / "polymnist_classifiers"
        folder.mkdir()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            for name in PRETRAINED_NAMES:
                torch.save(PolyMNISTClassifier().state_dict(), folder / name)
    return home


def test_polymnist_coherence_benchmark_runs(tmp_path, monkeypatch):
    data = tiny_polymnist_home(tmp_path, monkeypatch, n_train=64, n_test=32, pretrained=True)
    out = tmp_path / "pc.json"
    _load("polymnist_coherence").main(["--betas", "1", "--n-train", "64", "--n-test", "32", "--n-uncond", "32",
                                       "--epochs", "1", "--classifiers", "pretrained", "--data-home", str(data),
                                       "--out", str(out)])
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 1
    (run,) = runs.values()
    assert 0 <= run["learned_prior"]["cond"] <= 1


def test_completion_benchmark_runs(tmp_path):
    import math

    threads = torch.get_num_threads()
    out = tmp_path / "completion.json"
    try:
        res = _load("completion").main(["--quick", "--datasets", "copula,wdbc", "--models", "gmrf,mopoe",
                                        "--seeds", "0", "--n-completions", "4", "--param", "gmrf:beta=0.05",
                                        "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads(out.read_text())
    assert set(saved) == set(res)
    for key in ("command", "settings", "versions", "machine", "datasets", "wall_seconds"):
        assert key in saved
    assert saved["versions"]["torch"] == torch.__version__ and saved["machine"]["cpus"]
    assert "--quick" in saved["command"]
    assert set(saved["datasets"]) == {"copula", "wdbc"}
    for name, entry in saved["datasets"].items():
        assert len(entry["runs"]) == 2 and entry["n_train"] > 0 and entry["n_test"] > 0
        for run in entry["runs"]:
            assert run["error"] is None and run["fit_seconds"] > 0
            assert set(run["tasks"]) == {"leave_one_out", "from_one"}
            for task in run["tasks"].values():
                keys = ["energy_score", "r2_mean", "r2_single", "coverage_50", "coverage_90"]
                keys += ["coherence"] if name == "wdbc" else []
                for key in keys:
                    assert task[key] is not None and math.isfinite(task[key]), (name, key)
                assert task["energy_score"] > 0 and 0 <= task["coverage_90"] <= 1
        assert set(entry["summary"]) == {"leave_one_out", "from_one"}
        assert entry["summary"]["from_one"]["gmrf"]["energy_score"]["n"] == 1
    gmrf = [r for r in saved["datasets"]["wdbc"]["runs"] if r["model"] == "gmrf"][0]
    mopoe = [r for r in saved["datasets"]["wdbc"]["runs"] if r["model"] == "mopoe"][0]
    assert gmrf["params"]["beta"] == 0.05 and gmrf["params"]["latent_dim"] == 4
    assert mopoe["params"]["latent_dim"] == 12 and mopoe["total_latent"] == 12  # d x M, shared
    assert 0 < saved["datasets"]["wdbc"]["references"]["0"]["ceiling"] <= 1
    # the report script turns the JSON into one markdown table per dataset and task
    text = _load("completion_report").main([str(out), "--metrics", "energy_score", "coherence"])
    assert "**wdbc, from_one**" in text and "**copula, leave_one_out**" in text
    row = [line for line in text.splitlines() if line.startswith("| - | gmrf |")][-1]  # wdbc, leave_one_out
    assert f"| {gmrf['tasks']['leave_one_out']['energy_score']:.3f} |" in row and row.count("|") == 6


def test_completion_benchmark_records_a_failing_fit_and_checks_params(tmp_path):
    import pytest

    bench = _load("completion")
    with pytest.raises(SystemExit, match="no parameter 'betta'"):
        bench.parse_params(["gmrf:betta=1"], ["gmrf"])
    with pytest.raises(SystemExit, match="MODEL:key=value"):
        bench.parse_params(["beta=1"], ["gmrf"])
    assert bench.parse_params(["all:likelihood=laplace", "mvae:beta=0.5"], ["gmrf", "mvae"]) == {
        "gmrf": {"likelihood": "laplace"}, "mvae": {"likelihood": "laplace", "beta": 0.5}}
    threads = torch.get_num_threads()
    out = tmp_path / "c.json"
    try:
        bench.main(["--quick", "--datasets", "wdbc", "--models", "gmrf", "mvae", "--seeds", "0",
                    "--n-completions", "2", "--param", "gmrf:beta=-1.0", "--tag", "t", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads(out.read_text())
    assert saved["tag"] == "t"
    gmrf, mvae = saved["datasets"]["wdbc"]["runs"]
    assert "beta" in gmrf["error"] and gmrf["tasks"] == {}
    assert mvae["error"] is None and mvae["tasks"]["from_one"]["energy_score"] > 0
    assert saved["datasets"]["wdbc"]["summary"]["from_one"]["gmrf"]["errors"]


def test_polymnist_defaults_benchmark_runs(tmp_path, monkeypatch):
    data = tiny_polymnist_home(tmp_path, monkeypatch, n_train=256, n_test=64)
    threads = torch.get_num_threads()
    try:
        run = _load("polymnist_defaults").main(["--quick", "--rows-shown", "2", "--param", "prior_components=2",
                                                "--data-home", str(data), "--png", str(tmp_path / "grid.png"),
                                                "--out", str(tmp_path / "grid.json")])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "grid.json").read_text())
    assert saved["params"]["prior_components"] == 2
    assert set(saved["tasks"]) == {"leave_one_out", "from_one"}
    assert 0 <= saved["tasks"]["from_one"]["coherence"] <= 1
    assert (tmp_path / "grid.png").stat().st_size > 0 and len(run["grid"]["labels"]) == 2


def test_graph_scaling_benchmark_runs(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "graph.json"
    try:
        res = _load("graph_scaling").main(["--components", "3", "4", "--steps", "1", "--rounds", "1",
                                           "--batch-size", "16", "--latent-dim", "2", "--features", "2",
                                           "--hidden", "8", "--offdiag-hidden", "8", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads(out.read_text())
    assert [(r["M"], r["graph"], r["edges"]) for r in saved["rows"]] == [(3, "chain", 2), (3, "full", 3),
                                                                         (4, "chain", 3), (4, "full", 6)]
    assert all(r["ms_per_step"] > 0 for r in saved["rows"])
    assert set(res["exponents"]) == {"chain", "full"} and all(b == b for b in res["exponents"].values())


def test_threads_gridsearch_benchmark_runs(tmp_path):
    out = tmp_path / "threads.json"
    rows = _load("threads_gridsearch").main(["--backend", "threading", "--variants", "default", "n_threads=2",
                                             "--rows", "60", "--epochs", "1", "--repeats", "1", "--out", str(out)])
    assert [r["threads_in_fit"] for r in rows] == [[1.0], [2.0]]  # "auto": one thread in a worker thread
    assert json.loads(out.read_text())["rows"][0]["median_s"] > 0


def test_copula_paper_protocol_runs_searches_then_seeds_and_resumes(tmp_path):
    """``copula.py --paper`` at a tiny setting: every configuration searched over the grid on seed 0,
    the chosen beta is the smallest criterion, the other seeds run at it, and ``--resume`` reruns
    nothing.  Fails if the main runs ignored the search or a resumed run repeated finished jobs."""
    out = tmp_path / "paper.json"
    argv = ["--paper", "--epochs", "2", "--search-epochs", "1", "--n-train", "200", "--n-test", "200",
            "--n-val", "200", "--seeds", "0", "1", "--grid", "1", "0.001", "--configs", "gmrf", "mmvae-gaussian",
            "--workers", "2", "--out", str(out)]
    res = _load("copula").main(argv)
    saved = json.loads(out.read_text())
    assert len(saved["runs"]) == 2 * 2 + 2 * 2  # 2 configurations x (2 betas searched + 2 seeds)
    for c in ("gmrf", "mmvae-gaussian"):
        search = [r for r in saved["runs"] if r["phase"] == "search" and r["config"] == c]
        main = [r for r in saved["runs"] if r["phase"] == "main" and r["config"] == c]
        best = min(search, key=lambda r: r["criterion"])["beta"]
        assert {r["beta"] for r in main} == {best} and sorted(r["seed"] for r in main) == [0, 1]
        assert all(r["epochs_run"] == 2 for r in main) and all(r["epochs_run"] == 1 for r in search)
        s = res["summary"][c]
        assert s["beta"] == best and s["seeds"] == [0, 1] and s["ms_per_step"] > 0
        assert len(s["table1_conditional"]["per_coordinate_mean"]) == 2
    assert [r for r in saved["runs"] if r["config"] == "mmvae-gaussian"][0]["model"] == "mmvae"
    again = _load("copula").main(argv + ["--resume"])
    assert len(again["runs"]) == len(saved["runs"])


def test_step_floor_benchmark_runs(tmp_path):
    out = tmp_path / "floor.json"
    threads = torch.get_num_threads()
    try:
        res = _load("step_floor").main(["--epochs", "2", "--n-train", "300", "--configs", "gmrf", "mopoe",
                                        "--gemm", "64", "--rounds", "1", "--allocator", "system", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    rows = {r["config"]: r for r in res["rows"]}
    assert set(rows) == {"gmrf", "mopoe"}
    # the networks alone replay every network call of the loss: the GMRF's 4 encoders, 4 heads,
    # 4 decoders and its global encoder; MoPoE-VAE's 4 encoders, 4 heads and 4 decoders
    assert rows["gmrf"]["network_calls"] == 13 and rows["mopoe"]["network_calls"] == 12
    assert all(r["networks_ms"] > 0 and r["optimizer_ms"] > 0 for r in rows.values())
    for r in rows.values():
        # the floor is the counted FLOPs over the measured throughput; the step cannot beat it by much
        assert r["gflop_per_step"] > 0 and r["floor_ms"] == pytest.approx(r["gflop_per_step"] * 1e12
                                                                          / res["gemm_flops_per_s"])
        assert r["ratio"] > 0.5 and r["profile_ms"]["matrix_products"] > 0
    assert json.loads(out.read_text())["rows"] == res["rows"]


def test_missing_components_benchmark_runs(tmp_path):
    out = tmp_path / "missing.json"
    threads = torch.get_num_threads()
    try:
        res = _load("missing_components").main(["--quick", "--datasets", "copula", "--models", "gmrf", "mopoe",
                                                "--seeds", "0", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads(out.read_text())
    assert len(saved["runs"]) == 2 * 3  # 2 models x (complete, missing, dropped)
    missing = [r for r in saved["runs"] if r["variant"] == "missing"]
    assert all(0.5 < r["observed_fraction"] < 0.9 for r in missing)  # about 70 % of the entries kept
    dropped = [r for r in saved["runs"] if r["variant"] == "dropped"]
    complete = [r for r in saved["runs"] if r["variant"] == "complete"]
    assert all(d["train_rows"] < c["train_rows"] for d, c in zip(dropped, complete))
    cell = res["summary"]["copula"]["gmrf"]["leave_one_out"]
    assert cell["missing_over_complete"] == pytest.approx(cell["missing"]["energy_score"]
                                                          / cell["complete"]["energy_score"])

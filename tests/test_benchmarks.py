"""The benchmark scripts run end to end at a tiny setting and write their JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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

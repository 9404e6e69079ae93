"""Reliability: kill-and-resume, safe persistence, concurrency, jitter accounting."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import mcgen
from mcgen import load_dataset
from mcgen.persistence import FORMAT_VERSION, PersistenceError, read_checkpoint
from tests._factories import FACTORIES, gmrf

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def X():
    return load_dataset("copula", n_samples=200, random_state=0)[0]


def test_resume_from_checkpoint_equals_uninterrupted_fit(X, tmp_path):
    ref = gmrf(max_epochs=4).fit(X)
    part = gmrf(max_epochs=2, checkpoint_dir=tmp_path).fit(X)
    assert read_checkpoint(tmp_path)["epoch"] == 2
    part.set_params(max_epochs=4).fit(X, resume=True)
    assert len(part.history_) == 4
    np.testing.assert_allclose(part.history_[:, "train_loss"], ref.history_[:, "train_loss"], rtol=1e-6)
    np.testing.assert_allclose(part.transform(X), ref.transform(X), rtol=1e-5, atol=1e-6)


def test_resume_refuses_other_parameters_or_data(X, tmp_path):
    gmrf(max_epochs=1, checkpoint_dir=tmp_path).fit(X)
    with pytest.raises(PersistenceError, match="other values of beta"):
        gmrf(max_epochs=2, beta=0.5, checkpoint_dir=tmp_path).fit(X, resume=True)
    with pytest.raises(PersistenceError, match="other data"):
        gmrf(max_epochs=2, checkpoint_dir=tmp_path).fit(X[:100], resume=True)
    with pytest.raises(ValueError, match="needs checkpoint_dir"):
        gmrf().fit(X, resume=True)


KILLED_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {root!r})
    from skorch.callbacks import Callback
    from mcgen import load_dataset
    from tests._factories import gmrf

    class Slow(Callback):
        def on_epoch_end(self, net, **kw):
            time.sleep(0.5)   # leaves the parent time to kill us between epochs

    X, _ = load_dataset("copula", n_samples=200, random_state=0)
    gmrf(max_epochs=50, checkpoint_dir={ckdir!r}, callbacks=[Slow()]).fit(X)
""")


def test_killed_process_resumes_to_the_same_result(X, tmp_path):
    ckdir = tmp_path / "ck"
    script = tmp_path / "train.py"
    script.write_text(KILLED_SCRIPT.format(root=str(ROOT), ckdir=str(ckdir)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            ck = read_checkpoint(ckdir) if (ckdir / "checkpoint.pt").exists() else None
            if ck is not None and ck["epoch"] >= 3:
                break
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    done = read_checkpoint(ckdir)["epoch"]
    assert 3 <= done < 50
    total = done + 2
    resumed = gmrf(max_epochs=total, checkpoint_dir=ckdir).fit(X, resume=True)
    ref = gmrf(max_epochs=total).fit(X)
    assert len(resumed.history_) == total
    np.testing.assert_allclose(resumed.history_[:, "train_loss"], ref.history_[:, "train_loss"], rtol=1e-6)
    np.testing.assert_allclose(resumed.transform(X), ref.transform(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_save_load_round_trip(name, X, tmp_path):
    est = FACTORIES[name]().fit(X)
    est.save(tmp_path / "m.mcgen")
    loaded = mcgen.load(tmp_path / "m.mcgen")
    assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
    assert loaded.score(X) == est.score(X)
    for a, b in zip(loaded.sample(5, random_state=1), est.sample(5, random_state=1)):
        np.testing.assert_array_equal(a, b)
    unfitted = FACTORIES[name]()
    unfitted.save(tmp_path / "u.mcgen")
    assert not hasattr(mcgen.load(tmp_path / "u.mcgen"), "net_")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ.get("MCGEN_EVIL_MARKER", "/nonexistent/x"),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch's note on the crafted file
def test_untrusted_file_cannot_run_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("MCGEN_EVIL_MARKER", str(marker))
    path = tmp_path / "evil.mcgen"
    with open(path, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, "kind": "mcgen-estimator", "payload": _Evil()}, f)
    with pytest.raises(PersistenceError, match="not a safe mcgen file"):
        mcgen.load(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the file really is malicious: an unsafe load runs its code
    assert marker.exists()
    marker.unlink()
    # a plain pickle is refused too
    with open(tmp_path / "p.mcgen", "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(PersistenceError):
        mcgen.load(tmp_path / "p.mcgen")
    assert not marker.exists()


def test_version_mismatch_and_wrong_files(X, tmp_path):
    est = gmrf(max_epochs=1).fit(X)
    est.save(tmp_path / "m.mcgen")
    payload = torch.load(tmp_path / "m.mcgen", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "future.mcgen")
    with pytest.raises(PersistenceError, match=f"format version {FORMAT_VERSION + 1}"):
        mcgen.load(tmp_path / "future.mcgen")
    torch.save({"a": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(PersistenceError, match="not an mcgen estimator file"):
        mcgen.load(tmp_path / "other.pt")


def test_gpu_saved_model_loads_on_cpu(X, tmp_path):
    est = gmrf(max_epochs=1).fit(X)
    est.save(tmp_path / "m.mcgen")
    payload = torch.load(tmp_path / "m.mcgen", weights_only=True)
    payload["params"] = payload["params"].replace('"device": "cpu"', '"device": "cuda"')
    torch.save(payload, tmp_path / "gpu.mcgen")
    if torch.cuda.is_available():
        loaded = mcgen.load(tmp_path / "gpu.mcgen", device="cpu")
    else:
        with pytest.warns(UserWarning, match="loaded on the CPU"):
            loaded = mcgen.load(tmp_path / "gpu.mcgen")
    assert loaded.device == "cpu"
    assert loaded.score(X) == est.score(X)


def test_concurrent_sampling_and_completion_are_valid(X):
    est = gmrf(max_epochs=1).fit(X)
    seeds = list(range(8))
    serial_s = [est.sample(50, random_state=s) for s in seeds]
    serial_p = [est.predict_missing([X.arrays[1]], known=[1], random_state=s) for s in seeds]
    barrier = threading.Barrier(4)

    def work(s):
        if s < 4:
            barrier.wait()
        return est.sample(50, random_state=s), est.predict_missing([X.arrays[1]], known=[1], random_state=s)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, seeds))
    for (smp, pm), ref_s, ref_p in zip(results, serial_s, serial_p):
        for a, b in zip(smp, ref_s):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(pm, ref_p):
            np.testing.assert_array_equal(a, b)


def test_jitter_events_are_counted_in_history(X):
    """Jittered Cholesky factorisations reach the history: a callback hands the prior a singular
    covariance (rank one) before every batch, and ``set_prior`` must jitter it once each time, so
    each epoch records one event per batch.  Catches a counter that never counts, and
    ``set_prior`` (or the conditioning and refit paths, which use the same counting) discarding
    the event.  A normal fit records none."""
    from skorch.callbacks import Callback

    class SingularPrior(Callback):
        def on_batch_begin(self, net, batch=None, training=None, **kwargs):
            if training:
                D = net.module_.D
                net.module_.set_prior(torch.zeros(D), torch.ones(D, D))

    est = gmrf(max_epochs=2, prior_components=1, refit_prior=False).fit(X)
    assert est.history_[:, "cholesky_jitter"] == [0, 0]
    batches = -(-len(X.arrays[0]) // 64)
    est = gmrf(max_epochs=2, prior_components=1, refit_prior=False, callbacks=[SingularPrior()]).fit(X)
    assert est.history_[:, "cholesky_jitter"] == [batches, batches]


def test_gradient_clipping_bounds_each_update(X):
    from skorch.callbacks import Callback

    class Snapshot(Callback):
        def on_train_begin(self, net, **kwargs):
            self.start_ = self.flat(net)

        def on_train_end(self, net, **kwargs):
            self.moved_ = float((self.flat(net) - self.start_).norm())

        @staticmethod
        def flat(net):
            return torch.cat([p.detach().flatten().clone() for p in net.module_.parameters()])

    # 200 rows, batch 200: exactly one SGD step
    free, clipped = Snapshot(), Snapshot()
    gmrf(max_epochs=1, optimizer="sgd", lr=1.0, batch_size=200, callbacks=[free]).fit(X)
    gmrf(max_epochs=1, optimizer="sgd", lr=1.0, batch_size=200, clip_grad_norm=1e-6, callbacks=[clipped]).fit(X)
    assert clipped.moved_ <= 1.01e-6  # a gradient clipped to norm 1e-6, times lr 1
    assert free.moved_ > 1e-3

"""``fit(resume=True)`` resumes only the fit of the same data, and says that it resumed (issue 13,
item 4)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from mcgen import Components, load_dataset
from mcgen.persistence import PersistenceError, read_checkpoint
from tests._factories import gmrf, mopoe

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def X():
    return load_dataset("copula", n_samples=120, random_state=0)[0]


def _other_data(X, how):
    arrays = list(X.arrays)
    if how == "reversed rows":
        return Components([a[::-1] for a in arrays])
    if how == "times two":
        return Components([a * 2 for a in arrays])
    if how == "other draw":
        return load_dataset("copula", n_samples=120, random_state=1)[0]
    if how == "one value":
        arrays = [a.copy() for a in arrays]
        arrays[3][7, 1] += 1e-3
        return Components(arrays)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["reversed rows", "times two", "other draw", "one value"])
@pytest.mark.parametrize("factory", [gmrf, mopoe], ids=["gmrf", "mopoe"])
def test_resume_refuses_other_data_of_the_same_shape(X, tmp_path, how, factory):
    factory(max_epochs=1, checkpoint_dir=tmp_path).fit(X)
    assert len(read_checkpoint(tmp_path)["data_sha256"]) == 64
    est = factory(max_epochs=2, checkpoint_dir=tmp_path)
    with pytest.raises(PersistenceError, match=r"the checkpoint in .* was written for other data: the SHA-256 of the "
                                               r"training data differs \(same rows and shapes, other values or row "
                                               r"order\); resume with the data of the interrupted fit"):
        est.fit(_other_data(X, how), resume=True)
    assert not hasattr(est, "net_")


def test_resume_accepts_the_same_data_in_another_container_or_dtype(X, tmp_path):
    gmrf(max_epochs=1, checkpoint_dir=tmp_path).fit(X)
    same = [np.array(a, dtype=np.float64) for a in X.arrays]  # a list of float64 copies of the float32 data
    est = gmrf(max_epochs=2, checkpoint_dir=tmp_path).fit(same, resume=True)
    assert len(est.history_) == 2


def test_resuming_is_said(X, tmp_path, capsys, caplog):
    gmrf(max_epochs=1, checkpoint_dir=tmp_path).fit(X)
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="mcgen"):
        gmrf(max_epochs=3, checkpoint_dir=tmp_path).fit(X, resume=True)
    assert capsys.readouterr().out == ""  # verbose=0 prints nothing ...
    assert any("resuming from the checkpoint" in r.getMessage() and "after epoch 1 of 3" in r.getMessage()
               for r in caplog.records)  # ... but logs it
    gmrf(max_epochs=4, checkpoint_dir=tmp_path, verbose=1).fit(X, resume=True)
    out = capsys.readouterr().out
    assert f"resuming from the checkpoint {tmp_path / 'checkpoint.pt'} after epoch 3 of 4: training epoch 4" in out
    empty = tmp_path / "empty"
    gmrf(max_epochs=1, checkpoint_dir=empty, verbose=1).fit(X, resume=True)
    assert f"no checkpoint in {empty}: training from scratch" in capsys.readouterr().out


def test_a_checkpoint_without_a_fingerprint_resumes_with_a_warning(X, tmp_path):
    """Checkpoints written before the fingerprint existed still resume (and say they cannot check)."""
    from mcgen.persistence import write_checkpoint

    gmrf(max_epochs=1, checkpoint_dir=tmp_path).fit(X)
    ck = read_checkpoint(tmp_path)
    del ck["data_sha256"]
    write_checkpoint(tmp_path, {k: v for k, v in ck.items() if k not in ("format_version", "kind", "mcgen_version",
                                                                         "weights_sha256")})
    with pytest.warns(UserWarning, match="records no fingerprint of its training data"):
        est = gmrf(max_epochs=2, checkpoint_dir=tmp_path).fit(X, resume=True)
    assert len(est.history_) == 2

"""PolyMNIST construction, caching, MNIST download/checksums and the digit classifiers, on tiny
self-made MNIST files (never the real data)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch

import mcgen
from mcgen.datasets import polymnist
from mcgen.datasets._fetch import ChecksumError
from mcgen.metrics import classifiers
from tests._datasets_fixtures import make_mnist, write_idx_gz


@pytest.fixture
def mnist_home(tmp_path, monkeypatch):
    """data_home with tiny MNIST files (60 train / 30 test) and their checksums patched in."""
    files = make_mnist(tmp_path / "home" / "mnist", n_train=60, n_test=30)
    monkeypatch.setattr(polymnist, "MNIST_FILES", files)
    return tmp_path / "home"


def test_shapes_ranges_and_labels(mnist_home):
    X, info = mcgen.load_dataset("polymnist", split="train", data_home=mnist_home, progress=False)
    images, mnist_labels = polymnist.load_mnist("train", data_home=mnist_home)
    assert X.n_components == 5 and len(X) == 60
    for a in X.arrays:
        assert a.dtype == np.float32 and a.shape == (60, 3, 28, 28)
        assert a.min() >= 0.0 and a.max() <= 1.0
    assert info["names"] == ["m0", "m1", "m2", "m3", "m4"]
    assert info["kinds"] == ["image"] * 5 and info["shapes"] == [(3, 28, 28)] * 5
    assert info["backgrounds"] == list(polymnist.BACKGROUNDS)
    for key in ("description", "license", "source"):
        assert info[key]
    src = info["source_index"]
    # every modality of a tuple shows the same digit, in a different MNIST image
    for m in range(5):
        np.testing.assert_array_equal(mnist_labels[src[:, m]], info["labels"])
        # with n_samples=None every MNIST image is used exactly once per modality
        np.testing.assert_array_equal(np.sort(src[:, m]), np.arange(60))
    assert np.mean(src[:, 0] != src[:, 1]) > 0.5
    # digit pixels are the inverted background: at the digit's pixels the image differs from
    # the (unknown) background, at others it does not matter -- check the exact relation below


def test_exact_construction_on_small_backgrounds():
    rng = np.random.default_rng(1)
    labels = np.arange(20) % 10
    from tests._datasets_fixtures import digit_images

    images = digit_images(labels, rng)
    bgs = [rng.integers(0, 256, size=(30 + m, 31, 3), dtype=np.uint8) for m in range(5)]
    mods, tl, src = polymnist.make_polymnist(images, labels, random_state=3, backgrounds=bgs)
    assert [m.shape for m in mods] == [(20, 3, 28, 28)] * 5 and all(m.dtype == np.uint8 for m in mods)
    for m, bg in enumerate(bgs):
        for i in range(20):
            digit = images[src[i, m]] > 128
            got = mods[m][i].transpose(1, 2, 0)
            matches = 0
            for r in range(bg.shape[0] - 27):
                for c in range(bg.shape[1] - 27):
                    patch = bg[r:r + 28, c:c + 28]
                    expected = np.where(digit[..., None], 255 - patch, patch)
                    matches += bool(np.array_equal(got, expected))
            assert matches >= 1, f"modality {m} row {i} is not an inverted-digit crop of its background"


def test_determinism_and_subsets(mnist_home):
    a, ia = polymnist.load_polymnist(split="test", data_home=mnist_home, random_state=0, cache=False, progress=False)
    b, ib = polymnist.load_polymnist(split="test", data_home=mnist_home, random_state=0, cache=False, progress=False)
    c, ic = polymnist.load_polymnist(split="test", data_home=mnist_home, random_state=1, cache=False, progress=False)
    for x, y in zip(a.arrays, b.arrays):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(ia["labels"], ib["labels"])
    assert any(not np.array_equal(x, z) for x, z in zip(a.arrays, c.arrays))
    sub, isub = polymnist.load_polymnist(split="test", n_samples=12, data_home=mnist_home, random_state=0,
                                         cache=False, progress=False)
    assert len(sub) == 12
    # the tuples (which MNIST images join) are the first 12 of the full construction
    np.testing.assert_array_equal(isub["source_index"], ia["source_index"][:12])
    with pytest.raises(ValueError, match="n_samples"):
        polymnist.load_polymnist(split="test", n_samples=31, data_home=mnist_home, cache=False)
    with pytest.raises(ValueError, match="split"):
        polymnist.load_polymnist(split="valid", data_home=mnist_home)


def test_cache_is_reused_without_mnist(mnist_home, monkeypatch):
    X1, info1 = polymnist.load_polymnist(split="test", data_home=mnist_home, random_state=5, progress=False)
    assert info1["cache_path"] is not None and info1["cache_path"].endswith(".npz")
    shutil.rmtree(mnist_home / "mnist")

    def boom(*a, **k):
        raise AssertionError("rebuilt instead of reading the cache")

    monkeypatch.setattr(polymnist, "make_polymnist", boom)
    X2, info2 = polymnist.load_polymnist(split="test", data_home=mnist_home, random_state=5, progress=False)
    assert info2["cache_path"] == info1["cache_path"]
    for x, y in zip(X1.arrays, X2.arrays):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(info1["labels"], info2["labels"])
    # another seed is another cache entry (and needs MNIST, which is gone)
    with pytest.raises(FileNotFoundError):
        polymnist.load_polymnist(split="test", data_home=mnist_home, random_state=6, download_if_missing=False)


def test_checksum_failure_raises(mnist_home, monkeypatch):
    files = dict(polymnist.MNIST_FILES)
    name, _ = files["train_labels"]
    files["train_labels"] = (name, hashlib.sha256(b"something else").hexdigest())
    monkeypatch.setattr(polymnist, "MNIST_FILES", files)
    with pytest.raises(ChecksumError, match="train-labels-idx1-ubyte.gz"):
        polymnist.load_polymnist(split="train", data_home=mnist_home, cache=False)


def test_real_mnist_checksums_reject_fixture(tmp_path):
    """With the canonical digests (no patching) the fixture files are rejected."""
    make_mnist(tmp_path / "mnist")
    with pytest.raises(ChecksumError):
        polymnist.load_mnist("test", data_home=tmp_path)


def test_download_through_file_url(tmp_path, monkeypatch):
    source = tmp_path / "mirror"
    files = make_mnist(source, n_train=20, n_test=10)
    monkeypatch.setattr(polymnist, "MNIST_FILES", files)
    home = tmp_path / "empty_home"
    X, info = polymnist.load_polymnist(split="train", data_home=home, mirrors=[source.as_uri() + "/"],
                                       progress=False)
    assert len(X) == 20
    for name, _ in files.values():
        if name.startswith("train"):
            assert (home / "mnist" / name).read_bytes() == (source / name).read_bytes()
    # a mirror serving a corrupt file: the checksum fails and nothing is kept
    bad = tmp_path / "bad_mirror"
    bad.mkdir()
    write_idx_gz(bad / files["test_images"][0], np.zeros((10, 28, 28), np.uint8))
    shutil.copy(source / files["test_labels"][0], bad / files["test_labels"][0])
    with pytest.raises(ChecksumError):
        polymnist.load_polymnist(split="test", data_home=home, mirrors=[bad.as_uri() + "/"], cache=False)
    assert not (home / "mnist" / files["test_images"][0]).exists()


def test_read_idx_rejects_bad_files(tmp_path):
    p = tmp_path / "x.idx"
    p.write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="unsigned-byte IDX"):
        polymnist.read_idx(p)
    p.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="announces"):
        polymnist.read_idx(p)
    p.write_bytes(b"\x00\x00\x08\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6)))
    np.testing.assert_array_equal(polymnist.read_idx(p), np.arange(6, dtype=np.uint8).reshape(2, 3))


# ------------------------------------------------------------------------------------------------
# classifiers
# ------------------------------------------------------------------------------------------------
def _save_classifiers(folder, seed=0, sums=True):
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    models = [polymnist.PolyMNISTClassifier() for _ in range(5)]
    lines = []
    for name, model in zip(polymnist.PRETRAINED_NAMES, models):
        torch.save(model.state_dict(), folder / name)
        lines.append(f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}")
    if sums:
        (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return models


def test_pretrained_classifiers_load_by_path(tmp_path):
    originals = _save_classifiers(tmp_path / "clf")
    expected_keys = {f"encoder.{i}.{w}" for i in (0, 3, 7, 10) for w in ("weight", "bias")}
    assert set(originals[0].state_dict()) == expected_keys
    loaded = polymnist.load_pretrained_classifiers(tmp_path / "clf")
    x = torch.rand(7, 3, 28, 28)
    for orig, new in zip(originals, loaded):
        assert not new.training
        orig.eval()
        torch.testing.assert_close(new(x), orig(x), rtol=0, atol=0)
    # explicit file list works too
    files = [tmp_path / "clf" / n for n in polymnist.PRETRAINED_NAMES]
    assert len(polymnist.load_pretrained_classifiers(files)) == 5
    # a corrupted file is caught by SHA256SUMS
    with open(files[2], "ab") as f:
        f.write(b"\0")
    with pytest.raises(ChecksumError, match="pretrained_img_to_digit_clf_m2"):
        polymnist.load_pretrained_classifiers(tmp_path / "clf")
    with pytest.raises(FileNotFoundError):
        polymnist.load_pretrained_classifiers(tmp_path / "nowhere")


def test_train_classifiers_learns_and_is_cached(tmp_path, monkeypatch):
    files = make_mnist(tmp_path / "home" / "mnist", n_train=200, n_test=60, seed=2)
    monkeypatch.setattr(polymnist, "MNIST_FILES", files)
    torch.set_num_threads(1)
    X, info = polymnist.load_polymnist(split="train", data_home=tmp_path / "home", progress=False)
    Xt, info_t = polymnist.load_polymnist(split="test", data_home=tmp_path / "home", progress=False)
    kw = dict(X_test=Xt, labels_test=info_t["labels"], data_home=tmp_path / "home", max_epochs=25, batch_size=20,
              progress=False)
    models = polymnist.train_classifiers(X, info["labels"], **kw)
    accs = [m.test_accuracy for m in models]
    assert all(not m.training for m in models)
    assert min(accs) >= 0.8, accs  # chance is 0.1
    np.testing.assert_allclose(polymnist.evaluate_classifiers(models, Xt, info_t["labels"]), accs)

    def boom(*a, **k):
        raise AssertionError("retrained instead of reading the cache")

    monkeypatch.setattr(classifiers, "_fit_one", boom)
    again = polymnist.train_classifiers(X, info["labels"], **kw)
    for a, b in zip(models, again):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    assert [m.test_accuracy for m in again] == accs
    with pytest.raises(ValueError, match="modality 0"):
        polymnist.train_classifiers([x[:, :, :14] for x in X.arrays], info["labels"], cache=False)

"""BIKED loaders, validity filter and renderer, on a few self-made BIKED rows (never the full table)."""

from __future__ import annotations

import numpy as np
import pytest

import mcgen
from mcgen.datasets import biked
from mcgen.datasets import biked_render as br
from mcgen.datasets._fetch import ChecksumError
from tests._datasets_fixtures import ROAD_BIKE, biked_rows, jittered_rows, write_biked


@pytest.fixture
def biked_home(tmp_path, monkeypatch):
    rows, valid = biked_rows()
    digest = write_biked(tmp_path / "home" / "biked", rows, ids=[11, 12, 13, 14, 15, 16, 17, 18])
    monkeypatch.setattr(biked, "BIKED_SHA256", digest)
    return tmp_path / "home"


def _params(rows):
    return {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0]}


def test_column_split_covers_the_table_exactly():
    split_cols = [c for cols in biked.COLUMN_SPLIT.values() for c in cols]
    assert len(split_cols) == len(set(split_cols))
    assert set(split_cols) | set(biked.CONSTANT_COLUMNS) == set(ROAD_BIKE)
    assert not set(split_cols) & set(biked.CONSTANT_COLUMNS)
    assert len(ROAD_BIKE) == 96
    assert {k: len(v) for k, v in biked.COLUMN_SPLIT.items()} == {
        "frame": 50, "wheels": 18, "drivetrain": 6, "saddle": 3, "cockpit": 15}


def test_validity_filter_drops_exactly_the_invalid_designs(biked_home):
    X, info = mcgen.load_dataset("biked_parametric", data_home=biked_home, progress=False)
    rows, valid = biked_rows()
    np.testing.assert_array_equal(info["design_ids"], np.array([11, 12, 13, 14, 15, 16, 17, 18])[valid])
    rep = info["filter_report"]
    assert rep["CS textfield in [300, 800]"] == 2  # 0 mm and 2000 mm chain stays
    assert rep["Head angle in [55, 85]"] == 1  # the 19-degree head angle
    assert rep["head tube extensions < head tube length"] == 1
    assert rep["saddle height > seat tube length"] == 0
    mask, failed = biked.validity_mask(biked.clean_params(_params(rows)))
    np.testing.assert_array_equal(mask, valid)
    # the ERD outliers are clipped into [0.6 BSD, BSD], not dropped
    cleaned = biked.clean_params(_params(rows))
    assert cleaned["ERD rear"][5] == 622.0 and cleaned["ERD front"][5] == pytest.approx(0.6 * 622.0)
    assert cleaned["ERD rear"][0] == 582.0


def test_parametric_standardisation_and_one_hot(biked_home):
    X, info = biked.load_biked_parametric(data_home=biked_home, progress=False)
    raw, _ = biked.load_biked_parametric(data_home=biked_home, standardize=False, progress=False)
    assert info["names"] == ["frame", "wheels", "drivetrain", "saddle", "cockpit"]
    assert info["kinds"] == ["vector"] * 5
    assert info["shapes"] == [(50,), (18,), (6,), (3,), (15,)]
    assert [a.shape for a in X.arrays] == [(4, 50), (4, 18), (4, 6), (4, 3), (4, 15)]
    for k, (a, r) in enumerate(zip(X.arrays, raw.arrays)):
        assert a.dtype == np.float32
        cols = info["columns"][info["names"][k]]
        cont = info["continuous"][k]
        assert [("OHCLASS" in c) or (c in biked.BINARY_COLUMNS) for c in cols] == list(~cont)
        np.testing.assert_array_equal(a[:, ~cont], r[:, ~cont])  # one-hot / binary untouched
        assert set(np.unique(r[:, ~cont])) <= {0.0, 1.0}
        sd = r[:, cont].std(0)
        np.testing.assert_allclose(a[:, cont].mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(a[:, cont].std(0)[sd > 0], 1.0, rtol=1e-4)
        np.testing.assert_allclose(a * info["scale"][k] + info["mean"][k], r, rtol=1e-5, atol=1e-3)
    # the raw values are the table's (clipped ERD in row 16)
    wheels = dict(zip(info["columns"]["wheels"], raw.arrays[1][3]))
    assert wheels["ERD rear"] == 622.0 and wheels["BSD rear"] == 622.0


def test_table_checksum_and_download(tmp_path, monkeypatch):
    rows, _ = biked_rows()
    src = tmp_path / "upstream"
    digest = write_biked(src, rows)
    home = tmp_path / "home"
    with pytest.raises(ChecksumError, match="clip_sBIKED_processed.csv"):  # canonical digest != fixture
        biked.load_biked_parametric(data_home=home, base_urls=[src.as_uri() + "/"], progress=False)
    assert not (home / "biked" / biked.BIKED_FILE).exists()
    monkeypatch.setattr(biked, "BIKED_SHA256", digest)
    X, info = biked.load_biked_parametric(data_home=home, base_urls=[src.as_uri() + "/"], progress=False)
    assert (home / "biked" / biked.BIKED_FILE).read_bytes() == (src / biked.BIKED_FILE).read_bytes()
    assert len(X) == 4


def test_geometry_matches_the_parameters():
    rows, valid = biked_rows()
    p = biked.clean_params(_params([r for r, v in zip(rows, valid) if v]))
    g = br.bike_geometry(p)
    bb = g["bb"]
    d = lambda a, b: np.hypot(*(a - b).T)  # noqa: E731
    np.testing.assert_allclose(d(g["rear_axle"], bb), p["CS textfield"], rtol=1e-12)
    np.testing.assert_allclose(g["rear_axle"][:, 1] - bb[:, 1], p["BB textfield"], rtol=1e-12)
    np.testing.assert_allclose(d(g["seat_top"], bb), p["Seat tube length"], rtol=1e-12)
    np.testing.assert_allclose(d(g["saddle"], bb), p["Saddle height"], rtol=1e-12)
    np.testing.assert_allclose(d(g["ht_dt"], bb), p["DT Length"], rtol=1e-12)
    np.testing.assert_allclose(g["ht_top"][:, 1] - bb[:, 1], p["Stack"], rtol=1e-12)
    np.testing.assert_allclose(d(g["ht_top"], g["ht_bottom"]), p["Head tube length textfield"], rtol=1e-12)
    np.testing.assert_allclose(d(g["ht_top"], g["ht_dt"]),
                               p["Head tube length textfield"] - p["Head tube lower extension2"], rtol=1e-12)
    # head tube along the head angle, seat tube along the seat angle
    ht = g["ht_top"] - g["ht_bottom"]
    np.testing.assert_allclose(np.degrees(np.arctan2(ht[:, 1], -ht[:, 0])), p["Head angle"], rtol=1e-12)
    st = g["seat_top"] - bb
    np.testing.assert_allclose(np.degrees(np.arctan2(st[:, 1], -st[:, 0])), p["Seat angle"], rtol=1e-12)
    # both tyres touch the ground (y = 0)
    np.testing.assert_allclose(g["rear_axle"][:, 1], p["BSD rear"] / 2 + p["Wheel width rear"], rtol=1e-12)
    np.testing.assert_allclose(g["front_axle"][:, 1], p["BSD front"] / 2 + p["Wheel width front"], rtol=1e-12)
    # the front axle is FORK_RAKE ahead of the steering axis
    u = ht / np.hypot(*ht.T)[:, None]
    rel = g["front_axle"] - g["ht_bottom"]
    np.testing.assert_allclose(np.abs(rel[:, 0] * u[:, 1] - rel[:, 1] * u[:, 0]), br.FORK_RAKE, rtol=1e-9)


def test_renderer_invariants():
    rows = jittered_rows(9, seed=3)
    p = biked.clean_params(_params(rows))
    assert biked.validity_mask(p)[0].all()
    size = 64
    imgs = br.render_bikes(p, size)
    assert imgs.shape == (9, 5, size, size) and imgs.dtype == np.float32
    assert imgs.min() >= 0 and imgs.max() <= 1
    np.testing.assert_array_equal(br.render_bikes(p, size), imgs)  # deterministic
    # every component draws something, and nothing reaches the canvas border (inside the frame)
    assert (imgs.reshape(9, 5, -1).max(-1) > 0.5).all()
    border = np.concatenate([imgs[..., 0, :], imgs[..., -1, :], imgs[..., :, 0], imgs[..., :, -1]], axis=-1)
    assert border.max() == 0.0
    # wheel centres: the hubs, computed by hand from the parameters, are the centroids of the
    # wheel pixels (rotationally symmetric drawing) and are lit by the hub disk
    r_rear = p["BSD rear"] / 2 + p["Wheel width rear"]
    rear_x = -np.sqrt(p["CS textfield"] ** 2 - p["BB textfield"] ** 2)
    scale = size / br.SIDE
    rear_px = np.stack([(rear_x + br.X_BACK) * scale, (br.SIDE - br.Y_BELOW - r_rear) * scale], 1)
    front_px = br.world_to_pixel(br.bike_geometry(p)["front_axle"], size)
    cols, rows_ = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    for i in range(9):
        wheels = imgs[i, 1]
        split = (rear_px[i, 0] + front_px[i, 0]) / 2
        for hub, side in ((rear_px[i], cols < split), (front_px[i], cols >= split)):
            w = wheels * side
            centroid = np.array([(w * cols).sum(), (w * rows_).sum()]) / w.sum()
            np.testing.assert_allclose(centroid, hub, atol=0.2)
            assert wheels[int(hub[1]), int(hub[0])] > 0.6
        # the tyre's outer edge is one tyre radius from the hub
        radius_px = (p["BSD front"][i] / 2 + p["Wheel width front"][i]) * scale
        r = np.hypot(cols - front_px[i, 0], rows_ - front_px[i, 1])
        assert wheels[(r > radius_px + 1.0) & (cols >= split)].max() == 0.0
        assert wheels[(np.abs(r - (radius_px - 0.5)) < 0.5)].min() > 0.3
    # the saddle is drawn around the saddle point, the crank around the bottom bracket
    g = br.bike_geometry(p)
    for name, key in (("saddle", "saddle"), ("crank", "bb")):
        j = br.COMPONENTS.index(name)
        pt = br.world_to_pixel(g[key], size)
        for i in range(9):
            lit = np.argwhere(imgs[i, j] > 0.5)  # (row, col)
            dist = np.hypot(lit[:, 1] + 0.5 - pt[i, 0], lit[:, 0] + 0.5 - pt[i, 1])
            assert dist.min() < 1.5 and dist.max() < 9


def test_images_loader_cache_and_full_bike(biked_home, monkeypatch):
    X, info = mcgen.load_dataset("biked_images", data_home=biked_home, progress=False)
    assert info["names"] == list(br.COMPONENTS)
    assert info["kinds"] == ["image"] * 5 and info["shapes"] == [(1, 64, 64)] * 5
    assert [a.shape for a in X.arrays] == [(4, 1, 64, 64)] * 5
    assert all(a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1 for a in X.arrays)
    np.testing.assert_array_equal(info["design_ids"], [11, 12, 13, 16])
    for key in ("description", "license", "source"):
        assert info[key]
    # the cached uint8 images are the renderer's output, rounded
    direct = br.render_bikes({k: v for k, v in info["params"].items()}, 64)
    np.testing.assert_allclose(np.stack([a[:, 0] for a in X.arrays], 1), direct, atol=0.5 / 255 + 1e-7)
    full = br.full_bike(np.stack([a[:, 0] for a in X.arrays], 1))
    np.testing.assert_array_equal(full, np.max([a[:, 0] for a in X.arrays], axis=0))
    # hub pixels in info are the geometry's
    g = br.bike_geometry(info["params"])
    np.testing.assert_allclose(info["hub_pixels"][:, 0], br.world_to_pixel(g["rear_axle"], 64))

    def boom(*a, **k):
        raise AssertionError("re-rendered instead of reading the cache")

    monkeypatch.setattr(br, "render_bikes", boom)
    X2, info2 = biked.load_biked_images(data_home=biked_home, progress=False)
    assert info2["cache_path"] == info["cache_path"]
    for a, b in zip(X.arrays, X2.arrays):
        np.testing.assert_array_equal(a, b)
    sub, isub = biked.load_biked_images(data_home=biked_home, n_samples=2, random_state=1, progress=False)
    assert len(sub) == 2 and set(isub["design_ids"]) <= {11, 12, 13, 16}
    with pytest.raises(ValueError, match="size"):
        biked.load_biked_images(data_home=biked_home, size=4)

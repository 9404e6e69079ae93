"""Small, self-made fixtures for the dataset tests: tiny MNIST IDX files and a few BIKED rows.

Nothing here reads the real data; the tests point the loaders at these files and patch the
expected checksums to the fixtures' own digests.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

from mcgen.datasets import biked, polymnist


# ------------------------------------------------------------------------------------------------
# MNIST
# ------------------------------------------------------------------------------------------------
def write_idx_gz(path: Path, array: np.ndarray) -> str:
    """Write ``array`` (uint8) as a gzipped IDX file; return the SHA-256 of the raw IDX bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(raw)
    return hashlib.sha256(raw).hexdigest()


def digit_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 "digit" per label: a bright bar whose position encodes the class, jittered by a
    pixel (different "handwriting"), over faint noise that stays below the 128 threshold."""
    n = len(labels)
    imgs = rng.integers(0, 100, size=(n, 28, 28)).astype(np.uint8)
    jr = rng.integers(-1, 2, size=n)
    jc = rng.integers(-1, 2, size=n)
    for i, c in enumerate(labels):
        r0 = 3 + 12 * (c // 5) + jr[i]
        c0 = 2 + 5 * (c % 5) + jc[i]
        imgs[i, r0:r0 + 10, c0:c0 + 3] = 255
    return imgs


def make_mnist(folder: Path, n_train: int = 60, n_test: int = 30, seed: int = 0) -> dict[str, tuple[str, str]]:
    """Write the four MNIST files into ``folder``; return a replacement for ``MNIST_FILES``."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = digit_images(labels, rng)
        for kind, arr in (("images", images), ("labels", labels)):
            name = polymnist.MNIST_FILES[f"{split}_{kind}"][0]
            files[f"{split}_{kind}"] = (name, write_idx_gz(folder / name, arr))
    return files


# ------------------------------------------------------------------------------------------------
# BIKED
# ------------------------------------------------------------------------------------------------
#: A real steel road bike (the first design of the BIKED table), all 96 columns.
ROAD_BIKE = {
    "CS textfield": 430.0, "BB textfield": 67.0, "Stack": 565.6, "Head angle": 73.0,
    "Head tube length textfield": 135.6, "Seat stay junction0": 45.0, "Seat tube length": 588.7,
    "Seat angle": 72.5, "DT Length": 664.0206902489724, "BB diameter": 40.0, "ttd": 32.5, "dtd": 38.45,
    "csd": 23.35, "ssd": 13.0, "Chain stay position on BB": 15.0, "SSTopZOFFSET": 7.0,
    "Head tube upper extension2": 40.0, "Seat tube extension2": 28.7, "Head tube lower extension2": 50.0,
    "SEATSTAYbrdgshift": 330.0, "CHAINSTAYbrdgshift": 350.0, "SEATSTAYbrdgdia1": 16.0, "CHAINSTAYbrdgdia1": 18.0,
    "SEATSTAYbrdgCheck": 0.0, "CHAINSTAYbrdgCheck": 0.0, "Dropout spacing": 130.0,
    "Wall thickness Bottom Bracket": 2.0, "Wall thickness Top tube": 0.9, "Wall thickness Head tube": 1.1,
    "Wall thickness Down tube": 0.9, "Wall thickness Chain stay": 1.2, "Wall thickness Seat stay": 1.0,
    "Wall thickness Seat tube": 0.9, "ERD rear": 582.0, "Wheel width rear": 35.0, "BSD front": 622.0,
    "Wheel width front": 35.0, "ERD front": 582.0, "BSD rear": 622.0, "Display AEROBARS": 0.0, "BB length": 68.0,
    "Head tube diameter": 45.0, "Wheel cut": 692.0, "Seat tube diameter": 34.0, "Front Fender include": 0.0,
    "Rear Fender include": 0.0, "Number of cogs": 9.0, "Number of chainrings": 1.0, "Display RACK": 0.0,
    "FIRST color R_RGB": 255.0, "FIRST color G_RGB": 0.0, "FIRST color B_RGB": 0.0, "SPOKES composite front": 1.0,
    "SBLADEW front": 80.0, "SBLADEW rear": 80.0, "Saddle length": 298.0, "Saddle height": 768.0,
    "Down tube diameter": 34.9, "Seatpost LENGTH": 300.0, "MATERIAL OHCLASS: ALUMINIUM": 0.0,
    "MATERIAL OHCLASS: BAMBOO": 0.0, "MATERIAL OHCLASS: CARBON": 0.0, "MATERIAL OHCLASS: OTHER": 0.0,
    "MATERIAL OHCLASS: STEEL": 1.0, "MATERIAL OHCLASS: TITANIUM": 0.0, "Dropout spacing style OHCLASS: 0": 0.0,
    "Dropout spacing style OHCLASS: 1": 0.0, "Dropout spacing style OHCLASS: 2": 1.0,
    "Dropout spacing style OHCLASS: 3": 0.0, "Fork type OHCLASS: 0": 1.0, "Fork type OHCLASS: 1": 0.0,
    "Fork type OHCLASS: 2": 0.0, "Stem kind OHCLASS: 0": 1.0, "Stem kind OHCLASS: 1": 0.0,
    "Stem kind OHCLASS: 2": 0.0, "Handlebar style OHCLASS: 0": 1.0, "Handlebar style OHCLASS: 1": 0.0,
    "Handlebar style OHCLASS: 2": 0.0, "Head tube type OHCLASS: 0": 0.0, "Head tube type OHCLASS: 1": 1.0,
    "Head tube type OHCLASS: 2": 0.0, "Head tube type OHCLASS: 3": 0.0, "Top tube type OHCLASS: 0": 0.0,
    "Top tube type OHCLASS: 1": 1.0, "bottle SEATTUBE0 show OHCLASS: False": 1.0,
    "bottle SEATTUBE0 show OHCLASS: True": 0.0, "bottle DOWNTUBE0 show OHCLASS: False": 1.0,
    "bottle DOWNTUBE0 show OHCLASS: True": 0.0, "BELTorCHAIN OHCLASS: 0": 0.0, "BELTorCHAIN OHCLASS: 1": 1.0,
    "RIM_STYLE front OHCLASS: DISC": 0.0, "RIM_STYLE front OHCLASS: SPOKED": 1.0,
    "RIM_STYLE front OHCLASS: TRISPOKE": 0.0, "RIM_STYLE rear OHCLASS: DISC": 0.0,
    "RIM_STYLE rear OHCLASS: SPOKED": 1.0, "RIM_STYLE rear OHCLASS: TRISPOKE": 0.0,
}


def _onehot(row: dict, prefix: str, level) -> None:
    for key in [k for k in row if k.startswith(prefix + " OHCLASS: ")]:
        row[key] = 1.0 if key.endswith(f": {level}") else 0.0


def biked_rows() -> tuple[list[dict], list[bool]]:
    """Eight designs and whether each should pass the validity filter."""
    road = dict(ROAD_BIKE)
    mtb = dict(ROAD_BIKE)
    mtb.update({"BSD rear": 559.0, "BSD front": 559.0, "ERD rear": 540.0, "ERD front": 540.0,
                "Wheel width rear": 55.0, "Wheel width front": 55.0, "BB textfield": 40.0, "Head angle": 69.0,
                "Stack": 600.0, "DT Length": 680.0, "Number of chainrings": 2.0, "Saddle height": 700.0})
    _onehot(mtb, "Handlebar style", 1)
    _onehot(mtb, "Stem kind", 1)
    tt = dict(ROAD_BIKE)
    tt.update({"Display AEROBARS": 1.0, "Number of chainrings": 0.0, "Seat angle": 76.0})
    _onehot(tt, "Handlebar style", 2)
    _onehot(tt, "Stem kind", 2)
    _onehot(tt, "RIM_STYLE rear", "DISC")
    _onehot(tt, "RIM_STYLE front", "TRISPOKE")
    no_chainstay = dict(ROAD_BIKE, **{"CS textfield": 0.0})
    steep = dict(ROAD_BIKE, **{"Head angle": 19.0})
    erd = dict(ROAD_BIKE, **{"ERD rear": 700.0, "ERD front": 0.0})  # clipped, kept
    ext = dict(ROAD_BIKE, **{"Head tube lower extension2": 80.0, "Head tube upper extension2": 70.0})
    long_cs = dict(ROAD_BIKE, **{"CS textfield": 2000.0})
    rows = [road, mtb, tt, no_chainstay, steep, erd, ext, long_cs]
    valid = [True, True, True, False, False, True, False, False]
    return rows, valid


def jittered_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` valid variations of the three valid archetypes (for end-to-end runs)."""
    rng = np.random.default_rng(seed)
    base, valid = biked_rows()
    archetypes = [r for r, v in zip(base, valid) if v]
    rows = []
    for i in range(n):
        r = dict(archetypes[i % len(archetypes)])
        for col, sd in (("CS textfield", 10.0), ("Stack", 15.0), ("Seat tube length", 20.0), ("Saddle height", 20.0),
                        ("Head tube length textfield", 10.0), ("Saddle length", 15.0)):
            r[col] = float(r[col] + sd * rng.standard_normal())
        r["DT Length"] = float(r["DT Length"] + (r["Stack"] - ROAD_BIKE["Stack"]))
        rows.append(r)
    return rows


def write_biked(folder: Path, rows: list[dict], ids: list[int] | None = None) -> str:
    """Write rows as ``clip_sBIKED_processed.csv`` (unnamed index column first); return its SHA-256."""
    columns = list(ROAD_BIKE)
    ids = list(range(1, len(rows) + 1)) if ids is None else ids
    lines = ["," + ",".join(columns)]
    for i, r in zip(ids, rows):
        lines.append(str(i) + "," + ",".join(repr(float(r[c])) for c in columns))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / biked.BIKED_FILE
    path.write_text("\n".join(lines) + "\n")
    return hashlib.sha256(path.read_bytes()).hexdigest()

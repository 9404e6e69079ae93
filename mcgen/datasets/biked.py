"""BIKED bicycle designs (Regenwetter, Curry & Ahmed, J. Mech. Des. 2022) as multi-component data.

Two registered datasets, both built from BIKED's processed parametric table
``clip_sBIKED_processed.csv`` (4,512 designs x 96 parameters, one-hot classes expanded):

* ``biked_parametric``: one row per design, the parameters split into five vector components
  (:data:`COLUMN_SPLIT`: frame, wheels, drivetrain, saddle, cockpit); continuous columns
  standardised over the kept designs, one-hot and binary columns kept as 0/1;
* ``biked_images``: five grayscale component images per design (frame, wheels, crank, saddle,
  handlebars), drawn by the deterministic renderer of :mod:`mcgen.datasets.biked_render` in one
  shared side-view frame; the full bike is their pixel-wise maximum.

Both apply the same validity filter (:func:`validity_mask`; ``docs/datasets.md`` lists every
rule), so their rows are the same designs in the same order (``info["design_ids"]``).
The table is read from ``data_home/biked`` (default ``$MCGEN_DATA`` or ``~/.mcgen_data``) and
verified against its SHA-256, else downloaded from :data:`BIKED_URLS`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mcgen.components import Components
from mcgen.datasets import biked_render as render
from mcgen.datasets._fetch import atomic_savez, fetch, get_cache_dir, get_data_home, verify_sha256
from mcgen.plugins.hookspecs import hookimpl

BIKED_VERSION = 1
BIKED_FILE = "clip_sBIKED_processed.csv"
BIKED_SHA256 = "12d57c462685a64b841fda54c6d40144210f4c1565ed0f8d2872359cc9db65e3"
#: Download locations of the processed table (the biked-commons project), tried in order.
BIKED_URLS: tuple[str, ...] = (
    "https://raw.githubusercontent.com/yazan-abu-obaideh/biked-commons/main/src/biked_commons/resources/",
)

#: Columns with the same value in every design of the table (dropped).
CONSTANT_COLUMNS = ("Wall thickness Bottom Bracket", "Wall thickness Top tube", "Wall thickness Head tube",
                    "Wall thickness Down tube")


def _oh(prefix: str, levels: Sequence) -> list[str]:
    return [f"{prefix} OHCLASS: {lv}" for lv in levels]


#: The exact split of the table's columns into the five parametric components.
COLUMN_SPLIT: dict[str, tuple[str, ...]] = {
    "frame": tuple([
        "CS textfield", "BB textfield", "Stack", "Head angle", "Seat stay junction0", "Seat tube length",
        "Seat angle", "DT Length", "ttd", "dtd", "csd", "ssd", "Chain stay position on BB", "SSTopZOFFSET",
        "Seat tube extension2", "SEATSTAYbrdgshift", "CHAINSTAYbrdgshift", "SEATSTAYbrdgdia1",
        "CHAINSTAYbrdgdia1", "SEATSTAYbrdgCheck", "CHAINSTAYbrdgCheck", "Dropout spacing",
        "Wall thickness Chain stay", "Wall thickness Seat stay", "Wall thickness Seat tube", "Seat tube diameter",
        "Down tube diameter", "Display RACK", "FIRST color R_RGB", "FIRST color G_RGB", "FIRST color B_RGB",
        *_oh("MATERIAL", ("ALUMINIUM", "BAMBOO", "CARBON", "OTHER", "STEEL", "TITANIUM")),
        *_oh("Dropout spacing style", range(4)), *_oh("Fork type", range(3)), *_oh("Top tube type", range(2)),
        *_oh("bottle SEATTUBE0 show", ("False", "True")), *_oh("bottle DOWNTUBE0 show", ("False", "True")),
    ]),
    "wheels": tuple([
        "ERD rear", "Wheel width rear", "BSD front", "Wheel width front", "ERD front", "BSD rear", "Wheel cut",
        "SPOKES composite front", "SBLADEW front", "SBLADEW rear", "Front Fender include", "Rear Fender include",
        *_oh("RIM_STYLE front", ("DISC", "SPOKED", "TRISPOKE")), *_oh("RIM_STYLE rear", ("DISC", "SPOKED", "TRISPOKE")),
    ]),
    "drivetrain": tuple(["BB diameter", "BB length", "Number of cogs", "Number of chainrings",
                         *_oh("BELTorCHAIN", range(2))]),
    "saddle": ("Saddle length", "Saddle height", "Seatpost LENGTH"),
    "cockpit": tuple([
        "Head tube length textfield", "Head tube diameter", "Head tube upper extension2",
        "Head tube lower extension2", "Display AEROBARS", *_oh("Stem kind", range(3)),
        *_oh("Handlebar style", range(3)), *_oh("Head tube type", range(4)),
    ]),
}
#: 0/1 columns that are not one-hot groups (kept as they are, like the one-hot columns).
BINARY_COLUMNS = frozenset({"SEATSTAYbrdgCheck", "CHAINSTAYbrdgCheck", "Display RACK", "Front Fender include",
                            "Rear Fender include", "Display AEROBARS"})

#: Validity filter, part 1: allowed closed range of single columns (mm, degrees, counts).
VALID_RANGES: dict[str, tuple[float, float]] = {
    "CS textfield": (300, 800), "BB textfield": (-150, 150), "Stack": (300, 900), "Head angle": (55, 85),
    "Head tube length textfield": (40, 350), "Seat tube length": (150, 800), "Seat angle": (55, 85),
    "DT Length": (300, 1000), "BSD rear": (250, 700), "BSD front": (250, 700), "Wheel width rear": (10, 130),
    "Wheel width front": (10, 130), "Saddle length": (150, 400), "Saddle height": (200, 1200),
    "ttd": (8, 100), "dtd": (8, 100), "csd": (5, 100), "ssd": (5, 100), "Seat tube diameter": (8, 100),
    "Head tube diameter": (8, 100), "Down tube diameter": (8, 100), "Head tube lower extension2": (0, 350),
    "Head tube upper extension2": (0, 350), "Seat tube extension2": (0, 800), "Seat stay junction0": (0, 800),
    "BB length": (50, 150), "Chain stay position on BB": (0, 100),
}


def _is_kept_as_is(col: str) -> bool:
    return "OHCLASS" in col or col in BINARY_COLUMNS


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_biked_table(path: str | Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Read a BIKED processed table.

    Returns
    -------
    values : (n, p) float64 array
    columns : list of p column names
    design_ids : (n,) int64 array (the table's first, unnamed column)
    """
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{path} holds no designs")
    header = rows[0]
    if header[0] != "":
        raise ValueError(f"{path}: expected an unnamed index column first, got {header[0]!r}")
    try:
        table = np.array([[float(v) for v in r] for r in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric value: {exc}") from None
    if table.ndim != 2 or table.shape[1] != len(header):
        raise ValueError(f"{path}: ragged rows (header has {len(header)} columns)")
    return table[:, 1:], header[1:], table[:, 0].astype(np.int64)


def load_biked_table(*, data_home=None, base_urls: Sequence[str] | None = None, download_if_missing: bool = True,
                     progress: bool = True, sha256: str | None = "default"
                     ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Locate (or download), verify and read ``clip_sBIKED_processed.csv``; see :func:`read_biked_table`.

    ``sha256="default"`` checks against :data:`BIKED_SHA256`; ``None`` skips the check.
    """
    if sha256 == "default":
        sha256 = BIKED_SHA256
    folder = get_data_home(data_home) / "biked"
    urls = BIKED_URLS if base_urls is None else tuple(base_urls)
    path = fetch(BIKED_FILE, folder, urls, sha256=sha256, download_if_missing=download_if_missing,
                 progress=progress)
    if sha256 is not None:
        verify_sha256(path, sha256)
    return read_biked_table(path)


def _as_params(values: np.ndarray, columns: Sequence[str]) -> dict[str, np.ndarray]:
    return {c: values[:, j] for j, c in enumerate(columns)}


# ------------------------------------------------------------------------------------------------
# validity filter
# ------------------------------------------------------------------------------------------------
def validity_mask(params: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Which designs are physically valid and drawable.

    Rules (every one must hold): the column ranges of :data:`VALID_RANGES`; head-tube extensions
    sum to less than the head-tube length; seat-tube extension and seat-stay junction shorter
    than the seat tube; saddle height above the seat-tube top; ``|BB drop| < chain stay``; the down
    tube reaches the head tube (DT length > junction height); the fork (axle to head-tube
    bottom along the steering axis) at least 0.8 front-tyre radii; the tyres 10 mm apart; and
    the whole drawing inside the renderer's canvas.

    Parameters
    ----------
    params : dict of column -> (n,) raw values

    Returns
    -------
    mask : (n,) bool
    failed : dict rule name -> (n,) bool, True where that rule fails
    """
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    failed: dict[str, np.ndarray] = {}
    for col, (lo, hi) in VALID_RANGES.items():
        failed[f"{col} in [{lo}, {hi}]"] = ~((p[col] >= lo) & (p[col] <= hi))
    htl = p["Head tube length textfield"]
    failed["head tube extensions < head tube length"] = ~(
        p["Head tube lower extension2"] + p["Head tube upper extension2"] < htl)
    failed["seat tube extension < seat tube length"] = ~(p["Seat tube extension2"] < p["Seat tube length"])
    failed["seat stay junction < seat tube length"] = ~(p["Seat stay junction0"] < p["Seat tube length"])
    failed["saddle height > seat tube length"] = ~(p["Saddle height"] > p["Seat tube length"])
    failed["|BB drop| < chain stay"] = ~(np.abs(p["BB textfield"]) < p["CS textfield"])
    with np.errstate(invalid="ignore"):
        g = render.bike_geometry(p)
        failed["down tube reaches head tube"] = ~(g["dt_reach_sq"] > 0)
        failed["fork >= 0.8 front tyre radius"] = ~(g["fork_length"] >= 0.8 * g["r_front"])
        gap = g["front_axle"][:, 0] - g["rear_axle"][:, 0] - g["r_front"] - g["r_rear"]
        failed["tyres >= 10 mm apart"] = ~(gap >= 10.0)
        failed["drawing inside canvas"] = ~render.fits_canvas(g, p)
    mask = ~np.any(np.stack(list(failed.values())), axis=0)
    return mask, failed


def clean_params(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Clip the effective rim diameters into ``[0.6 BSD, BSD]`` (the table has ERD > BSD and ERD = 0)."""
    out = dict(params)
    for side in ("rear", "front"):
        bsd = np.asarray(params[f"BSD {side}"], dtype=np.float64)
        out[f"ERD {side}"] = np.clip(np.asarray(params[f"ERD {side}"], dtype=np.float64), 0.6 * bsd, bsd)
    return out


def _filtered(values, columns, ids, apply_filter: bool):
    params = clean_params(_as_params(values, columns))
    mask, failed = validity_mask(params)
    report = {name: int(f.sum()) for name, f in failed.items()}
    if not apply_filter:
        mask = np.ones(len(ids), dtype=bool)
    params = {k: v[mask] for k, v in params.items()}
    return params, ids[mask], mask, report


def _subset(n_total: int, n_samples, random_state) -> np.ndarray:
    if n_samples is None:
        return np.arange(n_total)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or not 1 <= n_samples <= n_total:
        raise ValueError(f"n_samples must be an integer in [1, {n_total}], got {n_samples!r}")
    return np.sort(np.random.default_rng(random_state).permutation(n_total)[:n_samples])


def _check_columns(columns: Sequence[str]) -> None:
    needed = {c for cols in COLUMN_SPLIT.values() for c in cols} | set(render.RENDER_COLUMNS)
    missing = sorted(needed - set(columns))
    if missing:
        raise ValueError(f"the BIKED table lacks columns: {missing}")


# ------------------------------------------------------------------------------------------------
# loaders
# ------------------------------------------------------------------------------------------------
_LICENSE = "MIT (BIKED, Regenwetter, Curry & Ahmed 2022; processed tables from the biked-commons project)"
_SOURCE = "BIKED clip_sBIKED_processed.csv (https://decode.mit.edu/projects/biked/)"


def load_biked_parametric(*, data_home=None, random_state=0, n_samples: int | None = None, standardize: bool = True,
                          apply_filter: bool = True, base_urls: Sequence[str] | None = None,
                          download_if_missing: bool = True, progress: bool = True) -> tuple[Components, dict]:
    """BIKED parameters split into five vector components (frame, wheels, drivetrain, saddle, cockpit).

    Parameters
    ----------
    data_home : path-like, optional
        The table is read from ``data_home/biked``.
    random_state : int or None
        Seed of the subset drawn when ``n_samples`` is given.
    n_samples : int, optional
        Random subset of the valid designs (in table order).
    standardize : bool
        Standardise continuous columns (mean 0, sd 1 over the kept designs; constant ones get
        scale 1); one-hot and binary columns stay 0/1.
    apply_filter : bool
        Drop designs that fail :func:`validity_mask` (default).  ERDs are always clipped.
    base_urls, download_if_missing, progress
        Download settings (default :data:`BIKED_URLS`).

    Returns
    -------
    X : Components
        Five float32 arrays ``(n, p_k)``.
    info : dict
        ``names``, ``kinds``, ``shapes``, ``columns`` (per component), ``design_ids``,
        ``mean``/``scale`` (per component; identity for 0/1 columns), ``continuous`` masks,
        ``filter_report`` (designs failing each rule), ``description``, ``license``, ``source``.
    """
    values, columns, ids = load_biked_table(data_home=data_home, base_urls=base_urls,
                                            download_if_missing=download_if_missing, progress=progress)
    _check_columns(columns)
    params, ids, _, report = _filtered(values, columns, ids, apply_filter)
    sel = _subset(len(ids), n_samples, random_state)
    arrays, means, scales, cont = [], [], [], []
    for cols in COLUMN_SPLIT.values():
        a = np.stack([params[c] for c in cols], axis=1)
        continuous = np.array([not _is_kept_as_is(c) for c in cols])
        mean = np.where(continuous, a.mean(0), 0.0)
        sd = a.std(0)
        scale = np.where(continuous & (sd > 0), sd, 1.0)
        if standardize:
            a = (a - mean) / scale
        else:
            mean, scale = np.zeros_like(mean), np.ones_like(scale)
        arrays.append(a[sel].astype(np.float32))
        means.append(mean.astype(np.float32))
        scales.append(scale.astype(np.float32))
        cont.append(continuous)
    names = list(COLUMN_SPLIT)
    info = {
        "name": "biked_parametric",
        "names": names,
        "kinds": ["vector"] * len(names),
        "shapes": [(a.shape[1],) for a in arrays],
        "columns": {k: list(v) for k, v in COLUMN_SPLIT.items()},
        "design_ids": ids[sel],
        "mean": means,
        "scale": scales,
        "continuous": cont,
        "filter_report": report,
        "n_valid": int(len(ids)),
        "description": "BIKED bicycle designs: parametric table split into frame, wheels, drivetrain, saddle "
                       "and cockpit components (validity-filtered, continuous columns standardised)",
        "license": _LICENSE,
        "source": _SOURCE,
    }
    return Components(arrays, names=names), info


def _cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_biked_images(*, data_home=None, random_state=0, n_samples: int | None = None, size: int = 64,
                      cache: bool = True, base_urls: Sequence[str] | None = None, download_if_missing: bool = True,
                      progress: bool = True) -> tuple[Components, dict]:
    """BIKED designs rendered as five ``(1, size, size)`` grayscale component images.

    Parameters
    ----------
    data_home : path-like, optional
        The table is read from ``data_home/biked``; renders are cached (uint8 ``.npz``) in
        ``data_home/biked`` when writable, else ``~/.mcgen_data/biked``.
    random_state : int or None
        Seed of the subset drawn when ``n_samples`` is given (the renders are deterministic).
    n_samples : int, optional
        Random subset of the valid designs (in table order).
    size : int
        Image side in pixels (64 as in the paper).
    cache : bool
        Read/write the rendered images.
    base_urls, download_if_missing, progress
        Download settings; ``progress`` also shows the rendering progress.

    Returns
    -------
    X : Components
        Five float32 arrays ``(n, 1, size, size)`` in [0, 1]: frame, wheels, crank, saddle,
        handlebars (white strokes on black).  The full bike is their pixel-wise maximum
        (:func:`mcgen.datasets.biked_render.full_bike`).
    info : dict
        ``names``, ``kinds``, ``shapes``, ``design_ids``, ``params`` (the raw, ERD-clipped
        parameters of the rows, column -> array), ``hub_pixels`` (rear and front wheel centres
        in pixel coordinates, ``(n, 2, 2)`` as (col, row)), ``filter_report``, ``cache_path``,
        ``description``, ``license``, ``source``.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    values, columns, ids = load_biked_table(data_home=data_home, base_urls=base_urls,
                                            download_if_missing=download_if_missing, progress=progress)
    _check_columns(columns)
    params, ids, _, report = _filtered(values, columns, ids, True)
    path = None
    if cache:
        table_digest = hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()
        renderer_digest = hashlib.sha256(Path(render.__file__).read_bytes()).hexdigest()  # any change re-renders
        key = _cache_key(version=BIKED_VERSION, size=int(size), table=table_digest, renderer=renderer_digest)
        path = get_cache_dir(data_home, "biked") / f"biked_images_{size}_{key}.npz"
    if path is not None and path.exists():
        with np.load(path) as z:
            images = z["images"]
    else:
        images = np.rint(render.render_bikes(params, size, progress=progress) * 255).astype(np.uint8)
        if path is not None:
            atomic_savez(path, images=images, design_ids=ids)
    sel = _subset(len(ids), n_samples, random_state)
    images = images[sel]
    g = render.bike_geometry({k: v[sel] for k, v in params.items()})
    hubs = np.stack([render.world_to_pixel(g["rear_axle"], size), render.world_to_pixel(g["front_axle"], size)], 1)
    names = list(render.COMPONENTS)
    arrays = [images[:, j:j + 1].astype(np.float32) * np.float32(1 / 255) for j in range(len(names))]
    info = {
        "name": "biked_images",
        "names": names,
        "kinds": ["image"] * len(names),
        "shapes": [(1, size, size)] * len(names),
        "design_ids": ids[sel],
        "params": {k: v[sel] for k, v in params.items()},
        "hub_pixels": hubs,
        "filter_report": report,
        "n_valid": int(len(ids)),
        "cache_path": None if path is None else str(path),
        "description": f"BIKED bicycle designs rendered in one side-view frame as {size}x{size} grayscale "
                       "component images (frame, wheels, crank, saddle, handlebars); full bike = pixel-wise max",
        "license": _LICENSE,
        "source": _SOURCE + " rendered by mcgen.datasets.biked_render",
    }
    return Components(arrays, names=names), info


@hookimpl
def mcgen_register_datasets(register):
    register("biked_parametric", load_biked_parametric,
             description="BIKED bicycle designs, parameters split into 5 components (frame, wheels, ...)")
    register("biked_images", load_biked_images,
             description="BIKED designs rendered as 5 grayscale 64x64 component images")

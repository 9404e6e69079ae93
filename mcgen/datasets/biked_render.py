"""Deterministic side-view renderer of BIKED parametric designs (five component images).

All designs share one side-view frame in millimetres: x points forward (towards the front
wheel), y up, the ground is y = 0 and the bottom-bracket (BB) centre is x = 0.  The canvas is the
square window ``[-X_BACK, SIDE - X_BACK] x [-Y_BELOW, SIDE - Y_BELOW]`` mm, so sizes are comparable
across designs (a 20-inch-wheel bike is drawn smaller than a 29er).  Strokes are white (1) on
black (0), anti-aliased by signed-distance coverage (``SUPERSAMPLE`` x supersampling); the full bike is
the pixel-wise maximum of its five components.

Geometry (BikeCAD conventions of the BIKED tables; angles from the horizontal):

* tyre radius ``R = BSD / 2 + tyre width``; rim drawn between ERD / 2 and BSD / 2;
* rear axle: ``(-sqrt(CS^2 - BBD^2), BBD)`` above the BB (CS chain-stay length, BBD BB drop);
  BB height above ground ``R_rear - BBD``;
* seat tube: from the BB along ``(-cos SA, sin SA)`` for the seat-tube length; saddle top at the
  saddle height along the same line;
* head tube: top at height ``Stack``; the down tube (length DTL) meets the steering axis
  ``lower extension`` above the head-tube bottom, so that junction is at height
  ``y_J = Stack - (HTL - lower) sin HA`` and ``x_J = sqrt(DTL^2 - y_J^2)``;
* front axle: at height ``BBD + R_front - R_rear`` above the BB (both tyres on the ground), on
  the line parallel to the steering axis offset forward by a 45 mm fork rake;
* top tube between the seat tube (``seat tube extension`` below its top) and the head tube
  (``upper extension`` below its top); seat stays from the rear axle to the seat tube
  (``seat stay junction`` below its top); chain stays from the BB to the rear axle; fork from
  the head-tube bottom via a 40 mm crown to the front axle.

Components:

* ``frame``: seat, top, down and head tubes, seat and chain stays, fork (stroke widths from
  the tube diameters);
* ``wheels``: both tyres (rings of the tyre width), rims, hubs, and by rim style: 16 spokes
  (SPOKED), three blades (TRISPOKE) or a half-intensity disc (DISC);
* ``crank``: one to three chainrings (50/39/30 teeth: radii 101, 79, 61 mm; from ``Number of
  chainrings`` 0/1/2), the 170 mm crank arm (pointing 60 degrees below the forward
  horizontal) and its pedal;
* ``saddle``: the seat post from the seat-tube top to the saddle and the saddle (its length,
  40 % behind and 60 % ahead of the clamp, nose tapered);
* ``handlebars``: a 30 mm spacer on the steerer, the stem (style 0: 100 mm at -6 degrees to the
  steerer's normal; style 1: 90 mm at +17 degrees; style 2: quill, 80 mm up the steerer and
  80 mm forward) and the bar by ``Handlebar style``: 0 drop bar (forward reach then a hook
  down and back), 1 flat/riser bar (short upswept grip), 2 bullhorn (forward then up);
  aerobars add a 300 mm forward extension.
"""

from __future__ import annotations

import numpy as np

COMPONENTS = ("frame", "wheels", "crank", "saddle", "handlebars")
#: Canvas window (mm): side length, room behind the BB, room below the ground line.
SIDE = 2100.0
X_BACK = 900.0
Y_BELOW = 475.0
SUPERSAMPLE = 1
FORK_RAKE = 45.0
FORK_CROWN = 40.0
CHAINRING_RADII = (101.0, 79.0, 61.0)
CRANK_LENGTH = 170.0
CRANK_ANGLE = np.deg2rad(-60.0)
HUB_RADIUS = 30.0
SPACER = 30.0
N_SPOKES = 16

#: Columns the renderer reads (names of the BIKED ``clip_sBIKED_processed`` table).
RENDER_COLUMNS = (
    "CS textfield", "BB textfield", "Stack", "Head angle", "Head tube length textfield", "Seat stay junction0",
    "Seat tube length", "Seat angle", "DT Length", "ttd", "dtd", "csd", "ssd", "Head tube upper extension2",
    "Seat tube extension2", "Head tube lower extension2", "ERD rear", "Wheel width rear", "BSD front",
    "Wheel width front", "ERD front", "BSD rear", "Head tube diameter", "Seat tube diameter", "Saddle length",
    "Saddle height", "Number of chainrings", "Display AEROBARS",
    "Stem kind OHCLASS: 0", "Stem kind OHCLASS: 1", "Stem kind OHCLASS: 2",
    "Handlebar style OHCLASS: 0", "Handlebar style OHCLASS: 1", "Handlebar style OHCLASS: 2",
    "RIM_STYLE front OHCLASS: DISC", "RIM_STYLE front OHCLASS: SPOKED", "RIM_STYLE front OHCLASS: TRISPOKE",
    "RIM_STYLE rear OHCLASS: DISC", "RIM_STYLE rear OHCLASS: SPOKED", "RIM_STYLE rear OHCLASS: TRISPOKE",
)


def _pt(x, y) -> np.ndarray:
    return np.stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)], axis=-1)


def _onehot_index(p: dict, prefix: str, levels: tuple) -> np.ndarray:
    cols = np.stack([np.asarray(p[f"{prefix}OHCLASS: {lv}"], dtype=np.float64) for lv in levels], axis=1)
    return np.argmax(cols, axis=1)


def bike_geometry(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Key points of every design in the shared side-view frame (mm; ground y = 0, BB x = 0).

    Parameters
    ----------
    params : dict of column name -> (n,) array
        Raw (unstandardised) BIKED values of at least :data:`RENDER_COLUMNS`.

    Returns
    -------
    dict of (n, 2) points (``bb``, ``rear_axle``, ``front_axle``, ``seat_top``, ``tt_seat``,
    ``ss_seat``, ``ht_top``, ``ht_bottom``, ``ht_tt``, ``ht_dt``, ``crown``, ``saddle``,
    ``steerer_top``, ``bar_clamp``) and (n,) values (``r_rear``, ``r_front``, ``fork_length``,
    ``dt_reach_sq``; angles ``sa``, ``ha`` in radians), with NaN where a design's
    geometry is impossible (see the validity filter in :mod:`mcgen.datasets.biked`).
    """
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    missing = [c for c in RENDER_COLUMNS if c not in p]
    if missing:
        raise ValueError(f"BIKED parameters are missing columns: {missing}")
    cs, bbd = p["CS textfield"], p["BB textfield"]
    sa, ha = np.deg2rad(p["Seat angle"]), np.deg2rad(p["Head angle"])
    r_rear = p["BSD rear"] / 2 + p["Wheel width rear"]
    r_front = p["BSD front"] / 2 + p["Wheel width front"]
    bb_h = r_rear - bbd
    with np.errstate(invalid="ignore"):
        rear_x = -np.sqrt(cs**2 - bbd**2)
    u_s = _pt(-np.cos(sa), np.sin(sa))
    u_h = _pt(-np.cos(ha), np.sin(ha))  # up the steering axis
    n_h = _pt(np.sin(ha), np.cos(ha))  # forward normal of the steering axis
    bb = _pt(np.zeros_like(cs), bb_h)
    st = p["Seat tube length"][:, None]
    seat_top = bb + st * u_s
    tt_seat = seat_top - p["Seat tube extension2"][:, None] * u_s
    ss_seat = seat_top - p["Seat stay junction0"][:, None] * u_s
    htl = p["Head tube length textfield"]
    lower, upper = p["Head tube lower extension2"], p["Head tube upper extension2"]
    y_j = p["Stack"] - (htl - lower) * np.sin(ha)
    dt_reach_sq = p["DT Length"] ** 2 - y_j**2
    with np.errstate(invalid="ignore"):
        x_j = np.sqrt(dt_reach_sq)
    ht_dt = bb + _pt(x_j, y_j)
    ht_top = ht_dt + (htl - lower)[:, None] * u_h
    ht_bottom = ht_top - htl[:, None] * u_h
    ht_tt = ht_top - upper[:, None] * u_h
    front_y = bbd + r_front - r_rear + bb_h  # = r_front above ground
    # front axle = ht_bottom - t u_h + rake n_h at height front_y
    t = (ht_bottom[:, 1] + FORK_RAKE * n_h[:, 1] - front_y) / np.sin(ha)
    front_axle = ht_bottom - t[:, None] * u_h + FORK_RAKE * n_h
    crown = ht_bottom - FORK_CROWN * u_h
    saddle = bb + p["Saddle height"][:, None] * u_s
    stem_kind = _onehot_index(p, "Stem kind ", (0, 1, 2))
    steerer_top = ht_top + SPACER * u_h
    ang = np.where(stem_kind == 0, np.deg2rad(-6.0), np.deg2rad(17.0))
    # stem direction: the steering axis' forward normal rotated by ang (positive = upward)
    base = np.arctan2(n_h[:, 1], n_h[:, 0]) + ang
    stem_len = np.where(stem_kind == 0, 100.0, 90.0)
    clamp = steerer_top + stem_len[:, None] * _pt(np.cos(base), np.sin(base))
    quill_top = steerer_top + 80.0 * u_h
    clamp = np.where((stem_kind == 2)[:, None], quill_top + _pt(np.full_like(cs, 80.0), 0.0 * cs), clamp)
    return {
        "bb": bb, "rear_axle": _pt(rear_x, np.asarray(r_rear)), "front_axle": front_axle,
        "seat_top": seat_top, "tt_seat": tt_seat, "ss_seat": ss_seat, "ht_top": ht_top, "ht_bottom": ht_bottom,
        "ht_tt": ht_tt, "ht_dt": ht_dt, "crown": crown, "saddle": saddle, "steerer_top": steerer_top,
        "quill_top": quill_top, "bar_clamp": clamp, "stem_kind": stem_kind,
        "r_rear": r_rear, "r_front": r_front, "fork_length": t, "dt_reach_sq": dt_reach_sq, "sa": sa, "ha": ha,
    }


def bike_extent(geometry: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Conservative bounding box (mm) of everything the renderer draws, per design.

    Returns ``xmin``, ``xmax``, ``ymin``, ``ymax`` arrays (NaN where the geometry is impossible).
    """
    g, p = geometry, params
    style = _onehot_index(p, "Handlebar style ", (0, 1, 2))
    aero = np.asarray(p["Display AEROBARS"]) > 0.5
    bar_front = np.choose(style, [70.0 + 65.0, 20.0, 160.0]) + 20.0
    bar_front = np.where(aero, np.maximum(bar_front, 320.0), bar_front)
    bar_top = np.choose(style, [20.0, 45.0, 90.0]) + 20.0
    margin = 40.0  # half of the thickest stroke, rounded up
    xs = [g["rear_axle"][:, 0] - g["r_rear"], g["saddle"][:, 0] - 0.4 * p["Saddle length"],
          g["bar_clamp"][:, 0] - 45.0]
    xe = [g["front_axle"][:, 0] + g["r_front"], g["bar_clamp"][:, 0] + bar_front,
          g["saddle"][:, 0] + 0.6 * p["Saddle length"], g["ht_top"][:, 0], g["steerer_top"][:, 0]]
    ye = [g["saddle"][:, 1] + 25.0, g["bar_clamp"][:, 1] + bar_top, g["steerer_top"][:, 1], g["quill_top"][:, 1]]
    ys = [g["bb"][:, 1] + CRANK_LENGTH * np.sin(CRANK_ANGLE) - 15.0, np.zeros_like(g["r_rear"])]
    with np.errstate(invalid="ignore"):
        return {"xmin": np.min(xs, axis=0) - margin, "xmax": np.max(xe, axis=0) + margin,
                "ymin": np.min(ys, axis=0) - margin, "ymax": np.max(ye, axis=0) + margin}


def fits_canvas(geometry: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> np.ndarray:
    """True where the whole drawing of a design lies inside the canvas window."""
    e = bike_extent(geometry, params)
    with np.errstate(invalid="ignore"):
        return ((e["xmin"] > -X_BACK) & (e["xmax"] < SIDE - X_BACK) & (e["ymin"] > -Y_BELOW)
                & (e["ymax"] < SIDE - Y_BELOW))


def world_to_pixel(points: np.ndarray, size: int) -> np.ndarray:
    """Map world points (mm, ``(..., 2)``) to continuous pixel coordinates ``(..., 2)`` = (col, row).

    Pixel (col, row) = (j, i) has its centre at (j + 0.5, i + 0.5); row 0 is the top.
    """
    points = np.asarray(points, dtype=np.float64)
    scale = size / SIDE
    col = (points[..., 0] + X_BACK) * scale
    row = (SIDE - Y_BELOW - points[..., 1]) * scale
    return np.stack([col, row], axis=-1)


# ------------------------------------------------------------------------------------------------
# signed-distance primitives, vectorised over designs (n) and pixels (P)
# ------------------------------------------------------------------------------------------------
class _Canvas:
    """Accumulates coverage of primitives for a chunk of designs on a supersampled grid."""

    def __init__(self, n: int, size: int):
        self.size = size
        fine = size * SUPERSAMPLE
        self.px = SIDE / fine  # mm per fine pixel
        centres = (np.arange(fine) + 0.5) * self.px
        xs = centres - X_BACK
        ys = SIDE - Y_BELOW - centres
        gx, gy = np.meshgrid(xs, ys)  # (fine, fine), rows top -> bottom
        self.gx = gx.reshape(1, -1).astype(np.float32)
        self.gy = gy.reshape(1, -1).astype(np.float32)
        self.img = np.zeros((n, fine * fine), dtype=np.float32)
        self.min_half = 0.5 * 1.1 * SIDE / size  # thinnest stroke: 1.1 output pixels wide

    def _put(self, dist: np.ndarray, intensity, mask) -> None:
        cov = np.clip(0.5 - dist / self.px, 0.0, 1.0) * np.asarray(intensity, dtype=np.float32).reshape(-1, 1)
        if mask is not None:
            cov *= np.asarray(mask, dtype=np.float32).reshape(-1, 1)
        np.maximum(self.img, cov, out=self.img)

    def _half(self, width) -> np.ndarray:
        return np.maximum(np.asarray(width, dtype=np.float32) / 2, self.min_half).reshape(-1, 1)

    def segment(self, a, b, width, intensity=1.0, mask=None) -> None:
        """Capsule from ``a`` to ``b`` (n, 2) of stroke ``width`` (mm, scalar or (n,))."""
        a = np.asarray(a, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32)
        ax, ay = a[:, :1], a[:, 1:]
        dx, dy = b[:, :1] - ax, b[:, 1:] - ay
        px, py = self.gx - ax, self.gy - ay
        den = np.maximum(dx * dx + dy * dy, 1e-9)
        t = np.clip((px * dx + py * dy) / den, 0.0, 1.0)
        dist = np.hypot(px - t * dx, py - t * dy) - self._half(width)
        self._put(dist, intensity, mask)

    def polyline(self, points, width, intensity=1.0, mask=None) -> None:
        for a, b in zip(points[:-1], points[1:]):
            self.segment(a, b, width, intensity, mask)

    def ring(self, c, radius, width, intensity=1.0, mask=None) -> None:
        """Circle of ``radius`` around ``c`` with stroke ``width``."""
        c = np.asarray(c, dtype=np.float32)
        r = np.hypot(self.gx - c[:, :1], self.gy - c[:, 1:])
        dist = np.abs(r - np.asarray(radius, dtype=np.float32).reshape(-1, 1)) - self._half(width)
        self._put(dist, intensity, mask)

    def disk(self, c, radius, intensity=1.0, mask=None) -> None:
        c = np.asarray(c, dtype=np.float32)
        r = np.hypot(self.gx - c[:, :1], self.gy - c[:, 1:])
        self._put(r - np.asarray(radius, dtype=np.float32).reshape(-1, 1), intensity, mask)

    def spokes(self, c, radius, count: int, width, intensity=1.0, mask=None, phase: float = 0.0) -> None:
        """``count`` evenly spaced straight spokes from ``c`` out to ``radius`` (one primitive)."""
        c = np.asarray(c, dtype=np.float32)
        dx, dy = self.gx - c[:, :1], self.gy - c[:, 1:]
        r = np.hypot(dx, dy)
        step = 2 * np.pi / count
        delta = np.arctan2(dy, dx) - phase
        delta = delta - np.round(delta / step) * step  # angle to the nearest spoke
        along, across = r * np.cos(delta), r * np.abs(np.sin(delta))
        over = np.maximum(along - np.asarray(radius, dtype=np.float32).reshape(-1, 1), 0.0)
        self._put(np.hypot(over, across) - self._half(width), intensity, mask)

    def result(self) -> np.ndarray:
        n = self.img.shape[0]
        s, f = self.size, SUPERSAMPLE
        return self.img.reshape(n, s, f, s, f).mean(axis=(2, 4))


def _arc(centre: np.ndarray, radius: float, a0: float, a1: float, k: int) -> list[np.ndarray]:
    ts = np.linspace(a0, a1, k)
    return [centre + radius * np.array([np.cos(t), np.sin(t)]) for t in ts]


def _draw_frame(cv: _Canvas, g: dict, p: dict) -> None:
    bb, rear = g["bb"], g["rear_axle"]
    cv.segment(bb, g["seat_top"], p["Seat tube diameter"])
    cv.segment(g["tt_seat"], g["ht_tt"], p["ttd"])
    cv.segment(bb, g["ht_dt"], p["dtd"])
    cv.segment(g["ht_top"], g["ht_bottom"], p["Head tube diameter"])
    cv.segment(bb, rear, p["csd"])
    cv.segment(rear, g["ss_seat"], p["ssd"])
    cv.segment(g["ht_bottom"], g["crown"], p["Head tube diameter"])
    cv.segment(g["crown"], g["front_axle"], 0.8 * p["Head tube diameter"])


def _draw_wheel(cv: _Canvas, c: np.ndarray, bsd, erd, width, style: np.ndarray) -> None:
    r_tyre_in = bsd / 2
    cv.ring(c, r_tyre_in + width / 2, width)  # tyre: ring of the tyre width
    erd = np.clip(erd, 0.6 * bsd, bsd - 10.0)
    cv.ring(c, (erd / 2 + r_tyre_in) / 2, np.maximum(r_tyre_in - erd / 2, 8.0), 0.8)  # rim
    cv.disk(c, HUB_RADIUS)
    spoke_end_r = erd / 2
    disc, spoked, tri = style == 0, style == 1, style == 2
    cv.disk(c, spoke_end_r, 0.5, mask=disc)
    cv.spokes(c, spoke_end_r, N_SPOKES, 1.0, 0.45, mask=spoked)
    cv.spokes(c, spoke_end_r, 3, 40.0, 0.8, mask=tri, phase=np.pi / 2)


def _draw_wheels(cv: _Canvas, g: dict, p: dict) -> None:
    rim_levels = ("DISC", "SPOKED", "TRISPOKE")
    _draw_wheel(cv, g["rear_axle"], p["BSD rear"], p["ERD rear"], p["Wheel width rear"],
                _onehot_index(p, "RIM_STYLE rear ", rim_levels))
    _draw_wheel(cv, g["front_axle"], p["BSD front"], p["ERD front"], p["Wheel width front"],
                _onehot_index(p, "RIM_STYLE front ", rim_levels))


def _draw_crank(cv: _Canvas, g: dict, p: dict) -> None:
    bb = g["bb"]
    n_rings = np.clip(np.rint(p["Number of chainrings"]), 0, 2).astype(int) + 1
    for k, r in enumerate(CHAINRING_RADII):
        cv.ring(bb, r, 12.0, mask=n_rings > k)
    cv.disk(bb, 25.0)
    pedal = bb + CRANK_LENGTH * np.array([np.cos(CRANK_ANGLE), np.sin(CRANK_ANGLE)])
    cv.segment(bb, pedal, 30.0)
    cv.segment(pedal - np.array([50.0, 0.0]), pedal + np.array([50.0, 0.0]), 25.0)


def _draw_saddle(cv: _Canvas, g: dict, p: dict) -> None:
    s = g["saddle"]
    length = p["Saddle length"]
    clamp = s - np.array([0.0, 25.0])
    cv.segment(g["seat_top"], clamp, 0.8 * p["Seat tube diameter"])
    back = s + np.stack([-0.4 * length, np.zeros_like(length)], axis=1)
    mid = s + np.stack([0.15 * length, -np.full_like(length, 5.0)], axis=1)
    nose = s + np.stack([0.6 * length - 12.0, -np.full_like(length, 12.0)], axis=1)
    cv.segment(back, mid, 50.0)
    cv.segment(mid, nose, 24.0)


def _draw_handlebars(cv: _Canvas, g: dict, p: dict) -> None:
    stem_kind = g["stem_kind"]
    quill = stem_kind == 2
    cv.segment(g["ht_top"], g["steerer_top"], 32.0)
    cv.segment(g["steerer_top"], g["bar_clamp"], 35.0, mask=~quill)
    cv.segment(g["steerer_top"], g["quill_top"], 28.0, mask=quill)
    cv.segment(g["quill_top"], g["bar_clamp"], 30.0, mask=quill)
    c = g["bar_clamp"]
    style = _onehot_index(p, "Handlebar style ", (0, 1, 2))
    cv.disk(c, 20.0)
    bar_w = 28.0
    # 0: drop bar -- forward 70 mm, a hook of radius 65 mm down and back, then 50 mm back
    hook_c = c + np.array([70.0, -65.0])
    drop = [c, c + np.array([70.0, 0.0])]
    drop += [hook_c + 65.0 * np.array([np.cos(t), np.sin(t)]) for t in np.linspace(np.pi / 2, -np.pi / 2, 7)[1:]]
    drop += [c + np.array([20.0, -130.0])]
    cv.polyline(drop, bar_w, mask=style == 0)
    # 1: flat / riser bar seen from the side -- short upswept grip behind the clamp
    cv.segment(c, c + np.array([-45.0, 25.0]), 34.0, mask=style == 1)
    # 2: bullhorn -- forward 90 mm then curving up to 150 mm ahead, 70 mm up
    horn_c = c + np.array([90.0, 70.0])
    horn = [c, c + np.array([90.0, 0.0])]
    horn += [horn_c + 70.0 * np.array([np.cos(t), np.sin(t)]) for t in np.linspace(-np.pi / 2, 0.0, 5)[1:]]
    cv.polyline(horn, bar_w, mask=style == 2)
    aero = np.asarray(p["Display AEROBARS"]) > 0.5
    cv.segment(c + np.array([0.0, 30.0]), c + np.array([300.0, 40.0]), 22.0, mask=aero)


_DRAW = {"frame": _draw_frame, "wheels": _draw_wheels, "crank": _draw_crank, "saddle": _draw_saddle,
         "handlebars": _draw_handlebars}


def render_bikes(params: dict[str, np.ndarray], size: int = 64, *, chunk: int = 128,
                 progress: bool = False) -> np.ndarray:
    """Render the five component images of every design.

    Parameters
    ----------
    params : dict of column name -> (n,) array
        Raw BIKED values (at least :data:`RENDER_COLUMNS`) of designs that pass the validity
        filter.
    size : int
        Output side in pixels (64 for the paper's images).
    chunk : int
        Designs rendered at once (bounds memory).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    (n, 5, size, size) float32 array in [0, 1], components in :data:`COMPONENTS` order.
    """
    from tqdm.auto import tqdm

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    g_all = bike_geometry(p)
    n = len(p["CS textfield"])
    out = np.zeros((n, len(COMPONENTS), size, size), dtype=np.float32)
    for s in tqdm(range(0, n, chunk), desc="rendering BIKED", disable=not progress, leave=False):
        sl = slice(s, min(n, s + chunk))
        pc = {k: v[sl] for k, v in p.items()}
        gc = {k: v[sl] for k, v in g_all.items()}
        for j, name in enumerate(COMPONENTS):
            cv = _Canvas(sl.stop - sl.start, size)
            _DRAW[name](cv, gc, pc)
            out[sl, j] = cv.result()
    return out


def full_bike(images: np.ndarray) -> np.ndarray:
    """The full bike: pixel-wise maximum over the component axis (``(n, 5, H, W) -> (n, H, W)``)."""
    return np.asarray(images).max(axis=1)

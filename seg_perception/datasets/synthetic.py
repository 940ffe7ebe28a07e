"""Procedural, seeded synthetic street scenes with exact semantic and panoptic ground truth.

Every scene is a small 3D world seen by a pinhole camera at height ``hc`` above a flat ground plane:
a straight street (road with lane markings, optional crosswalk, curbside terrain strips, sidewalks
with paving lines), building facades with windows on both sides, a far skyline, sky with clouds,
street furniture (poles, street lamps, traffic signs, traffic lights, trees, hedges, fences) and
things (cars, trucks, persons, bicycles, riders on bicycles). All geometry is projected to the image
with one camera model, so sizes follow perspective (small near the horizon) and objects are drawn
far -> near (painter's algorithm), giving natural occlusion and overlap.

Every primitive is drawn with OpenCV on three canvases at once (RGB image, semantic train ids,
instance index), so the labels are exact for what is visible. Texture (per-class noise amplitude),
shadows, brightness / contrast / colour cast, sensor noise and a slight optical blur are applied to
the image only.

Labels use the Cityscapes 19-class train ids (:func:`seg_perception.datasets.labels.get_label_set`
``"cityscapes"``); panoptic ids are ``class_id * 1000 + instance`` with instances numbered
1..n per thing class in drawing order, ``instance 0`` for stuff.

Usage::

    from seg_perception.datasets.synthetic import make_scene, make_sequence
    scene = make_scene(seed=3, hw=(256, 512))
    scene.image      # (256, 512, 3) uint8 RGB
    scene.semantic   # (256, 512) uint8 train ids
    scene.panoptic   # (256, 512) int32 class * 1000 + instance
    frames = make_sequence(seed=0, hw=(256, 512), n_frames=50)   # things move smoothly

A moving camera with traffic, stable track ids and depth: :mod:`seg_perception.datasets.drive`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional

import cv2
import numpy as np

from ..core.results import LABEL_DIVISOR
from .labels import IGNORE_LABEL, get_label_set

# Cityscapes train ids.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)
THING_CLASSES = frozenset({PERSON, RIDER, CAR, TRUCK, BICYCLE})
#: Classes this generator can produce (wall, bus, train, motorcycle never appear).
GENERATED_CLASSES = (ROAD, SIDEWALK, BUILDING, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY,
                     PERSON, RIDER, CAR, TRUCK, BICYCLE)

_SHIFT = 3  # OpenCV sub-pixel bits: coordinates are multiplied by 2**_SHIFT.
_ONE = 1 << _SHIFT
_Z_NEAR = 0.5  # metres; nothing is projected closer than this

# Texture noise amplitude per class: (fine per-pixel grain, medium blotches), relative to colour.
_TEXTURE = np.zeros((256, 2), np.float32)
for _c, _amp in {ROAD: (0.07, 0.10), SIDEWALK: (0.05, 0.08), BUILDING: (0.04, 0.10), FENCE: (0.05, 0.05),
                 POLE: (0.03, 0.05), LIGHT: (0.03, 0.03), SIGN: (0.02, 0.03), VEGETATION: (0.22, 0.18),
                 TERRAIN: (0.15, 0.16), SKY: (0.01, 0.04), PERSON: (0.04, 0.05), RIDER: (0.04, 0.05),
                 CAR: (0.03, 0.05), TRUCK: (0.03, 0.06), BICYCLE: (0.03, 0.03)}.items():
    _TEXTURE[_c] = _amp
_TEXTURE_FINE = np.ascontiguousarray(_TEXTURE[:, 0]).reshape(1, 256)
_TEXTURE_MEDIUM = np.ascontiguousarray(_TEXTURE[:, 1]).reshape(1, 256)


@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        semantic: (H, W) uint8 Cityscapes train ids (every pixel labelled, no 255 by construction).
        panoptic: (H, W) int32 ``class * 1000 + instance`` (instance 0 for stuff).
        segments: one dict per segment (COCO-panoptic style): ``id``, ``category_id``,
            ``class_name``, ``isthing``, ``area`` (pixels), ``bbox`` [x, y, w, h], ``iscrowd`` (0).
        depth: (H, W) float32 metres along the optical axis, 0 where nothing is hit (sky, the far
            skyline); only rendered on request (:mod:`seg_perception.datasets.drive`), else None.
    """

    image: np.ndarray
    semantic: np.ndarray
    panoptic: np.ndarray
    segments: list[dict] = field(default_factory=list)
    depth: Optional[np.ndarray] = None


# --------------------------------------------------------------------------------------------
# Camera + canvases
# --------------------------------------------------------------------------------------------
class _Canvas:
    """Pinhole camera plus the three canvases every primitive is drawn on.

    World frame: X right, Y up (ground Y = 0), Z forward (metres); camera at (0, hc, 0).

    With ``depth`` the canvas also records, per pixel, which labelled world polygon is visible (its
    plane in camera coordinates), so :meth:`depth_map` gives exact per-pixel depth of planar
    geometry. With ``clip`` (a moving camera, where geometry reaches behind it) polygons are clipped
    at the near plane before projection instead of having their vertices clamped there.
    """

    def __init__(self, hw: tuple[int, int], f: float, xv: float, yh: float, hc: float, sky_rgb,
                 depth: bool = False, clip: bool = False, yaw: float = 0.0) -> None:
        h, w = hw
        self.h, self.w, self.f, self.xv, self.yh, self.hc = h, w, f, xv, yh, hc
        self.image = np.empty((h, w, 3), np.uint8)
        self.image[:] = sky_rgb
        self.sem = np.full((h, w), SKY, np.uint8)
        self.inst = np.zeros((h, w), np.int32)
        self.inst_class: list[int] = [0]  # class of instance index k (index 0 = stuff)
        self.inst_track: list[int] = [0]  # track id of instance index k (0 = number per frame)
        self.clip = clip
        # Heading of the camera (radians, positive turns right): a world point p is seen at
        # p @ self._rot; things at infinity (skyline, clouds) shift by sky_du pixels.
        self._rot = None
        self.sky_du = 0.0
        if yaw:
            c, s = math.cos(yaw), math.sin(yaw)
            self._rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
            self.sky_du = -f * math.tan(yaw)
        # Plane index per pixel (0 = nothing hit) and the planes as rows (nx, ny, nz, d) in camera
        # coordinates (x right, y down, z forward): n . p = d.
        self.plane = np.zeros((h, w), np.int32) if depth else None
        self.planes: list[tuple[float, float, float, float]] = [(0.0, 0.0, 1.0, 0.0)]
        self._lim = 40.0 * max(h, w) * _ONE
        # Row-vector camera matrix: [X, Y, Z] @ _k + _k0 = [f X + xv Z, f (hc - Y) + yh Z, Z].
        self._k = np.array([[f, 0.0, 0.0], [0.0, -f, 0.0], [xv, yh, 1.0]])
        self._k0 = np.array([0.0, f * hc, 0.0])

    def new_instance(self, cls: int, track: int = 0) -> int:
        self.inst_class.append(cls)
        self.inst_track.append(int(track))
        return len(self.inst_class) - 1

    def to_view(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> the same points turned by the camera's heading."""
        pts = np.asarray(pts, np.float64)
        return pts if self._rot is None else pts @ self._rot

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 2) int32 fixed-point pixel coords (shift ``_SHIFT``)."""
        return self._project_view(self.to_view(pts))

    def _project_view(self, pts: np.ndarray) -> np.ndarray:
        hom = pts @ self._k + self._k0  # (..., 3): (u z, v z, z)
        z = np.maximum(hom[..., 2:], _Z_NEAR)
        out = hom[..., :2] / z
        out *= _ONE
        np.minimum(out, self._lim, out=out)
        np.maximum(out, -self._lim, out=out)
        return out.astype(np.int32)

    def proj(self, world: np.ndarray) -> list[np.ndarray]:
        """(K, 3) polygon or (N, K, 3) polygons -> list of (K', 2) fixed-point pixel polygons.

        Without ``clip`` this is :meth:`project` (batched as given); with it each polygon is clipped
        at the near plane first and polygons entirely behind it are dropped.
        """
        world = np.asarray(world, np.float64)
        if not self.clip:
            return list(self.project(world)) if world.ndim == 3 else [self.project(world)]
        polys = self.to_view(world if world.ndim == 3 else world[None])
        out = []
        for q in polys:
            c = _clip_near(q, _Z_NEAR + 0.01)
            if c is not None:
                out.append(self._project_view(c))
        return out

    def wpoly(self, world: list[np.ndarray], rgb, cls: Optional[int] = None, inst: int = 0) -> None:
        """Fill world polygons (each (K, 3)); labelled ones also record their plane for depth."""
        polys, planes = [], []
        for q in world:
            pts = self.proj(q)
            if pts:
                polys += pts
                planes.append(q)
        if not polys:
            return
        self.poly(polys, rgb, cls, inst)
        if cls is not None and self.plane is not None:
            for q, p in zip(planes, polys):
                cv2.fillPoly(self.plane, [p], (self.plane_id(q),), shift=_SHIFT)

    def fill_plane(self, pts: np.ndarray, world: np.ndarray, flat: bool = False) -> None:
        """Record the plane of ``world`` ((K, 3)) over the pixel polygon ``pts`` (depth only)."""
        if self.plane is not None:
            cv2.fillPoly(self.plane, [pts], (self.plane_id(world, flat),), shift=_SHIFT)

    def plane_id(self, world: np.ndarray, flat: bool = False) -> int:
        """Register the plane of a (K, 3) world polygon (Newell normal); ``flat``: constant depth."""
        w = self.to_view(np.asarray(world, np.float64).reshape(-1, 3))
        plane = None
        if not flat and len(w) >= 3:
            # camera coordinates (x right, y down, z forward)
            x, y, z = w[:, 0], self.hc - w[:, 1], w[:, 2]
            x2, y2, z2 = np.roll(x, -1), np.roll(y, -1), np.roll(z, -1)
            n = np.array([(y * z2 - z * y2).sum(), (z * x2 - x * z2).sum(), (x * y2 - y * x2).sum()])
            norm = math.sqrt(float(n @ n))
            if norm > 1e-9:
                n /= norm
                plane = (float(n[0]), float(n[1]), float(n[2]), float(n[0] * x.mean() + n[1] * y.mean() + n[2] * z.mean()))
        self.planes.append(plane or (0.0, 0.0, 1.0, float(w[:, 2].mean())))
        return len(self.planes) - 1

    def depth_map(self, max_range: float = 1000.0) -> np.ndarray:
        """(H, W) float32 depth in metres (z along the optical axis) of the visible plane per pixel.

        Pixel (u, v) sees the ray ((u - xv) / f, (v - yh) / f, 1) (pixel centres at integer
        coordinates, as OpenCV draws); depth z = d / (n . ray). 0 where nothing was hit, where the
        ray grazes its plane, or beyond ``max_range``.
        """
        if self.plane is None:
            raise RuntimeError("this canvas was made without depth=True")
        planes = np.asarray(self.planes, np.float64)
        rx = (np.arange(self.w, dtype=np.float64) - self.xv) / self.f
        ry = (np.arange(self.h, dtype=np.float64) - self.yh) / self.f
        n = planes[self.plane]  # (H, W, 4)
        den = n[..., 0] * rx[None, :] + n[..., 1] * ry[:, None] + n[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = n[..., 3] / den
        ok = (self.plane > 0) & np.isfinite(z) & (z >= _Z_NEAR * 0.5) & (z <= max_range)
        return np.where(ok, z, 0.0).astype(np.float32)

    def px(self, metres: float, z: float) -> float:
        """Size in pixels of ``metres`` at depth ``z``."""
        return self.f * metres / max(z, _Z_NEAR)

    # Drawing: cls None -> image only; inst is the instance index (0 = stuff). Pixel polygons drawn
    # with poly / lines keep the depth of what lies beneath unless ``world`` is given.
    def poly(self, polys: list[np.ndarray], rgb, cls: Optional[int] = None, inst: int = 0) -> None:
        cv2.fillPoly(self.image, polys, _col(rgb), lineType=cv2.LINE_8, shift=_SHIFT)
        if cls is not None:
            cv2.fillPoly(self.sem, polys, (int(cls),), shift=_SHIFT)
            cv2.fillPoly(self.inst, polys, (int(inst),), shift=_SHIFT)

    def lines(self, polys: list[np.ndarray], rgb, thickness: float, cls: Optional[int] = None,
              inst: int = 0, closed: bool = False, world: Optional[list[np.ndarray]] = None) -> None:
        """Polylines; with ``world`` (the (K, 3) points of each) labelled lines record a constant
        depth (their mean z): they are thin, so their exact plane does not matter."""
        t = max(1, int(round(thickness)))
        cv2.polylines(self.image, polys, closed, _col(rgb), t, lineType=cv2.LINE_8, shift=_SHIFT)
        if cls is not None:
            cv2.polylines(self.sem, polys, closed, (int(cls),), t, shift=_SHIFT)
            cv2.polylines(self.inst, polys, closed, (int(inst),), t, shift=_SHIFT)
            if world is not None and self.plane is not None:
                for q, p in zip(world, polys):
                    cv2.polylines(self.plane, [p], closed, (self.plane_id(q, flat=True),), t, shift=_SHIFT)


def _clip_near(poly: np.ndarray, z_min: float) -> Optional[np.ndarray]:
    """Clip a (K, 3) polygon to Z >= z_min (Sutherland-Hodgman); None when nothing is left."""
    z = poly[:, 2]
    inside = z >= z_min
    if inside.all():
        return poly
    if not inside.any():
        return None
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        if inside[i]:
            out.append(a)
        if inside[i] != inside[(i + 1) % n]:
            t = (z_min - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if len(out) >= 2 else None


def _col(rgb) -> tuple[int, int, int]:
    r, g, b = rgb[0], rgb[1], rgb[2]
    return (int(min(max(r, 0), 255)), int(min(max(g, 0), 255)), int(min(max(b, 0), 255)))


def _quad_x(x: float, y0: float, y1: float, z0: float, z1: float) -> np.ndarray:
    """Vertical rectangle in the plane X = x."""
    return np.array([[x, y0, z0], [x, y1, z0], [x, y1, z1], [x, y0, z1]])


def _quad_z(z: float, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """Vertical rectangle in the plane Z = z (facing the camera)."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])


def _quad_y(y: float, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    """Horizontal rectangle at height y."""
    return np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]])


def _circle_pts(n: int = 12) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


_CIRCLE = _circle_pts(12)


def _billboard(origin: tuple[float, float, float], yaw: float, uv: np.ndarray) -> np.ndarray:
    """Points (K, 2) in a vertical plane (u along yaw direction, v up) -> (K, 3) world points.

    yaw 0: the plane faces the camera (u = +X). yaw pi/2: u = +Z (seen edge-on).
    """
    ox, oy, oz = origin
    uv = np.asarray(uv, np.float64)
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([ox + uv[:, 0] * c, oy + uv[:, 1], oz + uv[:, 0] * s], axis=1)


def _jitter(rng: np.random.Generator, rgb, amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float64) * rng.uniform(1 - amount, 1 + amount, 3), 0, 255)


# --------------------------------------------------------------------------------------------
# Layout: everything random is sampled here, once per scene / sequence.
# --------------------------------------------------------------------------------------------
@dataclass
class _Thing:
    kind: str  # car | truck | person | bicycle | rider
    x: float
    z: float
    vx: float = 0.0
    vz: float = 0.0
    params: dict = field(default_factory=dict)
    track: int = 0  # stable id within a drive (0: numbered per frame)

    def at(self, t: float) -> "_Thing":
        return replace(self, x=self.x + self.vx * t, z=self.z + self.vz * t)


@dataclass
class _Prop:
    kind: str  # pole | lamp | sign | light | tree | fence | hedge
    x: float
    z: float
    params: dict = field(default_factory=dict)


@dataclass
class _Layout:
    hw: tuple[int, int]
    f: float
    xv: float
    yh: float
    hc: float
    road_l: float
    road_r: float
    lanes: list[float]
    dashed: list[bool]
    curb_terrain: tuple[float, float]
    side_l: float
    side_r: float
    crosswalk_z: Optional[float]
    colors: dict
    facades: list[dict]
    skyline: list[dict]
    clouds: list[dict]
    patches: list[dict]
    shadows: list[dict]
    props: list[_Prop]
    things: list[_Thing]
    light: dict
    # Where the periodic ground patterns start (metres; a moving camera scrolls them).
    dash_phase: float = 0.0
    joint_phase: float = 0.0


_FACADE_COLORS = np.array([[200, 190, 170], [170, 160, 150], [150, 90, 70], [120, 115, 110],
                           [210, 205, 195], [180, 150, 110], [100, 100, 105], [190, 175, 140],
                           [140, 120, 100], [160, 170, 175]], np.float64)
_CAR_COLORS = np.array([[200, 30, 30], [30, 40, 160], [230, 230, 230], [20, 20, 22], [130, 135, 140],
                        [190, 190, 195], [40, 90, 50], [220, 180, 40], [90, 40, 30], [60, 70, 90],
                        [170, 100, 40], [100, 30, 80]], np.float64)
_CLOTHES = np.array([[30, 30, 40], [200, 40, 40], [40, 60, 140], [230, 230, 225], [90, 70, 50],
                     [60, 110, 60], [160, 160, 160], [220, 160, 30], [120, 40, 110], [20, 20, 20],
                     [180, 120, 90], [70, 130, 170]], np.float64)
_SKIN = np.array([[235, 190, 160], [200, 150, 110], [150, 100, 70], [100, 65, 45]], np.float64)


def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float = 0.12) -> np.ndarray:
    return _jitter(rng, table[rng.integers(len(table))], jitter)


def _sample_layout(rng: np.random.Generator, hw: tuple[int, int], extra: float = 0.0) -> _Layout:
    """``extra``: extra metres of street (facades, props) ahead, for a camera that drives."""
    h, w = hw
    f = w * rng.uniform(0.55, 0.8)
    yh = h * rng.uniform(0.36, 0.5)
    xv = w * rng.uniform(0.38, 0.62)
    hc = rng.uniform(1.3, 1.8)
    n_left, n_right = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    lane_w = rng.uniform(3.0, 3.6)
    ego_lane = int(rng.integers(0, n_left + n_right)) if n_left + n_right > 1 else 0
    road_l = ego_lane * lane_w + rng.uniform(0.8, 2.6)
    road_r = (n_left + n_right) * lane_w - road_l
    lanes = [-road_l + k * lane_w for k in range(1, n_left + n_right)]
    dashed = [True] * len(lanes)
    if lanes and rng.random() < 0.5:
        dashed[n_left - 1 if 0 < n_left <= len(lanes) else 0] = False
    curb_terrain = (rng.uniform(0.8, 2.5) if rng.random() < 0.35 else 0.0,
                    rng.uniform(0.8, 2.5) if rng.random() < 0.35 else 0.0)
    side_l, side_r = rng.uniform(2.0, 5.0), rng.uniform(2.0, 5.0)
    colors = {
        "sky_top": _jitter(rng, (70, 120, 200), 0.15), "sky_bottom": _jitter(rng, (180, 205, 230), 0.1),
        "road": _jitter(rng, np.full(3, rng.uniform(70, 120)), 0.05),
        "marking": _jitter(rng, (225, 225, 215), 0.05), "marking2": _jitter(rng, (230, 190, 40), 0.08),
        "sidewalk": _jitter(rng, [(170, 165, 160), (175, 140, 130), (150, 150, 155), (190, 180, 160)][rng.integers(4)], 0.08),
        "curb": _jitter(rng, (195, 195, 190), 0.06),
        "terrain": _jitter(rng, [(140, 170, 80), (160, 160, 90), (120, 150, 70), (170, 150, 100)][rng.integers(4)], 0.1),
        "ground": _jitter(rng, (130, 150, 80), 0.1),
    }
    # Crosswalk across the road.
    crosswalk_z = float(rng.uniform(6, 25)) if rng.random() < 0.3 else None
    # Facades on both sides, laid along Z.
    facades: list[dict] = []
    for side, xb in ((-1, -(road_l + curb_terrain[0] + side_l)), (1, road_r + curb_terrain[1] + side_r)):
        z = _Z_NEAR
        while z < 160 + extra:
            length = rng.uniform(8, 35)
            if rng.random() < 0.15 and z > 5:  # gap (alley / park)
                z += rng.uniform(4, 14)
                continue
            height = rng.uniform(6, 32)
            floor_h = rng.uniform(2.8, 3.6)
            facades.append({
                "side": side, "x": xb + side * (rng.uniform(0, 1.5) if rng.random() < 0.3 else 0.0),
                "z0": z, "z1": z + length, "height": height,
                "color": _pick(rng, _FACADE_COLORS, 0.1),
                "window": _jitter(rng, [(60, 75, 95), (40, 45, 55), (110, 130, 150), (150, 170, 190)][rng.integers(4)], 0.1),
                "floor_h": floor_h, "win_w": rng.uniform(0.8, 1.6), "win_sp": rng.uniform(2.2, 4.0),
                "win_h": floor_h * rng.uniform(0.4, 0.65), "shop": rng.random() < 0.5,
                "shop_color": _jitter(rng, (50, 55, 60), 0.3),
            })
            z += length
    skyline = []
    x = -1.0
    while x < 1.0:  # far blocks as fractions of the image width
        bw = rng.uniform(0.04, 0.15)
        skyline.append({"x0": x, "x1": x + bw, "top": rng.uniform(0.02, 0.25) * h,
                        "color": _jitter(rng, (150, 155, 165), 0.15)})
        x += bw
    clouds = [{"x": rng.uniform(0, w), "y": rng.uniform(0, yh * 0.8), "rx": rng.uniform(0.05, 0.2) * w,
               "ry": rng.uniform(0.02, 0.06) * h, "a": rng.uniform(0.2, 0.6)}
              for _ in range(int(rng.integers(0, 5)))]
    patches = [{"x": rng.uniform(-road_l, road_r), "z": rng.uniform(3, 60), "r": rng.uniform(0.5, 2.5),
                "d": rng.uniform(0.75, 1.15)} for _ in range(int(rng.integers(0, 6)))]
    shadows = []
    if rng.random() < 0.5:  # building shadow falling across the street from one side
        side = rng.choice([-1, 1])
        xs = -road_l - curb_terrain[0] - side_l if side < 0 else road_r + curb_terrain[1] + side_r
        reach = rng.uniform(0.3, 1.0) * (road_l + road_r + side_l + side_r)
        z0 = rng.uniform(_Z_NEAR, 20)
        shadows.append({"x0": xs, "x1": xs - side * reach, "z0": z0, "z1": z0 + rng.uniform(10, 80),
                        "d": rng.uniform(0.45, 0.7)})
    props = _sample_props(rng, road_l, road_r, curb_terrain, side_l, side_r, colors, extra)
    things = _sample_things(rng, hw, f, road_l, road_r, lanes, lane_w, curb_terrain, side_l, side_r)
    light = {"brightness": rng.uniform(0.65, 1.3), "contrast": rng.uniform(0.7, 1.2),
             "cast": rng.uniform(0.88, 1.12, 3), "gamma": rng.uniform(0.8, 1.25),
             "noise": rng.uniform(2.0, 7.0), "blur": rng.uniform(0.0, 0.9),
             "sun_l": rng.uniform(0.7, 1.1), "sun_r": rng.uniform(0.7, 1.1)}
    return _Layout(hw=hw, f=f, xv=xv, yh=yh, hc=hc, road_l=road_l, road_r=road_r, lanes=lanes,
                   dashed=dashed, curb_terrain=curb_terrain, side_l=side_l, side_r=side_r,
                   crosswalk_z=crosswalk_z, colors=colors, facades=facades, skyline=skyline,
                   clouds=clouds, patches=patches, shadows=shadows, props=props, things=things, light=light)


def _sample_props(rng, road_l, road_r, curb_terrain, side_l, side_r, colors, extra: float = 0.0) -> list[_Prop]:
    props: list[_Prop] = []
    pole_rgb = _jitter(rng, [(110, 110, 115), (60, 65, 60), (150, 150, 150)][rng.integers(3)], 0.1)
    for side in (-1, 1):
        edge = -road_l - curb_terrain[0] if side < 0 else road_r + curb_terrain[1]
        sw = side_l if side < 0 else side_r
        # Street lamps / plain poles at the curb, roughly periodic.
        z = rng.uniform(2, 12)
        spacing = rng.uniform(12, 28)
        while z < 90 + extra:
            kind = rng.choice(["lamp", "pole", "sign", "light"], p=[0.35, 0.2, 0.3, 0.15])
            props.append(_Prop(str(kind), edge + side * rng.uniform(0.3, 0.7), z, {
                "rgb": _jitter(rng, pole_rgb, 0.05), "radius": rng.uniform(0.1, 0.16),
                "height": rng.uniform(5, 8) if kind == "lamp" else rng.uniform(2.4, 3.4) if kind == "sign" else rng.uniform(3.2, 4.5),
                "sign_shape": int(rng.integers(3)), "sign_size": rng.uniform(0.55, 0.8),
                "sign_rgb": [(200, 30, 30), (30, 70, 170), (230, 200, 40), (240, 240, 240)][rng.integers(4)],
                "side": side,
            }))
            z += spacing * rng.uniform(0.7, 1.3)
        # Trees on the sidewalk.
        if rng.random() < 0.7:
            z = rng.uniform(3, 15)
            while z < 80 + extra:
                props.append(_Prop("tree", edge + side * rng.uniform(0.8, max(1.0, sw - 0.6)), z, {
                    "trunk": rng.uniform(1.8, 3.2), "crown": rng.uniform(1.3, 3.0),
                    "green": _jitter(rng, [(60, 110, 40), (80, 120, 50), (50, 90, 45), (100, 130, 60)][rng.integers(4)], 0.12),
                    "bark": _jitter(rng, (90, 70, 50), 0.2), "blobs": rng.uniform(-1, 1, (7, 3)),
                }))
                z += rng.uniform(8, 25)
        # Hedge along the facade line, fence along the curb.
        if rng.random() < 0.3:
            z0 = rng.uniform(2, 30)
            props.append(_Prop("hedge", edge + side * (sw - 0.4), z0, {
                "len": rng.uniform(5, 25), "height": rng.uniform(0.8, 1.8),
                "green": _jitter(rng, (70, 110, 45), 0.15), "side": side}))
        if rng.random() < 0.25:
            z0 = rng.uniform(3, 25)
            props.append(_Prop("fence", edge + side * 0.15, z0, {
                "len": rng.uniform(6, 30), "height": rng.uniform(0.8, 1.4),
                "rgb": _jitter(rng, [(120, 110, 100), (170, 170, 175), (90, 90, 95)][rng.integers(3)], 0.1),
                "side": side}))
    return props


def _max_depth(f: float, h: int, size_m: float, min_frac: float) -> float:
    """Largest depth at which an object ``size_m`` tall still spans ``min_frac`` of the image height."""
    return f * size_m / (min_frac * h)


def _sample_things(rng, hw, f, road_l, road_r, lanes, lane_w, curb_terrain, side_l, side_r) -> list[_Thing]:
    h, _w = hw
    things: list[_Thing] = []
    centers = [-road_l + lane_w * (k + 0.5) for k in range(len(lanes) + 1)]
    zmax_car = min(75.0, _max_depth(f, h, 1.5, 0.05))
    for _ in range(int(rng.integers(1, 9))):  # cars in lanes and parked at the curb
        parked = rng.random() < 0.35
        if parked:
            side = rng.choice([-1, 1])
            x = (-road_l + 1.1) if side < 0 else (road_r - 1.1)
        else:
            x = float(rng.choice(centers)) + rng.uniform(-0.4, 0.4)
        things.append(_Thing("car", x, rng.uniform(4, zmax_car), 0.0,
                             0.0 if parked else rng.uniform(-4, 6), _car_params(rng)))
    if rng.random() < 0.35:
        x = float(rng.choice(centers)) + rng.uniform(-0.3, 0.3)
        things.append(_Thing("truck", x, rng.uniform(8, min(70.0, zmax_car * 1.5)), 0.0, rng.uniform(-2, 5),
                             _truck_params(rng)))
    if rng.random() < 0.2:  # cross traffic far ahead
        things.append(_Thing("car", rng.uniform(-15, 15), rng.uniform(20, zmax_car), rng.choice([-1, 1]) * rng.uniform(3, 8),
                             0.0, {**_car_params(rng), "cross": True}))
    zmax_p = min(55.0, _max_depth(f, h, 1.75, 0.06))
    for _ in range(int(rng.integers(0, 9))):  # pedestrians, mostly on sidewalks
        side = rng.choice([-1, 1])
        if rng.random() < 0.2:
            x = rng.uniform(-road_l, road_r)
        elif side < 0:
            x = -road_l - curb_terrain[0] - rng.uniform(0.3, side_l - 0.3)
        else:
            x = road_r + curb_terrain[1] + rng.uniform(0.3, side_r - 0.3)
        things.append(_Thing("person", x, rng.uniform(3, zmax_p), rng.uniform(-1.2, 1.2), rng.uniform(-1.3, 1.3),
                             _person_params(rng)))
    for _ in range(int(rng.integers(0, 3))):  # riders along the road edge
        side = rng.choice([-1, 1])
        x = (-road_l + rng.uniform(0.6, 1.5)) if side < 0 else (road_r - rng.uniform(0.6, 1.5))
        things.append(_Thing("rider", x, rng.uniform(4, zmax_p), 0.0, rng.uniform(-4, 5),
                             {**_person_params(rng), **_bike_params(rng), "yaw": rng.uniform(0.5, 1.2) * rng.choice([-1, 1])}))
    for _ in range(int(rng.integers(0, 3))):  # parked bicycles on the sidewalk
        side = rng.choice([-1, 1])
        x = (-road_l - curb_terrain[0] - rng.uniform(0.4, side_l - 0.4)) if side < 0 else (road_r + curb_terrain[1] + rng.uniform(0.4, side_r - 0.4))
        things.append(_Thing("bicycle", x, rng.uniform(3, zmax_p * 0.8), 0.0, 0.0,
                             {**_bike_params(rng), "yaw": rng.uniform(-0.9, 0.9)}))
    return things


def _car_params(rng) -> dict:
    return {"w": rng.uniform(1.65, 1.95), "h": rng.uniform(1.35, 1.65), "l": rng.uniform(3.8, 4.9),
            "rgb": _pick(rng, _CAR_COLORS, 0.1), "glass": _jitter(rng, (45, 55, 70), 0.25), "cross": False}


def _truck_params(rng) -> dict:
    return {"w": rng.uniform(2.3, 2.6), "h": rng.uniform(2.8, 3.8), "l": rng.uniform(6.0, 10.0),
            "rgb": _pick(rng, _CAR_COLORS, 0.1), "box": _jitter(rng, [(230, 230, 230), (200, 60, 40), (60, 80, 140), (180, 180, 170)][rng.integers(4)], 0.08),
            "glass": _jitter(rng, (45, 55, 70), 0.25)}


def _person_params(rng) -> dict:
    return {"ph": rng.uniform(1.55, 1.95), "top": _pick(rng, _CLOTHES, 0.15), "legs": _pick(rng, _CLOTHES, 0.15),
            "skin": _pick(rng, _SKIN, 0.05), "hair": _jitter(rng, [(30, 25, 20), (90, 60, 30), (180, 150, 90), (120, 120, 120)][rng.integers(4)], 0.1),
            "phase": rng.uniform(0, 2 * np.pi), "bag": rng.random() < 0.3,
            "bag_rgb": _pick(rng, _CLOTHES, 0.2), "width": rng.uniform(0.9, 1.15)}


def _bike_params(rng) -> dict:
    return {"frame": _pick(rng, _CAR_COLORS, 0.15), "wheel_r": rng.uniform(0.3, 0.36),
            "base": rng.uniform(1.0, 1.15)}


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def _draw_background(cv: _Canvas, lay: _Layout) -> None:
    h, w = cv.h, cv.w
    # Sky gradient (image only; canvases already hold SKY).
    ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    grad = lay.colors["sky_top"][None, :] * (1 - ys) + lay.colors["sky_bottom"][None, :] * ys
    cv.image[:] = grad[:, None, :].astype(np.uint8)
    for c in lay.clouds:
        col = cv.image[int(min(max(c["y"], 0), h - 1)), int(min(max(c["x"], 0), w - 1))].astype(np.float64)
        col = col * (1 - c["a"]) + 245 * c["a"]
        cv2.ellipse(cv.image, (int(c["x"] + cv.sky_du), int(c["y"])), (int(c["rx"]), int(max(c["ry"], 1))), 0, 0, 360, _col(col), -1)
    # Far skyline, bottom on the horizon.
    yb = cv.yh + 1
    for b in lay.skyline:
        x0 = cv.xv + cv.sky_du + b["x0"] * w
        x1 = cv.xv + cv.sky_du + b["x1"] * w
        top = cv.yh - b["top"]
        p = np.round(np.array([[x0, top], [x1, top], [x1, yb], [x0, yb]]) * _ONE).astype(np.int32)
        cv.poly([p], b["color"], BUILDING)
    # Ground beyond the street: grassy terrain up to the horizon.
    far = 400.0
    cv.wpoly([(_quad_y(0, -far, far, _Z_NEAR, far * 2))], lay.colors["ground"], TERRAIN)
    xl, xr = -lay.road_l, lay.road_r
    tl, tr = lay.curb_terrain
    # Sidewalks (out to the facade line and a bit beyond).
    zf = far
    cv.wpoly([_quad_y(0, xl - tl - lay.side_l - 3, xl - tl, _Z_NEAR, zf),
              _quad_y(0, xr + tr, xr + tr + lay.side_r + 3, _Z_NEAR, zf)], lay.colors["sidewalk"], SIDEWALK)
    # Paving joints across the sidewalks (image only).
    zj = np.arange(1.0 - lay.joint_phase, 60.0, 1.5)
    zj = zj[zj > _Z_NEAR]
    joints = []
    for xa, xb in ((xl - tl - lay.side_l, xl - tl), (xr + tr, xr + tr + lay.side_r)):
        seg = np.empty((len(zj), 2, 3))
        seg[:, 0, 0], seg[:, 1, 0], seg[..., 1], seg[..., 2] = xa, xb, 0.0, zj[:, None]
        joints += cv.proj(seg)
    cv.lines(joints, lay.colors["sidewalk"] * 0.8, 1)
    # Curb terrain strips.
    if tl > 0:
        cv.wpoly([(_quad_y(0, xl - tl, xl, _Z_NEAR, zf))], lay.colors["terrain"], TERRAIN)
    if tr > 0:
        cv.wpoly([(_quad_y(0, xr, xr + tr, _Z_NEAR, zf))], lay.colors["terrain"], TERRAIN)
    # Road with repair patches and curbs.
    cv.wpoly([(_quad_y(0, xl, xr, _Z_NEAR, zf))], lay.colors["road"], ROAD)
    for p in lay.patches:
        cv.wpoly([(_quad_y(0, p["x"] - p["r"], p["x"] + p["r"], p["z"], p["z"] + 2 * p["r"]))],
                lay.colors["road"] * p["d"])
    for xc, side in ((xl, -1), (xr, 1)):
        if (tl if side < 0 else tr) == 0:
            curb = _quad_y(0.12, xc + side * 0.2, xc, _Z_NEAR, zf)
            cv.wpoly([(curb)], lay.colors["curb"], SIDEWALK)
    # Lane markings: dashed or solid lines, edge lines, optional crosswalk.
    marks = []
    for x, dashed in zip(lay.lanes, lay.dashed):
        if dashed:
            zd = np.arange(1.0 - lay.dash_phase, 120.0, 9.0)
            q = np.zeros((len(zd), 4, 3))
            q[:, [0, 3], 0], q[:, [1, 2], 0] = x - 0.07, x + 0.07
            q[:, [0, 1], 2], q[:, [2, 3], 2] = zd[:, None], zd[:, None] + 3.0
            marks += cv.proj(q)
        else:
            marks += cv.proj(_quad_y(0, x - 0.08, x + 0.08, _Z_NEAR, 200.0))
    for x in (xl + 0.3, xr - 0.3):
        marks += cv.proj(_quad_y(0, x - 0.06, x + 0.06, _Z_NEAR, 200.0))
    if lay.crosswalk_z is not None:
        for x in np.arange(xl + 0.5, xr - 0.5, 1.0):
            marks += cv.proj(_quad_y(0, x, x + 0.5, lay.crosswalk_z, lay.crosswalk_z + 3.0))
    cv.poly(marks, lay.colors["marking"], ROAD)
    if cv.plane is not None and marks:  # markings lie on the ground, also where they cover a curb
        cv2.fillPoly(cv.plane, marks, (cv.plane_id(_quad_y(0, -1.0, 1.0, 1.0, 2.0)),), shift=_SHIFT)
    # Facades with windows (far first so near buildings overlap correctly).
    for fa in sorted(lay.facades, key=lambda d: -d["z0"]):
        shade = lay.light["sun_l"] if fa["side"] < 0 else lay.light["sun_r"]
        cv.wpoly([(_quad_x(fa["x"], 0, fa["height"], fa["z0"], fa["z1"]))], fa["color"] * shade, BUILDING)
        # End wall facing the camera (visible when this facade is set back or ends).
        ys = np.arange(fa["floor_h"] * (1.25 if fa["shop"] else 0.3), fa["height"] - fa["win_h"] - 0.3, fa["floor_h"])
        zs = np.arange(fa["z0"] + 1.0, fa["z1"] - fa["win_w"] - 0.5, fa["win_sp"])
        if len(ys) and len(zs):
            yy, zz = np.meshgrid(ys, zs, indexing="ij")
            yy, zz = yy.ravel(), zz.ravel()
            quads = np.empty((len(yy), 4, 3))
            quads[..., 0] = fa["x"]
            quads[:, [0, 3], 1] = yy[:, None]
            quads[:, [1, 2], 1] = (yy + fa["win_h"])[:, None]
            quads[:, [0, 1], 2] = zz[:, None]
            quads[:, [2, 3], 2] = (zz + fa["win_w"])[:, None]
            cv.poly(cv.proj(quads), fa["window"] * shade)
        if fa["shop"]:
            cv.wpoly([(_quad_x(fa["x"], 0.2, fa["floor_h"] * 0.8, fa["z0"] + 0.5, fa["z1"] - 0.5))],
                    fa["shop_color"] * shade)


def _draw_prop(cv: _Canvas, p: _Prop) -> None:
    z = p.z
    if p.kind in ("pole", "lamp", "sign", "light"):
        r, ph = p.params["radius"], p.params["height"]
        cv.wpoly([(_quad_z(z, p.x - r, p.x + r, 0, ph))], p.params["rgb"], POLE)
        if p.kind == "lamp":  # arm over the road + lamp head (pole class)
            s = -p.params["side"]
            arm = np.array([[p.x, ph - 0.1, z], [p.x + s * 1.6, ph + 0.2, z]])
            cv.lines([cv.project(arm)], p.params["rgb"], cv.px(2 * r * 0.7, z), POLE, world=[arm])
            head = _quad_z(z, min(p.x + s * 1.3, p.x + s * 1.9), max(p.x + s * 1.3, p.x + s * 1.9), ph - 0.05, ph + 0.2)
            cv.wpoly([(head)], (90, 90, 95), POLE)
        elif p.kind == "sign":
            size = p.params["sign_size"]
            cy = ph - size / 2
            shape = p.params["sign_shape"]
            if shape == 0:  # round
                pts = np.c_[p.x + _CIRCLE[:, 0] * size / 2, cy + _CIRCLE[:, 1] * size / 2, np.full(len(_CIRCLE), z - 0.05)]
            elif shape == 1:  # triangle
                pts = np.array([[p.x - size / 2, cy + size / 2, z - 0.05], [p.x + size / 2, cy + size / 2, z - 0.05], [p.x, cy - size / 2, z - 0.05]])
            else:  # rectangle
                pts = _quad_z(z - 0.05, p.x - size / 2, p.x + size / 2, cy - size * 0.4, cy + size * 0.4)
            cv.wpoly([(pts)], p.params["sign_rgb"], SIGN)
            inner = pts.copy()
            inner[:, 0] = p.x + (inner[:, 0] - p.x) * 0.6
            inner[:, 1] = cy + (inner[:, 1] - cy) * 0.6
            cv.wpoly([(inner)], (245, 245, 245) if p.params["sign_rgb"][0] > 150 else (200, 210, 230))
        else:  # traffic light box with three lamps
            bw, bh = 0.34, 0.95
            box = _quad_z(z - 0.1, p.x - bw / 2, p.x + bw / 2, ph, ph + bh)
            cv.wpoly([(box)], (35, 35, 30), LIGHT)
            on = int(p.params["sign_shape"])
            for k, rgb in enumerate(((220, 40, 30), (230, 180, 30), (40, 200, 80))):
                cy = ph + bh * (0.8 - 0.3 * k)
                c = np.c_[p.x + _CIRCLE[:, 0] * 0.1, cy + _CIRCLE[:, 1] * 0.1, np.full(len(_CIRCLE), z - 0.12)]
                cv.wpoly([(c)], rgb if k == on else np.asarray(rgb) * 0.3)
    elif p.kind == "tree":
        trunk = p.params["trunk"]
        cv.wpoly([(_quad_z(z, p.x - 0.13, p.x + 0.13, 0, trunk + 0.3))], p.params["bark"], VEGETATION)
        cr = p.params["crown"]
        cy = trunk + cr * 0.8
        b = p.params["blobs"]
        rr = (cr * (0.55 + 0.15 * b[:, 2]))[:, None]
        blobs = np.empty((len(b), len(_CIRCLE), 3))
        blobs[..., 0] = p.x + (b[:, 0] * cr * 0.5)[:, None] + _CIRCLE[None, :, 0] * rr
        blobs[..., 1] = cy + (b[:, 1] * cr * 0.35)[:, None] + _CIRCLE[None, :, 1] * rr * 0.85
        blobs[..., 2] = z
        for k, blob in enumerate(cv.project(blobs)):  # crowns stand at one depth: no clipping needed
            cv.poly([blob], p.params["green"] * (0.8 + 0.1 * (k % 4)), VEGETATION)
            cv.fill_plane(blob, blobs[k])
    elif p.kind == "hedge":
        q = _quad_x(p.x, 0, p.params["height"], z, z + p.params["len"])
        cv.wpoly([(q)], p.params["green"], VEGETATION)
        top = _quad_y(p.params["height"], p.x - p.params["side"] * 0.6, p.x, z, z + p.params["len"])
        cv.wpoly([(top)], p.params["green"] * 1.15, VEGETATION)
    elif p.kind == "fence":
        ht, ln = p.params["height"], p.params["len"]
        q = _quad_x(p.x, 0, ht, z, z + ln)
        cv.wpoly([(q)], p.params["rgb"] * 0.8, FENCE)
        bars = [b for zz in np.arange(z, z + ln, 0.5) for b in cv.proj(np.array([[p.x, 0, zz], [p.x, ht, zz]]))]
        bars += cv.proj(np.array([[p.x, ht * 0.9, z], [p.x, ht * 0.9, z + ln]]))
        cv.lines(bars, p.params["rgb"] * 1.2, 1)


def _draw_box(cv: _Canvas, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float,
              rgb, cls: int, inst: int, shade=(0.75, 0.9, 1.0)) -> None:
    """Axis-aligned box: draws the visible side face, top face and near face."""
    rgb = np.asarray(rgb, np.float64)
    if x1 < 0:
        cv.wpoly([(_quad_x(x1, y0, y1, z0, z1))], rgb * shade[0], cls, inst)
    elif x0 > 0:
        cv.wpoly([(_quad_x(x0, y0, y1, z0, z1))], rgb * shade[0], cls, inst)
    if y1 < cv.hc:
        cv.wpoly([(_quad_y(y1, x0, x1, z0, z1))], rgb * shade[1], cls, inst)
    cv.wpoly([(_quad_z(z0, x0, x1, y0, y1))], rgb * shade[2], cls, inst)


def _wheel(cv: _Canvas, center: tuple[float, float, float], r: float, plane: str, cls: int, inst: int,
           rgb=(25, 25, 25)) -> None:
    cx, cy, cz = center
    if plane == "x":
        pts = np.c_[np.full(len(_CIRCLE), cx), cy + _CIRCLE[:, 1] * r, cz + _CIRCLE[:, 0] * r]
    else:
        pts = np.c_[cx + _CIRCLE[:, 0] * r, cy + _CIRCLE[:, 1] * r, np.full(len(_CIRCLE), cz)]
    cv.wpoly([(pts)], rgb, cls, inst)


def _draw_car(cv: _Canvas, t: _Thing, inst: int, cls: int = CAR) -> None:
    p = t.params
    if p.get("cross"):
        # Driving across the view: long axis along X.
        w, l = p["l"], p["w"]
    else:
        w, l = p["w"], p["l"]
    x0, x1, z0, z1 = t.x - w / 2, t.x + w / 2, t.z, t.z + l
    hh, rgb = p["h"], p["rgb"]
    body_top = hh * 0.58
    # Wheels on the visible side (drawn first, the body overlaps their upper half).
    r = 0.32
    if p.get("cross"):
        for xw in (x0 + 0.8, x1 - 0.8):
            _wheel(cv, (xw, r, z0 - 0.01), r, "z", cls, inst)
    else:
        xs = x1 if x1 < 0 else x0 if x0 > 0 else None
        if xs is not None:
            for zw in (z0 + 0.8, z1 - 0.8):
                _wheel(cv, (xs, r, zw), r, "x", cls, inst)
        for xw in (x0 + 0.05, x1 - 0.35):
            cv.wpoly([(_quad_z(z0 + 0.6, xw, xw + 0.3, 0, 0.4))], (25, 25, 25), cls, inst)
    _draw_box(cv, x0, x1, 0.25, body_top, z0, z1, rgb, cls, inst)
    # Cabin, inset and shorter.
    if p.get("cross"):
        cx0, cx1, cz0, cz1 = x0 + 0.25 * w, x1 - 0.2 * w, z0 + 0.05, z1 - 0.05
    else:
        cx0, cx1, cz0, cz1 = x0 + 0.1, x1 - 0.1, z0 + 0.22 * l, z1 - 0.25 * l
    _draw_box(cv, cx0, cx1, body_top, hh, cz0, cz1, rgb, cls, inst)
    # Windows on the cabin's near face and visible side.
    g = p["glass"]
    cv.wpoly([(_quad_z(cz0 - 0.01, cx0 + 0.08, cx1 - 0.08, body_top + 0.06, hh - 0.06))], g)
    if cx1 < 0:
        cv.wpoly([(_quad_x(cx1 + 0.01, body_top + 0.06, hh - 0.06, cz0 + 0.1, cz1 - 0.1))], g * 0.9)
    elif cx0 > 0:
        cv.wpoly([(_quad_x(cx0 - 0.01, body_top + 0.06, hh - 0.06, cz0 + 0.1, cz1 - 0.1))], g * 0.9)
    if not p.get("cross"):  # tail lights and plate on the near face
        for xl in (x0 + 0.08, x1 - 0.38):
            cv.wpoly([(_quad_z(z0 - 0.01, xl, xl + 0.3, body_top - 0.2, body_top - 0.06))], (200, 30, 25))
        cv.wpoly([(_quad_z(z0 - 0.01, t.x - 0.25, t.x + 0.25, 0.35, 0.47))], (230, 230, 225))


def _draw_truck(cv: _Canvas, t: _Thing, inst: int) -> None:
    p = t.params
    w, l, hh = p["w"], p["l"], p["h"]
    x0, x1, z0, z1 = t.x - w / 2, t.x + w / 2, t.z, t.z + l
    xs = x1 if x1 < 0 else x0 if x0 > 0 else None
    if xs is not None:
        for zw in (z0 + 1.0, z0 + 2.2, z1 - 1.0):
            _wheel(cv, (xs, 0.48, zw), 0.48, "x", TRUCK, inst)
    for xw in (x0 + 0.1, x1 - 0.5):
        cv.wpoly([(_quad_z(z0 + 0.6, xw, xw + 0.4, 0, 0.6))], (25, 25, 25), TRUCK, inst)
    # Cab at the far end, cargo box nearer (we see the truck from behind).
    _draw_box(cv, x0 + 0.05, x1 - 0.05, 0.5, hh * 0.8, z1 - 2.2, z1, p["rgb"], TRUCK, inst)
    _draw_box(cv, x0, x1, 0.6, hh, z0, z1 - 2.3, p["box"], TRUCK, inst)
    cv.wpoly([(_quad_z(z0 - 0.01, x0 + 0.1, x1 - 0.1, 0.7, hh - 0.1))], p["box"] * 0.85)
    cv.wpoly([(_quad_z(z0 - 0.02, t.x - 0.03, t.x + 0.03, 0.7, hh - 0.1))], p["box"] * 0.5)


def _person_parts(p: dict, phase: float) -> list[tuple[np.ndarray, str]]:
    """Person as (uv polygon, colour key) parts in metres (u right, v up), feet at v = 0."""
    ph, wd = p["ph"], p["width"]
    swing = 0.12 * math.sin(phase)
    hip, sh = 0.52 * ph, 0.82 * ph
    parts = []
    for s in (-1, 1):  # legs
        u = s * 0.08 * wd
        parts.append((np.array([[u - 0.07 + s * swing, 0], [u + 0.07 + s * swing, 0], [u + 0.07, hip + 0.05], [u - 0.07, hip + 0.05]]), "legs"))
    for s in (-1, 1):  # arms
        u = s * 0.2 * wd
        parts.append((np.array([[u - 0.05, sh], [u + 0.05, sh], [u + 0.05 - s * swing * 0.5, hip - 0.05], [u - 0.05 - s * swing * 0.5, hip - 0.05]]), "top"))
    parts.append((np.array([[-0.15 * wd, hip], [0.15 * wd, hip], [0.2 * wd, sh + 0.02], [-0.2 * wd, sh + 0.02]]), "top"))
    parts.append((np.c_[_CIRCLE[:, 0] * 0.055, sh + 0.03 + 0.04 * (_CIRCLE[:, 1] + 1)], "skin"))  # neck
    head_c = sh + 0.05 + 0.11
    parts.append((np.c_[_CIRCLE[:, 0] * 0.09, head_c + _CIRCLE[:, 1] * 0.115], "skin"))
    parts.append((np.c_[_CIRCLE[:6, 0] * 0.095, head_c + 0.02 + _CIRCLE[:6, 1] * 0.11], "hair"))
    if p["bag"]:
        parts.append((np.array([[0.18 * wd, hip - 0.05], [0.34 * wd, hip - 0.05], [0.34 * wd, hip + 0.25], [0.18 * wd, hip + 0.25]]), "bag_rgb"))
    return parts


def _draw_person(cv: _Canvas, t: _Thing, inst: int, time: float) -> None:
    p = t.params
    phase = p["phase"] + 2.2 * time * (abs(t.vx) + abs(t.vz) > 0.1)
    parts = _person_parts(p, phase)
    world = _billboard((t.x, 0.0, t.z), 0.0, np.concatenate([uv for uv, _k in parts]))
    pts = cv.project(world)
    board = cv.plane_id(world, flat=True) if cv.plane is not None else 0  # the board stands at one depth
    start = 0
    for uv, key in parts:
        cv.poly([pts[start:start + len(uv)]], p[key], PERSON, inst)
        if board:
            cv2.fillPoly(cv.plane, [pts[start:start + len(uv)]], (board,), shift=_SHIFT)
        start += len(uv)


def _bike_geometry(p: dict) -> tuple[list[tuple[float, float]], list[np.ndarray], tuple[float, float]]:
    """Wheel centres, frame polylines (uv, metres) and the saddle point of a bicycle (u forward)."""
    r, b = p["wheel_r"], p["base"]
    rear, front = (-b / 2, r), (b / 2, r)
    bb = (-0.05, r * 0.9)
    seat = (-0.22, r + 0.55)
    head = (b / 2 - 0.12, r + 0.55)
    frame = [np.array([rear, bb, head, front]), np.array([rear, seat, bb]), np.array([seat, head]),
             np.array([head, (head[0] - 0.04, head[1] + 0.18), (head[0] - 0.2, head[1] + 0.2)])]
    return [rear, front], frame, seat


def _draw_bicycle(cv: _Canvas, x: float, z: float, p: dict, inst: int) -> tuple[float, float]:
    yaw = p["yaw"]
    wheels, frame, seat = _bike_geometry(p)
    r = p["wheel_r"]
    thick = cv.px(0.06, z)
    for cu, cvv in wheels:
        ring = _billboard((x, 0.0, z), yaw, np.c_[cu + _CIRCLE[:, 0] * r, cvv + _CIRCLE[:, 1] * r])
        cv.wpoly([(ring)], (70, 70, 72), BICYCLE, inst)  # spoked disc, labelled bicycle
        cv.lines([cv.project(ring)], (20, 20, 20), max(1.0, thick), BICYCLE, inst, closed=True, world=[ring])
        spokes = [cv.project(_billboard((x, 0.0, z), yaw, np.array([[cu - r * math.cos(a), cvv - r * math.sin(a)],
                                                                      [cu + r * math.cos(a), cvv + r * math.sin(a)]])))
                  for a in (0.3, 1.35, 2.4)]
        cv.lines(spokes, (150, 150, 150), 1)
    frame_w = [_billboard((x, 0.0, z), yaw, f) for f in frame]
    cv.lines([cv.project(f) for f in frame_w], p["frame"], max(1.0, cv.px(0.07, z)), BICYCLE, inst, world=frame_w)
    sad = np.array([[seat[0] - 0.12, seat[1] + 0.04], [seat[0] + 0.1, seat[1] + 0.04], [seat[0] + 0.1, seat[1] + 0.09], [seat[0] - 0.12, seat[1] + 0.09]])
    cv.wpoly([(_billboard((x, 0.0, z), yaw, sad))], (25, 25, 25), BICYCLE, inst)
    return seat


def _draw_rider(cv: _Canvas, t: _Thing, inst_bike: int, inst_rider: int, time: float) -> None:
    p = t.params
    seat = _draw_bicycle(cv, t.x, t.z, p, inst_bike)
    yaw = p["yaw"]
    ph = p["ph"]
    sv = seat[1] + 0.09
    phase = p["phase"] + 3.0 * time
    pedal = 0.15 * math.sin(phase)
    head_u = seat[0] + 0.35
    # Rider parts in the bike's plane, slightly nearer the camera than the frame.
    parts = [
        (np.array([[seat[0] - 0.08, sv], [seat[0] + 0.1, sv], [0.05 + pedal, 0.25], [-0.08 + pedal, 0.25]]), "legs"),
        (np.array([[seat[0] - 0.1, sv], [seat[0] + 0.12, sv], [head_u + 0.05, sv + 0.32 * ph], [head_u - 0.15, sv + 0.32 * ph]]), "top"),
        (np.array([[head_u - 0.05, sv + 0.3 * ph], [head_u + 0.02, sv + 0.28 * ph], [p["base"] / 2 - 0.3, sv + 0.08], [p["base"] / 2 - 0.36, sv + 0.1]]), "top"),
        (np.c_[head_u - 0.05 + _CIRCLE[:, 0] * 0.1, sv + 0.32 * ph + 0.12 + _CIRCLE[:, 1] * 0.115], "skin"),
        (np.c_[head_u - 0.05 + _CIRCLE[:6, 0] * 0.105, sv + 0.32 * ph + 0.14 + _CIRCLE[:6, 1] * 0.11], "hair"),
    ]
    near = -0.08 if math.cos(yaw) >= 0 else 0.08
    for uv, key in parts:
        world = _billboard((t.x, 0.0, t.z), yaw, uv)
        world[:, 2] -= abs(near)
        cv.wpoly([(world)], p[key], RIDER, inst_rider)


def _thing_depth(t: _Thing) -> float:
    return t.z


def _render(lay: _Layout, time: float, noise_seed: int, sensor_seed: Optional[int] = None,
            sensor_noise: float = 1.0, moving_camera: bool = False, yaw: float = 0.0) -> Scene:
    """Draw ``lay`` at ``time`` seconds. ``noise_seed`` fixes the texture grain; ``sensor_seed``
    (default: continue the texture stream) the per-frame sensor noise, scaled by ``sensor_noise``.

    ``moving_camera``: ``lay`` is in the frame of a camera driving through the street (geometry may
    lie beside and behind it): clip at the near plane, draw vehicles reaching past the camera, and
    render ``Scene.depth``; ``yaw``: the camera's heading (radians, positive turns right).
    """
    h, w = lay.hw
    cv = _Canvas(lay.hw, lay.f, lay.xv, lay.yh, lay.hc, lay.colors["sky_top"],
                 depth=moving_camera, clip=moving_camera, yaw=yaw)
    _draw_background(cv, lay)
    # Shadows are applied to the image later: remember them as a shading mask.
    shade = np.ones((h, w), np.float32)
    for s in lay.shadows:
        q = _quad_y(0, min(s["x0"], s["x1"]), max(s["x0"], s["x1"]), s["z0"], s["z1"])
        cv2.fillPoly(shade, cv.proj(q), (float(s["d"]),), shift=_SHIFT)
    # Things and props far -> near.
    # Props at one depth vanish once the camera reaches them; hedges and fences run along the street.
    z_min = 1.0 if moving_camera else _Z_NEAR + 0.1
    items: list[tuple[float, object]] = [(p.z, p) for p in lay.props
                                         if _view_z(cv, p.x, p.z) > z_min or p.kind in ("hedge", "fence")]
    for t in lay.things:
        tt = t.at(time)
        if tt.z > 2.0 or (moving_camera and _reaches_ahead(tt, _view_z(cv, tt.x, tt.z))):
            items.append((_thing_depth(tt), tt))
    items.sort(key=lambda it: -it[0])
    for _z, item in items:
        if isinstance(item, _Prop):
            _draw_prop(cv, item)
        elif item.kind == "car":
            _draw_car(cv, item, cv.new_instance(CAR, item.track))
        elif item.kind == "truck":
            _draw_truck(cv, item, cv.new_instance(TRUCK, item.track))
        elif item.kind == "person":
            _draw_person(cv, item, cv.new_instance(PERSON, item.track), time)
        elif item.kind == "bicycle":
            _draw_bicycle(cv, item.x, item.z, item.params, cv.new_instance(BICYCLE, item.track))
        elif item.kind == "rider":
            _draw_rider(cv, item, cv.new_instance(BICYCLE, item.params.get("bike_track", 0)),
                        cv.new_instance(RIDER, item.track), time)
    image = _finish_image(cv.image, cv.sem, shade, lay.light, noise_seed, sensor_seed, sensor_noise)
    panoptic, segments = _panoptic(cv)
    depth = cv.depth_map() if moving_camera else None
    return Scene(image=image, semantic=cv.sem, panoptic=panoptic, segments=segments, depth=depth)


def _view_z(cv: _Canvas, x: float, z: float) -> float:
    """Depth of the ground point (x, z) in the view of ``cv`` (z itself for a camera heading +Z)."""
    return z if cv.sky_du == 0.0 else float(cv.to_view(np.array([x, 0.0, z]))[2])


def _reaches_ahead(t: _Thing, view_z: float) -> bool:
    """Near the camera: vehicles are clipped (they reach past it); people and bicycles, drawn as
    upright boards, only while they stand clear of it (``view_z``: their depth in the view)."""
    if t.kind in ("car", "truck"):
        return t.z + max(t.params["l"], t.params["w"]) > _Z_NEAR + 0.2
    return view_z > 1.2


_NOISE_POOL_SIZE = 1 << 21
_NOISE_POOL: Optional[np.ndarray] = None


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal float32 noise of ``shape``: a random window of a fixed pool (fast, seeded)."""
    global _NOISE_POOL
    n = int(np.prod(shape))
    if n > _NOISE_POOL_SIZE // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    if _NOISE_POOL is None:
        _NOISE_POOL = np.random.default_rng(12345).standard_normal(_NOISE_POOL_SIZE, dtype=np.float32)
    start = int(rng.integers(0, _NOISE_POOL_SIZE - n))
    return _NOISE_POOL[start:start + n].reshape(shape)


def _finish_image(img: np.ndarray, sem: np.ndarray, shade: np.ndarray, light: dict, noise_seed: int,
                  sensor_seed: Optional[int] = None, sensor_noise: float = 1.0) -> np.ndarray:
    """Texture, shadows, lighting, sensor noise and blur on (H, W, 3) uint8 -> (H, W, 3) uint8."""
    h, w = sem.shape
    rng = np.random.default_rng(noise_seed)
    small = rng.standard_normal((max(2, h // 12), max(2, w // 12))).astype(np.float32)
    medium = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    gain = _noise(rng, (h, w)) * cv2.LUT(sem, _TEXTURE_FINE)
    gain += cv2.LUT(sem, _TEXTURE_MEDIUM) * medium
    gain += 1.0
    gain *= shade
    # brightness, colour cast and contrast (around mid-grey) folded into one affine map per channel.
    scale = (light["cast"] * light["brightness"] * light["contrast"]).astype(np.float32)
    gain3 = cv2.merge([gain * scale[0], gain * scale[1], gain * scale[2]])
    out = cv2.multiply(img.astype(np.float32), gain3)
    sensor_rng = rng if sensor_seed is None else np.random.default_rng(sensor_seed)
    out = cv2.scaleAdd(_noise(sensor_rng, out.shape), float(light["noise"] * sensor_noise), out)
    out += np.float32(128.0 * (1.0 - light["contrast"]))
    np.clip(out, 0, 255, out=out)
    out = out.astype(np.uint8)
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** light["gamma"], 0, 255).astype(np.uint8)
    out = cv2.LUT(out, lut)
    if light["blur"] > 0.3:
        out = cv2.GaussianBlur(out, (3, 3), light["blur"])
    return out


def _panoptic(cv: _Canvas) -> tuple[np.ndarray, list[dict]]:
    """Instance canvas -> (H, W) int32 panoptic ids and the segments list.

    Instances hidden completely are dropped; the survivors are numbered 1..n per class in drawing
    order. Stuff pixels get ``class * 1000``.
    """
    names = get_label_set("cityscapes").names
    sem, inst = cv.sem, cv.inst
    h, w = sem.shape
    n_inst = len(cv.inst_class)
    # Compact segment index: instance k -> k, stuff pixels -> n_inst + class.
    index = np.where(inst > 0, inst, n_inst + sem.astype(np.int32))
    flat = index.ravel()
    n_idx = n_inst + 256
    counts = np.bincount(flat, minlength=n_idx)
    ids = np.zeros(n_idx, np.int32)
    ids[n_inst:] = np.arange(256, dtype=np.int32) * LABEL_DIVISOR
    next_id: dict[int, int] = {}
    for k in range(1, n_inst):
        if counts[k] == 0:
            continue  # completely hidden
        c = cv.inst_class[k]
        if cv.inst_track[k]:
            ids[k] = c * LABEL_DIVISOR + cv.inst_track[k]
            continue
        next_id[c] = next_id.get(c, 0) + 1
        ids[k] = c * LABEL_DIVISOR + next_id[c]
    pan = ids[index]
    # Bounding boxes from per-segment row / column occupancy (bincount over (segment, row) pairs).
    rows = np.bincount((index * h + np.arange(h, dtype=np.int32)[:, None]).ravel(), minlength=n_idx * h).reshape(n_idx, h)
    cols = np.bincount((index * w + np.arange(w, dtype=np.int32)[None, :]).ravel(), minlength=n_idx * w).reshape(n_idx, w)
    segments: list[dict] = []
    for k in np.flatnonzero(counts).tolist():
        sid = int(ids[k])
        c = sid // LABEL_DIVISOR
        r = np.flatnonzero(rows[k])
        q = np.flatnonzero(cols[k])
        segments.append({
            "id": sid, "category_id": int(c), "class_name": names[c] if c < len(names) else "void",
            "isthing": bool(k < n_inst), "area": int(counts[k]),
            "bbox": [int(q[0]), int(r[0]), int(q[-1] - q[0] + 1), int(r[-1] - r[0] + 1)], "iscrowd": 0,
        })
    segments.sort(key=lambda d: d["id"])
    return pan, segments


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def _check_hw(hw: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in hw)
    except (TypeError, ValueError):
        raise ValueError(f"hw must be a (height, width) pair of ints, got {hw!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"hw must be at least (16, 16), got {hw!r}; use e.g. (256, 512)")
    return h, w


def make_scene(seed: int, hw: tuple[int, int] = (256, 512)) -> Scene:
    """Render the street scene number ``seed`` at resolution ``hw`` = (H, W).

    Deterministic: the same (seed, hw) always gives the same images and labels. The layout is in
    metric units, so one seed gives the same scene at any resolution (up to rasterisation).

    Returns:
        :class:`Scene` with image (H, W, 3) uint8 RGB, semantic (H, W) uint8 train ids, panoptic
        (H, W) int32 ids and the segments list.
    """
    hw = _check_hw(hw)
    rng = np.random.default_rng([int(seed), 0x5CE7E])
    layout = _sample_layout(rng, hw)
    return _render(layout, 0.0, noise_seed=int(rng.integers(2**31)))


def make_sequence(seed: int, hw: tuple[int, int] = (256, 512), n_frames: int = 50, *, fps: float = 10.0,
                  sensor_noise: float = 1.0) -> list[Scene]:
    """A static street with moving cars, pedestrians and riders: ``n_frames`` scenes at ``fps``
    seen by a standing camera (a driving one: :func:`seg_perception.datasets.drive.make_drive`).

    Things keep their identity and move smoothly (constant world velocity, at most a few metres per
    second); instance numbers are re-assigned per frame (1..n per class in drawing order).
    Sensor noise (scaled by ``sensor_noise``, 0 turns it off) changes per frame; the layout,
    textures and lighting do not.
    """
    hw = _check_hw(hw)
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames!r}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if sensor_noise < 0:
        raise ValueError(f"sensor_noise must be >= 0, got {sensor_noise!r}")
    rng = np.random.default_rng([int(seed), 0x5E0])
    layout = _sample_layout(rng, hw)
    base = int(rng.integers(2**31))
    return [_render(layout, k / fps, noise_seed=base, sensor_seed=base + 1 + k, sensor_noise=sensor_noise)
            for k in range(int(n_frames))]


def iter_scenes(first_seed: int, count: int, hw: tuple[int, int] = (256, 512)):
    """Yield ``count`` scenes for seeds ``first_seed .. first_seed + count - 1``."""
    for s in range(int(first_seed), int(first_seed) + int(count)):
        yield make_scene(s, hw)


__all__ = ["Scene", "make_scene", "make_sequence", "iter_scenes", "GENERATED_CLASSES", "THING_CLASSES",
           "IGNORE_LABEL"]

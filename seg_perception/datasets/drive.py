"""A drive through a synthetic street: a moving camera, traffic, stable track ids, depth, intrinsics.

The street is one :mod:`~seg_perception.datasets.synthetic` layout, sampled long enough for the
whole drive. The camera (height ``hc`` above the ground, no pitch or roll) drives forward at a
constant speed and may change lanes once, turning out and back as it does, so the scene expands,
scrolls and swings between frames. Traffic is sampled for the drive: cars and trucks in the ego's and neighbouring
lanes (overtaking, being overtaken, oncoming), cars parked at the curbs, pedestrians walking or
standing on the sidewalks and crossing far ahead, riders on bicycles along the road edge and
parked bicycles. Objects enter and leave the view and occlude each other (painter's order).

Ground truth per frame (:class:`~seg_perception.datasets.synthetic.Scene`):

* ``semantic``: (H, W) uint8 Cityscapes train ids;
* ``panoptic``: (H, W) int32 ``class * 1000 + track_id``; ``track_id`` (1..999) is fixed per object
  for the whole drive (per class: car 13005 is the same car in every frame it is visible in; a
  rider and its bicycle are two objects, rider 12k and bicycle 18j); stuff is ``class * 1000``;
* ``depth``: (H, W) float32 metres along the optical axis (z), exact for the rendered planar
  geometry (ground plane at ``y = hc`` in the camera frame, facades, vehicle faces; people and
  bicycles are upright boards at one depth); 0 where nothing is hit (sky, far skyline).

The camera is an ideal pinhole (no distortion) with pixel centres at integer coordinates:
``K = [[f, 0, cx], [0, f, cy], [0, 0, 1]]``; a pixel (u, v) with depth z back-projects to the
camera-frame point (x right, y down, z forward) ``((u - cx) z / f, (v - cy) z / f, z)``.

Usage::

    from seg_perception.datasets.drive import make_drive
    drive = make_drive(seed=0, hw=(256, 512), n_frames=80)
    drive.frames[0].image, drive.frames[0].depth, drive.K
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .synthetic import (
    BICYCLE, CAR, PERSON, RIDER, TRUCK, Scene, _Layout, _Thing, _bike_params, _car_params, _check_hw,
    _person_params, _render, _sample_layout, _truck_params,
)

_KIND_CLASS = {"car": CAR, "truck": TRUCK, "person": PERSON, "rider": RIDER, "bicycle": BICYCLE}
_EGO_HALF_WIDTH = 1.0  # metres, the ego vehicle the camera sits on
_LANE_CHANGE_S = 3.5


@dataclass
class Drive:
    """A rendered drive.

    Attributes:
        frames: one :class:`Scene` per frame, each with ``depth`` (see the module docstring).
        K: (3, 3) float64 camera matrix (pinhole, pixel centres at integer coordinates).
        camera_height: metres of the optical centre above the ground plane.
        fps: frame rate the motion was sampled at.
        ego: (N, 3) float64 camera pose in the street frame: x (right), z (forward) in metres and
            heading (radians, positive to the right; the camera's y axis stays vertical).
        tracks: panoptic id (``class * 1000 + track_id``) -> kind (``car``, ``truck``, ``person``,
            ``rider``, ``bicycle``) of every object of the drive, visible or not.
    """

    frames: list[Scene]
    K: np.ndarray
    camera_height: float
    fps: float
    ego: np.ndarray
    tracks: dict[int, str]

    @property
    def hw(self) -> tuple[int, int]:
        return self.frames[0].semantic.shape


class _Ego:
    """Camera path: constant speed forward, at most one smooth lane change; the camera heads
    where it drives (yaw = atan(dx/dz)), so a lane change is a turn out and back."""

    def __init__(self, speed: float, shift: float, t0: float) -> None:
        self.speed, self.shift, self.t0 = speed, shift, t0

    def x(self, t: float) -> float:
        s = min(max((t - self.t0) / _LANE_CHANGE_S, 0.0), 1.0)
        return self.shift * s * s * (3 - 2 * s)

    def z(self, t: float) -> float:
        return self.speed * t

    def yaw(self, t: float) -> float:
        s = min(max((t - self.t0) / _LANE_CHANGE_S, 0.0), 1.0)
        dx = self.shift * 6 * s * (1 - s) / _LANE_CHANGE_S
        return math.atan2(dx, self.speed)


def _clear_of_ego(thing: _Thing, ego: _Ego, times: np.ndarray) -> bool:
    """True when ``thing`` never overlaps the ego vehicle (with a margin) during ``times``."""
    if thing.kind in ("car", "truck"):
        half, length = thing.params["w"] / 2, thing.params["l"]
    else:
        half, length = 0.5, 1.2
    for t in times:
        tt = thing.at(float(t))
        dz = tt.z - ego.z(float(t))
        if abs(tt.x - ego.x(float(t))) < half + _EGO_HALF_WIDTH + 0.4 and -length - 6.0 < dz < 8.0:
            return False
    return True


class _Tracks:
    """Hands out track ids 1..999 per class and remembers each panoptic id's kind."""

    def __init__(self) -> None:
        self.next = {c: 1 for c in _KIND_CLASS.values()}
        self.kinds: dict[int, str] = {}

    def new(self, kind: str) -> int:
        cls = _KIND_CLASS[kind]
        tid = self.next[cls]
        if tid >= 1000:
            raise ValueError(f"more than 999 {kind} objects in one drive")
        self.next[cls] = tid + 1
        self.kinds[cls * 1000 + tid] = kind
        return tid


def _traffic(rng: np.random.Generator, lay: _Layout, ego: _Ego, first_lane: int, duration: float,
             times: np.ndarray, ids: _Tracks) -> list[_Thing]:
    """Sample the drive's objects in the street frame (ego at x = 0, z = 0 at t = 0). Lanes from
    ``first_lane`` rightwards carry the ego's direction, those left of it oncoming traffic."""
    n_lanes = len(lay.lanes) + 1
    lane_w = (lay.road_l + lay.road_r) / n_lanes
    centres = [-lay.road_l + lane_w * (k + 0.5) for k in range(n_lanes)]
    z_end = ego.z(duration)
    things: list[_Thing] = []

    def add(thing: _Thing) -> bool:
        """Keep ``thing`` (with fresh track ids) unless it would drive into the ego."""
        if not _clear_of_ego(thing, ego, times):
            return False
        things.append(replace(thing, track=ids.new(thing.kind)))
        if thing.kind == "rider":
            things[-1].params["bike_track"] = ids.new("bicycle")
        return True

    # Same direction (the ego's lane and those to its right): some faster (they pull away or
    # overtake from behind), some slower (the ego closes in or passes them).
    # The first one is a truck not far ahead, so every drive has one.
    for lane in range(first_lane, n_lanes):
        for _ in range(int(rng.integers(2, 4))):
            for _try in range(6):
                first = not any(t.kind == "truck" for t in things)
                kind = "truck" if first or rng.random() < 0.3 else "car"
                params = _truck_params(rng) if kind == "truck" else _car_params(rng)
                v = ego.speed + rng.uniform(-4.0, 4.0)
                z = rng.uniform(10.0, 35.0) if first else rng.uniform(-25.0, 60.0)
                if add(_Thing(kind, centres[lane] + rng.uniform(-0.3, 0.3), z, 0.0, v, params)):
                    break
    # Oncoming lanes (left of the ego): each car meets the ego at some time of the drive.
    for lane in range(0, first_lane):
        for _ in range(int(rng.integers(2, 4))):
            kind = "truck" if rng.random() < 0.25 else "car"
            params = _truck_params(rng) if kind == "truck" else _car_params(rng)
            v = rng.uniform(6.0, 11.0)
            t_meet = rng.uniform(0.1, 1.1) * duration
            add(_Thing(kind, centres[lane] + rng.uniform(-0.3, 0.3), ego.z(t_meet) + v * t_meet, 0.0, -v, params))
    # Parked cars along both curbs, every few metres along the route.
    for side in (-1, 1):
        x = (-lay.road_l + 1.1) if side < 0 else (lay.road_r - 1.1)
        z = rng.uniform(2.0, 10.0)
        while z < z_end + 45.0:
            if rng.random() < 0.6:
                kind = "truck" if rng.random() < 0.15 else "car"
                params = _truck_params(rng) if kind == "truck" else _car_params(rng)
                add(_Thing(kind, x + side * rng.uniform(-0.15, 0.15), z, 0.0, 0.0, params))
                z += params["l"]
            z += rng.uniform(1.5, 9.0)
    # Pedestrians on the sidewalks: walking either way or standing; a few cross far ahead.
    walk_l = (-lay.road_l - lay.curb_terrain[0] - lay.side_l, -lay.road_l - lay.curb_terrain[0])
    walk_r = (lay.road_r + lay.curb_terrain[1], lay.road_r + lay.curb_terrain[1] + lay.side_r)
    for _ in range(int(rng.integers(28, 40))):
        lo, hi = walk_l if rng.random() < 0.5 else walk_r
        x = rng.uniform(lo + 0.3, hi - 0.3)
        moving = rng.random() < 0.75
        vz = rng.choice([-1, 1]) * rng.uniform(0.8, 1.6) if moving else 0.0
        add(_Thing("person", x, rng.uniform(3.0, z_end + 40.0), rng.uniform(-0.15, 0.15) if moving else 0.0,
                   vz, _person_params(rng)))
    for _ in range(int(rng.integers(1, 4))):
        side = rng.choice([-1, 1])
        x = (-lay.road_l - 0.5) if side < 0 else (lay.road_r + 0.5)
        add(_Thing("person", x, z_end + rng.uniform(12.0, 35.0), -side * rng.uniform(1.0, 1.5), 0.0,
                   _person_params(rng)))
    # Riders on bicycles along the road edges: with the traffic on the right, against it on the left.
    # Where the road edge is taken by the ego, they ride on the sidewalk's edge instead.
    for _ in range(int(rng.integers(4, 8))):
        params = {**_person_params(rng), **_bike_params(rng), "yaw": rng.uniform(0.5, 1.2) * rng.choice([-1, 1])}
        t_pass = rng.uniform(0.25, 1.1) * duration  # when the ego passes it
        for _try in range(4):
            side = 1 if rng.random() < 0.65 else -1
            edge = rng.uniform(0.6, 1.2) if _try < 2 else -rng.uniform(0.6, 1.0)  # road, then sidewalk
            x = (lay.road_r - edge) if side > 0 else (-lay.road_l + edge)
            v = rng.uniform(3.0, 5.5) * side
            if add(_Thing("rider", x, 4.0 + (ego.speed - v) * t_pass, 0.0, v, params)):
                break
    # Parked bicycles on the sidewalks.
    for _ in range(int(rng.integers(2, 5))):
        lo, hi = walk_l if rng.random() < 0.5 else walk_r
        add(_Thing("bicycle", rng.uniform(lo + 0.4, hi - 0.4), rng.uniform(3.0, z_end + 30.0), 0.0, 0.0,
                   {**_bike_params(rng), "yaw": rng.uniform(-0.9, 0.9)}))
    return things


def _camera_view(lay: _Layout, cx: float, cz: float) -> _Layout:
    """``lay`` moved into the frame of a camera standing at street position (cx, cz)."""
    return replace(
        lay, road_l=lay.road_l + cx, road_r=lay.road_r - cx, lanes=[x - cx for x in lay.lanes],
        crosswalk_z=None if lay.crosswalk_z is None else lay.crosswalk_z - cz,
        facades=[{**fa, "x": fa["x"] - cx, "z0": fa["z0"] - cz, "z1": fa["z1"] - cz} for fa in lay.facades],
        patches=[{**p, "x": p["x"] - cx, "z": p["z"] - cz} for p in lay.patches],
        shadows=[{**s, "x0": s["x0"] - cx, "x1": s["x1"] - cx, "z0": s["z0"] - cz, "z1": s["z1"] - cz}
                 for s in lay.shadows],
        props=[replace(p, x=p.x - cx, z=p.z - cz) for p in lay.props],
        things=[replace(t, x=t.x - cx, z=t.z - cz) for t in lay.things],
        dash_phase=cz % 9.0, joint_phase=cz % 1.5)


def make_drive(seed: int, hw: tuple[int, int] = (256, 512), n_frames: int = 80, *, fps: float = 10.0,
               sensor_noise: float = 1.0) -> Drive:
    """Render drive number ``seed``: ``n_frames`` frames at ``fps`` of a camera driving down a street.

    Deterministic: the same arguments always give the same frames. Textures and lighting are fixed
    for the drive; sensor noise (scaled by ``sensor_noise``, 0 = off) changes per frame.

    Returns:
        :class:`Drive` (frames with image (H, W, 3) uint8 RGB, semantic, panoptic with track ids,
        depth (H, W) float32 m; camera matrix; ego path; track kinds).

    Raises:
        ValueError: bad ``hw``, ``n_frames`` < 1, ``fps`` <= 0 or ``sensor_noise`` < 0.
    """
    hw = _check_hw(hw)
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if not sensor_noise >= 0:
        raise ValueError(f"sensor_noise must be >= 0, got {sensor_noise!r}")
    n = int(n_frames)
    duration = (n - 1) / fps
    rng = np.random.default_rng([int(seed), 0xD21FE])
    speed = rng.uniform(6.0, 9.0)
    lay = _sample_layout(rng, hw, extra=speed * duration + 40.0)
    n_lanes = len(lay.lanes) + 1
    lane_w = (lay.road_l + lay.road_r) / n_lanes
    ego_lane = int(np.clip(math.floor(lay.road_l / lane_w), 0, n_lanes - 1))
    target = ego_lane  # lane change: to the right where there is a lane, else to the left
    if duration > 2 * _LANE_CHANGE_S and rng.random() < 0.8:
        target = ego_lane + 1 if ego_lane + 1 < n_lanes else max(ego_lane - 1, 0)
    shift = -lay.road_l + lane_w * (target + 0.5) if target != ego_lane else 0.0  # to the lane's centre
    ego = _Ego(speed, shift, rng.uniform(0.2, 0.5) * max(duration - _LANE_CHANGE_S, 0.0))
    times = np.arange(n) / fps
    ids = _Tracks()
    lay = replace(lay, things=_traffic(rng, lay, ego, min(ego_lane, target), duration, times, ids))
    base = int(rng.integers(2**31))
    frames, poses = [], []
    for k, t in enumerate(times):
        cx, cz = ego.x(float(t)), ego.z(float(t))
        poses.append((cx, cz, ego.yaw(float(t))))
        frames.append(_render(_camera_view(lay, cx, cz), float(t), noise_seed=base, sensor_seed=base + 1 + k,
                              sensor_noise=sensor_noise, moving_camera=True, yaw=ego.yaw(float(t))))
    K = np.array([[lay.f, 0.0, lay.xv], [0.0, lay.f, lay.yh], [0.0, 0.0, 1.0]])
    return Drive(frames=frames, K=K, camera_height=float(lay.hc), fps=float(fps), ego=np.asarray(poses),
                 tracks=dict(ids.kinds))


__all__ = ["Drive", "make_drive"]

"""Procedural driving scenes: a road along a route (straight, sometimes curving), clutter that is
not an object (buildings, walls, fences, poles, trees, bushes), and objects of movable classes
(cars, vans/trucks, pedestrians, cyclists) that move on their own trajectories or stand still.
Pure numpy: the PyBullet side lives in `engine.py`.

Coordinates: world x/y on the ground, z up. Along the route, `s` is the arc length and `d` the
lateral offset (+ to the left of the driving direction). Right-hand traffic: the ego drives in
the lane at d = EGO_LANE.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from .meshes import Part

DT = 0.1                     # s, 10 Hz camera and LiDAR
EGO_LANE = -1.75
LANES = {-5.25: +1, 1.75: -1, 5.25: -1}   # other lanes: centre d -> direction of travel
ROAD_HALF = 9.5              # road surface incl. parking strips, |d| <= ROAD_HALF
LANE_EDGE = 7.0              # outer lane lines
PARK_D = 8.25
SIDEWALK = (9.5, 13.0)
STRUCT_D = 13.5              # first metre of buildings, walls, fences
# SemanticKITTI class ids (lower 16 bits of a .label)
CLASS_IDS = {"car": 10, "truck": 18, "pedestrian": 30, "cyclist": 31, "road": 40, "sidewalk": 48,
             "building": 50, "fence": 51, "vegetation": 70, "trunk": 71, "terrain": 72, "pole": 80,
             "traffic-sign": 81, "other-object": 99}
CLUTTER = ("basic", "street")  # street: also object-sized street furniture (`street_furniture`)
PARKING = ("sparse", "tight")  # tight: rows of parked vehicles bumper to bumper (`generate`)
TIGHT_GAP = (0.3, 1.2)         # metres between neighbours in a tight row
TIGHT_ROW = (3, 9)             # vehicles in a tight row (randint: 3 to 8) ...
TIGHT_FREE = (4.0, 20.0)       # ... then this much free kerb
OBJECT_CLASSES = ("car", "truck", "pedestrian", "cyclist")
MOVING_SPEED = 0.25          # m/s, above this an object counts as moving


@dataclass
class Route:
    s: np.ndarray        # (S,) arc length samples, metres
    xy: np.ndarray       # (S, 2)
    heading: np.ndarray  # (S,) radians

    @staticmethod
    def build(s_min: float, s_max: float, arc: tuple | None, step: float = 0.5) -> "Route":
        """Straight along +x from s_min, with an optional arc (s_start, radius, signed angle)."""
        s = np.arange(s_min, s_max + step, step)
        kappa = np.zeros_like(s)
        if arc is not None:
            s0, radius, angle = arc
            kappa[(s >= s0) & (s < s0 + radius * abs(angle))] = np.sign(angle) / radius
        heading = np.concatenate([[0.0], np.cumsum(kappa[:-1] * step)])
        heading -= np.interp(0.0, s, heading)
        dxy = np.stack([np.cos(heading), np.sin(heading)], -1) * step
        xy = np.concatenate([[[0.0, 0.0]], np.cumsum(dxy[:-1], 0)])
        xy -= np.array([np.interp(0.0, s, xy[:, 0]), np.interp(0.0, s, xy[:, 1])])
        return Route(s, xy, heading)

    def pose(self, s, d):
        """World (x, y, heading) of route coordinates (s, d); arrays broadcast."""
        s, d = np.broadcast_arrays(np.asarray(s, float), np.asarray(d, float))
        h = np.interp(s, self.s, self.heading)
        x = np.interp(s, self.s, self.xy[:, 0]) - d * np.sin(h)
        y = np.interp(s, self.s, self.xy[:, 1]) + d * np.cos(h)
        return x, y, h

    def lateral(self, xy: np.ndarray) -> np.ndarray:
        """Unsigned distance of world points (N, 2) to the centreline."""
        if not hasattr(self, "_tree"):
            self._tree = cKDTree(self.xy)
        return self._tree.query(xy)[0]


@dataclass
class Body:
    """A rigid body: boxes in its local frame (origin on the ground, x forward), one texture."""
    parts: list
    texture: str                 # key into Scene.textures
    cls: str                     # class name (CLASS_IDS)
    reflectance: float
    x: np.ndarray                # (T,) world poses per frame (constant for static bodies)
    y: np.ndarray
    yaw: np.ndarray
    instance: int = 0            # 0 = background clutter, >0 = object instance id
    size: tuple = (0.0, 0.0, 0.0)  # (length, width, height) of the object box

    @property
    def static(self) -> bool:
        return np.ptp(self.x) == 0 and np.ptp(self.y) == 0 and np.ptp(self.yaw) == 0


@dataclass
class Scene:
    route: Route
    frames: int
    ego_s: np.ndarray            # (T,)
    ego_xy: np.ndarray           # (T, 2) IMU position
    ego_yaw: np.ndarray          # (T,)
    ego_speed: np.ndarray        # (T,)
    bodies: list = field(default_factory=list)
    textures: dict = field(default_factory=dict)  # name -> (kind, colours...) spec, see engine
    sun: tuple = (0.5, 0.5, 1.0)
    sky: tuple = ((200, 215, 235), (150, 180, 220))
    ambient: float = 0.6

    @property
    def objects(self) -> list:
        return [b for b in self.bodies if b.instance > 0]


def _vehicle_parts(cls: str, l: float, w: float, h: float) -> list:
    wheels = [Part((sx * 0.32 * l, sy * (w / 2 - 0.1), 0.33), (0.33, 0.12, 0.33), "tyre")
              for sx in (-1, 1) for sy in (-1, 1)]
    lights = [Part((l / 2 - 0.02, sy * 0.33 * w, 0.6), (0.03, 0.15, 0.07), "detail") for sy in (-1, 1)]
    if cls == "car":
        hb = 0.5 * h
        return [Part((0, 0, 0.25 + hb / 2 - 0.05), (l / 2, w / 2, hb / 2), "paint"),
                Part((-0.05 * l, 0, 0.2 + hb + (h - 0.2 - hb) / 2), (0.27 * l, 0.45 * w, (h - 0.2 - hb) / 2), "glass"),
                Part((-0.05 * l, 0, h - 0.04), (0.25 * l, 0.43 * w, 0.04), "paint")] + wheels + lights
    cab = 1.9
    return [Part((-cab / 2, 0, 0.6 + (h - 0.6) / 2), ((l - cab) / 2, w / 2, (h - 0.6) / 2), "paint"),
            Part((l / 2 - cab / 2, 0, 0.5 + 0.35 * h / 2 + 0.05), (cab / 2, w / 2 - 0.02, 0.35 * h / 2), "detail"),
            Part((l / 2 - cab / 2, 0, 0.55 + 0.35 * h + 0.25 * h / 2), (cab / 2 - 0.1, w / 2 - 0.05, 0.25 * h / 2), "glass"),
            Part((0, 0, 0.45), (l / 2 - 0.2, w / 2 - 0.2, 0.12), "tyre")] + wheels + lights


def _pedestrian_parts(h: float) -> list:
    leg, torso = 0.47 * h, 0.33 * h
    legs = [Part((0, sy * 0.1, leg / 2), (0.09, 0.08, leg / 2), "glass") for sy in (-1, 1)]
    arms = [Part((0, sy * 0.26, leg + torso * 0.55), (0.06, 0.05, torso * 0.45), "paint") for sy in (-1, 1)]
    return legs + arms + [Part((0, 0, leg + torso / 2), (0.12, 0.2, torso / 2), "paint"),
                          Part((0.01, 0, h - 0.11), (0.1, 0.09, 0.11), "detail")]


def _cyclist_parts() -> list:
    wheels = [Part((sx * 0.52, 0, 0.34), (0.34, 0.03, 0.34), "tyre") for sx in (-1, 1)]
    legs = [Part((-0.05, sy * 0.12, 0.8), (0.22, 0.06, 0.2), "glass") for sy in (-1, 1)]
    return wheels + legs + [Part((0, 0, 0.62), (0.48, 0.035, 0.06), "glass"),
                            Part((-0.12, 0, 1.25), (0.14, 0.19, 0.28), "paint"),
                            Part((0.02, 0, 1.64), (0.1, 0.09, 0.11), "detail")]


OBJECT_SIZES = {  # (length, width, height) ranges
    "car": ((3.8, 4.8), (1.6, 1.9), (1.4, 1.65)),
    "truck": ((5.0, 8.5), (2.0, 2.5), (2.3, 3.4)),
    "pedestrian": ((0.5, 0.5), (0.6, 0.6), (1.5, 1.95)),
    "cyclist": ((1.8, 1.8), (0.6, 0.6), (1.75, 1.75)),
}
REFLECTANCE = {"car": 0.35, "truck": 0.4, "pedestrian": 0.25, "cyclist": 0.3, "building": 0.3,
               "fence": 0.2, "vegetation": 0.45, "trunk": 0.35, "pole": 0.5, "road": 0.22,
               "sidewalk": 0.3, "terrain": 0.4, "traffic-sign": 0.7, "other-object": 0.3}
# street furniture stands on the kerb side of the sidewalk (trees, signs, bollards) or against the
# buildings (cabinets, kiosks, planters); walking and standing pedestrians keep the band in between
KERB_BAND = (SIDEWALK[0] + 0.3, SIDEWALK[0] + 0.8)
FRONTAGE_BAND = (SIDEWALK[1] - 0.4, SIDEWALK[1])
KERBSIDE = ("vegetation", "pole", "traffic-sign", "other-object")   # classes allowed up to the kerb


def _ego_speed(rng: np.random.Generator, T: int) -> np.ndarray:
    """Ego speed per frame (m/s, 0..15): cruising, stop-and-go, or standing still."""
    t = np.arange(T) * DT
    mode = rng.choice(["cruise", "stop_go", "still"], p=[0.5, 0.3, 0.2])
    if mode == "cruise":
        v = rng.uniform(4, 14) + rng.uniform(0, 1.5) * np.sin(2 * np.pi * t / rng.uniform(4, 10) + rng.uniform(0, 6))
    elif mode == "stop_go":
        v0, t_stop, hold = rng.uniform(5, 12), rng.uniform(0.2, 0.5) * t[-1], rng.uniform(1, 3)
        dec = v0 - 2.5 * np.clip(t - (t_stop - v0 / 2.5), 0, None)
        acc = 1.5 * np.clip(t - t_stop - hold, 0, None)
        v = np.where(t < t_stop + hold, np.maximum(dec, 0), acc)
    else:
        start = rng.uniform(0.5, 1.5) * t[-1]  # may start moving before the end
        v = 1.5 * np.clip(t - start, 0, None)
    return np.clip(v, 0, 15)


def _furniture(kind: str, rng: np.random.Generator) -> tuple[list, str, str]:
    """(parts, texture, class) of one piece of street furniture, origin on the ground at its
    centre. Every piece fits the size window of object clustering (`baselines.ClusterConfig`: 0.4-4.5
    m high, at most 3.5 m wide), which is what makes it a confuser for the students and the
    clustering alike."""
    u = rng.uniform
    if kind == "bush":                         # a few overlapping blobs: an irregular outline
        n, w, h = int(rng.integers(3, 7)), u(0.6, 2.5), u(0.5, 1.8)
        parts = [Part((u(-w, w) / 2, u(-0.4, 0.4), h * u(0.35, 0.55)), (w * u(0.25, 0.45), u(0.3, 0.6), h * u(0.35, 0.5)), 1.5)
                 for _ in range(n)]
        return parts, f"foliage{rng.integers(0, 2)}", "vegetation"
    if kind == "small_tree":                   # young tree: below clustering's 4.5 m height limit
        trunk, crown = u(1.0, 2.0), u(0.5, 1.1)
        return ([Part((0, 0, trunk / 2), (0.08, 0.08, trunk / 2), "tyre"),
                 Part((0, 0, trunk + crown * 0.8), (crown, crown, crown * 0.8), "paint")], "tree0", "vegetation")
    if kind == "sign":                         # post with a plate, or a bus-stop pole with a board
        post, plate = u(2.0, 3.0), u(0.3, 0.6)
        return ([Part((0, 0, post / 2), (0.04, 0.04, post / 2), 1.0),
                 Part((0, 0, post - plate / 2), (0.03, plate / 2, plate / 2), 1.0)], "metal0", "traffic-sign")
    if kind == "bollards":                     # a row, each one its own cluster
        n, gap, h = int(rng.integers(3, 7)), u(1.2, 2.0), u(0.7, 1.1)
        return ([Part(((i - (n - 1) / 2) * gap, 0, h / 2), (0.08, 0.08, h / 2), 1.0) for i in range(n)],
                "metal0", "pole")
    if kind == "cabinet":                      # electrical cabinet, bin, vending machine
        l, w, h = u(0.5, 1.4), u(0.35, 0.7), u(0.9, 1.6)
        return [Part((0, 0, h / 2), (l / 2, w / 2, h / 2), 1.0)], f"{rng.choice(['metal', 'wall'])}0", "other-object"
    if kind == "bench":
        l = u(1.4, 2.2)
        return ([Part((0, 0, 0.45), (l / 2, 0.25, 0.04), 1.0), Part((0, 0.22, 0.7), (l / 2, 0.03, 0.25), 1.0)]
                + [Part((sx * (l / 2 - 0.1), 0, 0.22), (0.04, 0.22, 0.22), 1.0) for sx in (-1, 1)],
                "metal0", "other-object")
    if kind == "kiosk":                        # booth or ticket machine: up to 3 m long, never moves
        l, w, h = u(1.5, 3.0), u(0.5, 0.7), u(2.0, 2.8)
        return [Part((0, 0, h / 2), (l / 2, w / 2, h / 2), 2.0)], f"wall{rng.integers(0, 2)}", "other-object"
    if kind == "planter":                      # a box with a shrub in it
        l, w = u(0.8, 2.0), u(0.5, 0.7)
        return ([Part((0, 0, 0.3), (l / 2, w / 2, 0.3), 1.0),
                 Part((0, 0, 0.6 + 0.35), (l / 2 * 0.9, w / 2 * 0.9, 0.35), 1.5)], "foliage1", "vegetation")
    raise ValueError(f"unknown street furniture {kind!r}")


KERB_FURNITURE = {"bush": 0.3, "small_tree": 0.25, "sign": 0.25, "bollards": 0.2}     # kind -> share
FRONTAGE_FURNITURE = {"bush": 0.25, "cabinet": 0.3, "bench": 0.15, "kiosk": 0.1, "planter": 0.2}


def street_furniture(rng: np.random.Generator, s_lo: float, s_hi: float, spacing=(4.0, 12.0)) -> list:
    """[(parts, texture, class, s, d, yaw)] of object-sized static clutter along both sides of the
    route between arc lengths s_lo and s_hi: the bushes, young trees, signs and bollards at the kerb
    and the cabinets, benches, kiosks and planters against the buildings that real streets hold and
    that object clustering keeps (`clutter: street`)."""
    out = []
    for side in (-1, 1):
        for band, kinds in ((KERB_BAND, KERB_FURNITURE), (FRONTAGE_BAND, FRONTAGE_FURNITURE)):
            names, p = list(kinds), np.array(list(kinds.values()))
            s = s_lo + rng.uniform(0, spacing[1])
            while s < s_hi:
                kind = names[rng.choice(len(names), p=p / p.sum())]
                parts, tex, cls = _furniture(kind, rng)
                along = kind in ("bollards", "bench", "kiosk", "cabinet", "planter")
                yaw = (0.0 if side > 0 else np.pi) if along else rng.uniform(0, np.pi)
                d = side * rng.uniform(*band)
                out.append((parts, tex, cls, s, d, yaw))
                s += rng.uniform(*spacing)
    return out


def generate(rng: np.random.Generator, frames: int, clutter: str = "basic", object_density: float = 1.0,
             parking: str = "sparse") -> Scene:
    """A random scene of `frames` frames. `clutter`: `basic` (buildings, walls, fences, hedges,
    trees, poles: the scenes every shipped model was trained on) or `street` (also object-sized street
    furniture, drawn after everything else, so a seed's `basic` scene is unchanged).
    `object_density` in (0, 1]: each object of the scene is kept with this probability (drawn last;
    1 keeps the scene as it was), for streets as sparse in objects as real ones (docs/data.md).
    `parking`: `sparse` (a parking bay every 6-9 m, half of them taken: the shipped models' drives) or
    `tight` (rows of 3-8 vehicles 0.3-1.2 m apart, then 4-20 m of free kerb, as city streets are
    lined; the rest of the scene is drawn the same way, so it differs from the seed's `sparse` scene)."""
    if clutter not in CLUTTER:
        raise ValueError(f"clutter must be one of {CLUTTER}, got {clutter!r}")
    if parking not in PARKING:
        raise ValueError(f"parking must be one of {PARKING}, got {parking!r}")
    if not 0.0 < object_density <= 1.0:
        raise ValueError(f"object_density must be within (0, 1], got {object_density}")
    T = frames
    ego_v = _ego_speed(rng, T)
    ego_s = np.concatenate([[0.0], np.cumsum(ego_v[:-1] * DT)])
    travel = ego_s[-1]
    s_lo, s_hi = -45.0, travel + 120.0              # where the sensors can see things
    reach = 16.0 * T * DT + 20.0                    # how far movers can drive in the sequence
    arc = None
    if rng.random() < 0.5:
        start = rng.uniform(-10, max(-5, travel - 10)) if travel > 5 else rng.uniform(5, 40)
        arc = (start, rng.uniform(25, 45), rng.choice([-1, 1]) * np.deg2rad(rng.uniform(30, 90)))
    route = Route.build(s_lo - reach - 50, s_hi + reach + 50, arc)
    ex, ey, eyaw = route.pose(ego_s, EGO_LANE)
    scene = Scene(route, T, ego_s, np.stack([ex, ey], -1), eyaw, ego_v)
    scene.sun = (float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)), float(rng.uniform(0.6, 1.5)))
    scene.ambient = float(rng.uniform(0.45, 0.7))
    top = rng.integers(150, 230, 3)
    scene.sky = (tuple(int(c) for c in np.minimum(top + 30, 255)), tuple(int(c) for c in top))

    t = np.arange(T) * DT
    ones = np.ones(T)
    next_id = [1]

    def add_object(cls, s_t, d_t, yaw_off, length=None):
        l, w, h = (rng.uniform(*r) for r in OBJECT_SIZES[cls])
        l = l if length is None else length
        parts = {"car": lambda: _vehicle_parts("car", l, w, h), "truck": lambda: _vehicle_parts("truck", l, w, h),
                 "pedestrian": lambda: _pedestrian_parts(h), "cyclist": _cyclist_parts}[cls]()
        x, y, hd = route.pose(s_t * ones, d_t * ones)
        body = Body(parts, f"{cls}{rng.integers(0, 6)}", cls, REFLECTANCE[cls] + rng.uniform(-0.1, 0.1),
                    x, y, hd + yaw_off * ones, instance=next_id[0], size=(l, w, h))
        next_id[0] += 1
        scene.bodies.append(body)

    def along_kerb(s0, d, metres):
        """Route length from s0 that moves `metres` along the line at lateral offset d (curves
        stretch or shrink it)."""
        (xa, xb), (ya, yb), _ = route.pose([s0, s0 + 0.5], [d, d])
        return metres * 0.5 / max(float(np.hypot(xb - xa, yb - ya)), 0.1)

    def slots(lo, hi, gap):
        s, out = lo, []
        while s < hi:
            out.append(s)
            s += rng.uniform(*gap)
        return out

    # parked vehicles on both sides, still
    for side in (-1, 1):
        if parking == "tight":
            s_row = s_lo + rng.uniform(0.0, TIGHT_FREE[1])
            while s_row < s_hi:
                for _ in range(rng.integers(*TIGHT_ROW)):
                    cls = "truck" if rng.random() < 0.15 else "car"
                    length = rng.uniform(*OBJECT_SIZES[cls][0])
                    d = side * PARK_D + rng.uniform(-0.2, 0.2)
                    centre = s_row + along_kerb(s_row, d, length / 2)
                    add_object(cls, centre, d, rng.choice([0, np.pi]) + rng.normal(0, 0.03), length)
                    s_row = centre + along_kerb(centre, d, length / 2 + rng.uniform(*TIGHT_GAP))
                s_row += rng.uniform(*TIGHT_FREE)
            continue
        for s0 in slots(s_lo, s_hi, (6.0, 9.0)):
            if rng.random() < 0.5:
                add_object("truck" if rng.random() < 0.15 else "car", s0, side * PARK_D + rng.uniform(-0.2, 0.2),
                           rng.choice([0, np.pi]) + rng.normal(0, 0.03))
    # traffic in the other lanes; a lane may be a standing queue
    for d, direction in LANES.items():
        v = 0.0 if rng.random() < 0.2 else rng.uniform(4, 14)
        lo, hi = (s_lo - v * T * DT, s_hi) if direction > 0 else (s_lo, s_hi + v * T * DT)
        for s0 in slots(lo, hi, (14.0, 45.0)):
            add_object("truck" if rng.random() < 0.2 else "car", s0 + direction * v * t, d,
                       0.0 if direction > 0 else np.pi)
    # a car ahead in the ego lane, following the ego
    if rng.random() < 0.6:
        gap = rng.uniform(9, 25) + rng.uniform(0, 3) * np.sin(2 * np.pi * t / rng.uniform(5, 12))
        add_object("car", ego_s + gap, EGO_LANE, 0.0)
    # cyclists at the lane edges
    for _ in range(rng.integers(0, 3)):
        side = rng.choice([-1, 1])
        direction = -side
        v = rng.uniform(2.5, 6.5)
        add_object("cyclist", rng.uniform(s_lo + 20, s_hi) + direction * v * t, side * 6.6, 0.0 if direction > 0 else np.pi)
    # pedestrians on the sidewalks: walking or standing
    for side in (-1, 1):
        for s0 in slots(s_lo, s_hi, (5.0, 22.0)):
            d0 = side * rng.uniform(SIDEWALK[0] + 1.0, SIDEWALK[1] - 0.4)
            if rng.random() < 0.45:
                add_object("pedestrian", s0, d0, rng.uniform(-np.pi, np.pi))
            else:
                v = rng.choice([-1, 1]) * rng.uniform(0.8, 1.8)
                add_object("pedestrian", s0 + v * t, d0, 0.0 if v > 0 else np.pi)
    # pedestrians crossing ahead of the ego (never where the ego will be)
    for _ in range(rng.integers(0, 3)):
        s_c, v = travel + rng.uniform(15, 45), rng.uniform(1.0, 1.6)
        t0 = rng.uniform(-0.5, 0.7) * t[-1]
        d_t = np.clip(-11.5 + v * (t - t0), -11.5, 11.5)
        add_object("pedestrian", s_c + rng.uniform(-1, 1) * ones, d_t, np.pi / 2)

    # static clutter: buildings, walls, fences, bushes, trees, poles (instance 0)
    def add_static(parts, tex, cls, s0, d0, yaw_off=0.0):
        x, y, h = route.pose(s0, d0)
        scene.bodies.append(Body(parts, tex, cls, REFLECTANCE[cls] + rng.uniform(-0.08, 0.08),
                                 np.full(T, float(x)), np.full(T, float(y)), np.full(T, float(h) + yaw_off)))

    c_lo, c_hi = s_lo - 30, s_hi + 40
    for side in (-1, 1):
        s = c_lo
        while s < c_hi:
            length = rng.uniform(8, 25)
            r = rng.random()
            if r < 0.7:
                depth, height = rng.uniform(8, 15), rng.uniform(6, 20)
                add_static([Part((0, 0, height / 2), (length / 2, depth / 2, height / 2), 3.0)],
                           f"facade{rng.integers(0, 4)}", "building", s + length / 2, side * (STRUCT_D + 0.3 + depth / 2))
            elif r < 0.85:
                height = rng.uniform(1.0, 2.5)
                add_static([Part((0, 0, height / 2), (length / 2, 0.15, height / 2), 2.0)],
                           f"wall{rng.integers(0, 2)}", "building", s + length / 2, side * (STRUCT_D + 0.15))
            elif r < 0.95:
                height = rng.uniform(1.0, 2.0)
                add_static([Part((0, 0, height / 2), (length / 2, 0.04, height / 2), 1.0)],
                           "fence0", "fence", s + length / 2, side * (STRUCT_D + 0.05))
            else:
                n = int(length // 2)
                add_static([Part((2.0 * i - length / 2, 0, 0.45), (0.9, 0.7, 0.45), 1.5) for i in range(n)],
                           "foliage0", "vegetation", s + length / 2, side * (STRUCT_D + 0.7))
            s += length + rng.uniform(0, 5)
        for s0 in slots(c_lo, c_hi, (7.0, 18.0)):
            if rng.random() < 0.6:
                trunk, crown = rng.uniform(2.0, 3.5), rng.uniform(1.0, 1.9)
                add_static([Part((0, 0, trunk / 2), (0.15, 0.15, trunk / 2), "tyre"),
                            Part((0, 0, trunk + crown * 0.8), (crown, crown, crown * 0.8), "paint")],
                           f"tree{rng.integers(0, 2)}", "vegetation", s0, side * (SIDEWALK[0] + 0.5), rng.uniform(0, np.pi))
        for s0 in slots(c_lo, c_hi, (20.0, 40.0)):
            height = rng.uniform(5, 8)
            add_static([Part((0, 0, height / 2), (0.08, 0.08, height / 2), 1.0)], "metal0", "pole",
                       s0, side * (SIDEWALK[0] + 0.25))
    if clutter == "street":
        for parts, tex, cls, s0, d0, yaw in street_furniture(rng, c_lo, c_hi):
            add_static(parts, tex, cls, s0, d0, yaw)

    if object_density < 1.0:
        drop = rng.random(len(scene.bodies)) >= object_density
        scene.bodies = [b for b, d in zip(scene.bodies, drop) if not (d and b.instance)]

    # drop clutter that a curve would push onto the road or sidewalk
    keep = []
    for b in scene.bodies:
        if b.instance or not b.static:
            keep.append(b)
            continue
        c, s_ = np.cos(b.yaw[0]), np.sin(b.yaw[0])
        solid = b.parts[:1] if b.cls in ("vegetation", "pole") else b.parts  # tree crowns may overhang
        pts = np.concatenate([np.asarray(p.centre)[None, :2] + np.array([[sx * p.half[0], sy * p.half[1]]
                              for sx in (-1, 1) for sy in (-1, 1)]) for p in solid])
        world = pts @ np.array([[c, s_], [-s_, c]]) + [b.x[0], b.y[0]]
        limit = SIDEWALK[0] + 0.2 if b.cls in KERBSIDE else STRUCT_D - 0.3
        if route.lateral(world).min() >= limit:
            keep.append(b)
    scene.bodies = keep
    return scene

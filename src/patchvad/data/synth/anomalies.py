"""Anomaly events, and their normal counterparts for normal videos.

Each builder scripts one event at a random time: the actors behave normally before
and after it (a runner walks, then runs, then walks again; a car drives on the road,
swerves onto the walkway and back) and only the scripted span is labelled. The
labelled frames of an actor are its ``event`` mask; the renderer writes a track row
for each such frame in which at least a quarter of the object is inside the frame.

Normal videos get the *normal counterpart* of a randomly drawn type at a random time
(a walker, a walking pair, a bag carrier, a car passing in the near lane), so
anomalous videos do not stand out merely by holding one or two more agents.

Ground-truth conventions (docs/synthetic.md): tight boxes around the whole drawn
object (amodal: a passer-by in front does not shrink the box); fighting gives one
track per fighter; left_object tracks the bag alone, from the moment it leaves the
hand until someone picks it up or the video ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from patchvad.data.synth.agents import (
    FIGHT,
    PUNCHES,
    RUN,
    SIDE,
    WALK,
    Agent,
    Occupancy,
    add_walker_group,
    attach_bag,
    bag_look,
    car_look,
    car_on_lane,
    hand_point,
    integrate_along,
    person_look,
    person_on_path,
    vehicle_on_path,
    walker,
)
from patchvad.data.synth.config import SynthConfig
from patchvad.data.synth.scene import Photometry, View


@dataclass
class Context:
    """What an event builder needs about its video."""

    view: View
    config: SynthConfig
    photo: Photometry
    n: int
    occupancy: Occupancy
    lane_speeds: list[float]


@dataclass
class Event:
    """A scripted event: its actors and planned window ``[t0, t1)``.

    For normal videos (``anomalous`` False) the window is where the normal
    counterpart appears; nothing in it is labelled.
    """

    kind: str
    anomalous: bool
    t0: int
    t1: int
    agents: list[Agent] = field(default_factory=list)


def _smoothstep(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3.0 - 2.0 * u)


def _duration(rng: np.random.Generator, ctx: Context, minimum: int = 16) -> int:
    lo, hi = ctx.config.event_fraction
    d = int(round(ctx.n * float(rng.uniform(lo, hi))))
    return int(min(max(d, minimum), _max_duration(ctx)))


def _max_duration(ctx: Context) -> int:
    return int(math.floor(ctx.n * ctx.config.event_fraction[1]))


def _start(rng: np.random.Generator, ctx: Context, d: int) -> int:
    margin = max(4, int(0.04 * ctx.n))
    hi = ctx.n - d - margin
    if hi < margin:
        return max(0, (ctx.n - d) // 2)
    return int(rng.integers(margin, hi + 1))


def _lane(rng: np.random.Generator, view: View, lo_pad: float = 0.0, hi_pad: float = 0.0) -> float:
    lo, hi = view.feet
    return float(rng.uniform(lo + lo_pad, max(lo + lo_pad, hi - hi_pad)))


def _walk_speed(rng: np.random.Generator, config: SynthConfig) -> float:
    return float(rng.uniform(*config.walk_speed)) * config.object_scale * config.speed_scale


def _max_scale(view: View, cross: float) -> float:
    # Along a vertical layout the scale changes with the row; bound distances by the nearest row.
    return float(view.scale_y(cross)) if view.orient == "h" else float(view.perspective[1])


def _mark(agent: Agent, t0: int, t1: int, track_id: int) -> Agent:
    agent.anomalous = True
    agent.event = np.zeros(agent.n_frames, dtype=bool)
    agent.event[max(t0, 0):min(t1, agent.n_frames)] = True
    agent.track_id = track_id
    agent.role = "actor"
    return agent


# --- the anomaly types ---------------------------------------------------------------


def running(rng: np.random.Generator, ctx: Context) -> Event:
    """A pedestrian walks with the flow, runs at 3-4x speed for the event, walks again."""
    view, cfg, n = ctx.view, ctx.config, ctx.n
    look = person_look(rng, cfg, ctx.photo)
    v_walk = _walk_speed(rng, cfg)
    v_run = v_walk * float(rng.uniform(*cfg.run_factor))
    cross = _lane(rng, view)
    pad = 0.4 * look.height
    L = view.length
    scale = _max_scale(view, cross)
    d = _duration(rng, ctx)
    d = max(12, min(d, int((L - 2 * pad) / (v_run * scale))))
    t0 = _start(rng, ctx, d)
    run_px = d * v_run * scale
    flow = view.flow
    if flow > 0:
        a_start = float(rng.uniform(pad, max(pad, L - pad - run_px)))
    else:
        a_start = float(rng.uniform(min(L - pad, pad + run_px), L - pad))
    vel = np.full(n, flow * v_walk)
    mode = np.full(n, WALK, dtype=np.int8)
    for k in range(d):
        ramp = min(1.0, (k + 1) / 4.0, (d - k) / 4.0)   # 4-frame acceleration and deceleration
        vel[t0 + k] = flow * (v_walk + (v_run - v_walk) * ramp)
    mode[t0:t0 + d] = RUN
    cross_arr = np.full(n, cross)
    along = integrate_along(view, t0, a_start, cross_arr, vel)
    agent = person_on_path(view, look, along, cross_arr, mode, float(rng.random()))
    # Runners lean forward (only visible from the side).
    lean = np.where((agent.mode == RUN) & (agent.view == SIDE), agent.facing * 7.0, 0.0)
    agent.angle = lean.astype(np.float32)
    ctx.occupancy.walk.append((0, n - 1, cross - 10.0, cross + 10.0))
    return Event("running", True, t0, t0 + d, [_mark(agent, t0, t0 + d, 1)])


def wrong_way(rng: np.random.Generator, ctx: Context) -> Event:
    """A pedestrian enters at the downstream edge walking against the flow, then turns back."""
    view, cfg, n = ctx.view, ctx.config, ctx.n
    look = person_look(rng, cfg, ctx.photo)
    v = _walk_speed(rng, cfg)
    cross = _lane(rng, view)
    turn = 8
    d = _duration(rng, ctx, minimum=24)
    scale = _max_scale(view, cross)
    d = min(d, turn + int((view.length - look.height) / (v * scale)))
    t0 = _start(rng, ctx, d)
    flow = view.flow
    # At t0 the walker is about a quarter in view (where track rows begin): across a
    # horizontal layout the body (~0.4 H wide) is centred on the anchor; along a
    # vertical one it stands up from the feet.
    top, bottom = view.perspective
    if view.orient == "h":
        s = float(view.scale_y(cross))
        edge = view.length + 0.1 * look.height * s if flow > 0 else -0.1 * look.height * s
    else:
        edge = view.length + 0.72 * look.height * bottom if flow > 0 else 0.28 * look.height * top
    # Against the flow from outside the frame (it walks in), a short stop to turn
    # round, then with the flow back out.
    vel = np.full(n, flow * v)
    vel[:t0 + d - turn] = -flow * v
    vel[t0 + d - turn:t0 + d] = 0.0
    cross_arr = np.full(n, cross)
    along = integrate_along(view, t0, edge, cross_arr, vel)
    agent = person_on_path(view, look, along, cross_arr, np.full(n, WALK, dtype=np.int8), float(rng.random()))
    half = t0 + d - turn // 2
    agent.facing[t0 + d - turn:half] = -flow
    agent.facing[half:t0 + d] = flow
    ctx.occupancy.walk.append((0, n - 1, cross - 10.0, cross + 10.0))
    # Every frame against the flow is anomalous; rows start once a quarter of the
    # walker is in view, at about t0.
    return Event("wrong_way", True, t0, t0 + d, [_mark(agent, 0, t0 + d, 1)])


def vehicle_in_zone(rng: np.random.Generator, ctx: Context) -> Event:
    """A car swerves from the lane next to the walkway onto it, drives along it, and back."""
    view, cfg, n = ctx.view, ctx.config, ctx.n
    lane = view.near_lane()
    c_road, direction = view.lanes[lane]
    v_road = ctx.lane_speeds[lane]
    look = car_look(rng, cfg, ctx.photo)
    v_zone = float(rng.uniform(1.2, 2.2)) * cfg.object_scale * cfg.speed_scale
    if view.orient == "h":
        lo, hi = view.feet
        c_zone = float(rng.uniform(lo + 0.3 * (hi - lo), hi - 0.1 * (hi - lo)))
    else:
        half_w = 0.5 * look.height * view.perspective[1] + 3.0
        c_zone = float(rng.uniform(view.walk[0] + half_w, max(view.walk[0] + half_w, view.walk[1] - half_w)))
    scale = _max_scale(view, c_zone)
    room = (view.length - look.length * scale - 8.0) / scale    # along distance available, at scale 1
    d = _duration(rng, ctx, minimum=36)
    ramp = int(min(14, max(6, d // 4)))
    if ramp * (v_road + v_zone) + 12 * v_zone > room:
        v_road = max(v_zone, (room - 12 * v_zone) / ramp - v_zone)
    fit = 2 * ramp + int((room - ramp * (v_road + v_zone)) / v_zone)
    d = max(2 * ramp + 8, min(d, fit))
    t0 = _start(rng, ctx, d)
    vel = np.full(n, direction * v_road)
    cross = np.full(n, float(c_road))
    for k in range(d):
        if k < ramp:
            v = v_road + (v_zone - v_road) * (k + 1) / ramp
        elif k >= d - ramp:
            v = v_zone + (v_road - v_zone) * (k - (d - ramp) + 1) / ramp
        else:
            v = v_zone
        vel[t0 + k] = direction * v
        w = min(_smoothstep(k / (ramp - 1)), _smoothstep((d - 1 - k) / (ramp - 1)))
        cross[t0 + k] = c_road + (c_zone - c_road) * w
    dist = float(np.sum(np.abs(vel[t0:t0 + d]))) * scale
    half = 0.5 * look.length * scale + 4.0
    if direction > 0:
        a_start = float(rng.uniform(half, max(half, view.length - half - dist)))
    else:
        a_start = float(rng.uniform(min(view.length - half, half + dist), view.length - half))
    along = integrate_along(view, t0, a_start, cross, vel)
    car = vehicle_on_path(view, look, along, cross, direction)
    _mark(car, t0, t0 + d, 1)
    assert car.event is not None                                     # set by _mark
    ctx.occupancy.add_lane(lane, along, car.present & ~car.event, 0.5 * look.length)
    if view.orient == "h":
        ctx.occupancy.walk.append((t0, t0 + d - 1, c_zone - 14.0, c_zone + 8.0))
    else:
        ctx.occupancy.walk.append((t0, t0 + d - 1, c_zone - half_w - 6.0, c_zone + half_w + 6.0))
    return Event("vehicle_in_zone", True, t0, t0 + d, [car])


def fighting(rng: np.random.Generator, ctx: Context) -> Event:
    """Two people walking together stop, face each other and fight, then walk on.

    Fighters jitter in place, tilt and throw fast alternating punches. One track per
    fighter (ids 1 and 2).
    """
    view, cfg, n = ctx.view, ctx.config, ctx.n
    looks = [person_look(rng, cfg, ctx.photo), person_look(rng, cfg, ctx.photo)]
    height = max(lk.height for lk in looks)
    v = _walk_speed(rng, cfg)
    d = _duration(rng, ctx, minimum=20)
    t0 = _start(rng, ctx, d)
    L = view.length
    a_f = float(rng.uniform(0.2, 0.8) * L)
    lo, hi = view.feet
    if view.orient == "h":
        c_f = _lane(rng, view)
        gap = 0.27 * height * float(view.scale_y(c_f))
        places = [(a_f - gap, c_f), (a_f + gap, c_f + 1.5)]
        ctx.occupancy.walk.append((0, n - 1, c_f - 9.0, c_f + 11.0))
    else:
        gap = 0.27 * height * float(view.scale_y(a_f))
        c_f = float(rng.uniform(lo + gap, max(lo + gap, hi - gap)))
        places = [(a_f, c_f - gap), (a_f, c_f + gap)]
        ctx.occupancy.walk.append((0, n - 1, c_f - gap - 9.0, c_f + gap + 9.0))
    vel = np.full(n, view.flow * v)
    vel[t0:t0 + d - 1] = 0.0
    mode = np.full(n, WALK, dtype=np.int8)
    mode[t0:t0 + d] = FIGHT
    agents = []
    for k, (look, (a_key, c_key)) in enumerate(zip(looks, places)):
        cross = np.full(n, c_key)
        along = integrate_along(view, t0, a_key, cross, vel)
        agent = person_on_path(view, look, along, cross, mode, float(rng.random()))
        # Scuffling: a bounded random walk of the body, tilts and punches.
        jitter = np.clip(np.cumsum(rng.normal(0.0, 0.9, (d, 2)), axis=0), -2.5, 2.5)
        agent.x[t0:t0 + d] += jitter[:, 0]
        agent.y[t0:t0 + d] += 0.5 * jitter[:, 1]
        agent.angle[t0:t0 + d] = rng.choice([-6.0, -3.0, 0.0, 3.0, 6.0], d)
        agent.punch[t0:t0 + d] = np.cumsum(rng.integers(1, 3, d)) % PUNCHES
        agent.facing[t0:t0 + d] = 1 if k == 0 else -1
        agents.append(_mark(agent, t0, t0 + d, k + 1))
    return Event("fighting", True, t0, t0 + d, agents)


def fall(rng: np.random.Generator, ctx: Context) -> Event:
    """A walker falls over (8 frames), lies still, gets up again and walks on."""
    view, cfg, n = ctx.view, ctx.config, ctx.n
    look = person_look(rng, cfg, ctx.photo)
    v = _walk_speed(rng, cfg)
    d = _duration(rng, ctx, minimum=30)
    t_fall, t_up = 8, int(min(12, max(6, d // 4)))
    t0 = _start(rng, ctx, d)
    a_f = float(rng.uniform(0.2, 0.8) * view.length)
    if view.orient == "h":
        cross = _lane(rng, view)
    else:
        # Lying across a vertical walkway: stay near its middle so the body stays on it.
        lo, hi = view.feet
        cross = float(rng.uniform(lo + 0.3 * (hi - lo), hi - 0.3 * (hi - lo)))
    vel = np.full(n, view.flow * v)
    vel[t0:t0 + d - 1] = 0.0
    cross_arr = np.full(n, cross)
    along = integrate_along(view, t0, a_f, cross_arr, vel)
    agent = person_on_path(view, look, along, cross_arr, np.full(n, WALK, dtype=np.int8), float(rng.random()))
    side = int(agent.facing[t0]) if view.orient == "h" else (1 if rng.random() < 0.5 else -1)
    for k in range(d):
        if k < t_fall:
            theta = 86.0 * ((k + 1) / t_fall) ** 2             # accelerating topple
        elif k < d - t_up:
            theta = 86.0
        else:
            theta = 86.0 * (1.0 - _smoothstep((k - (d - t_up) + 1) / t_up))
        agent.angle[t0 + k] = side * theta
    ctx.occupancy.walk.append((0, n - 1, cross - 8.0, cross + 8.0))
    if view.orient == "v":
        # Lying across the walkway: keep the lanes under the body clear while it lies there.
        reach = look.height * view.perspective[1] + 4.0
        lo, hi = (cross, cross + reach) if side > 0 else (cross - reach, cross)
        ctx.occupancy.walk.append((t0, t0 + d - 1, lo, hi))
    return Event("fall", True, t0, t0 + d, [_mark(agent, t0, t0 + d, 1)])


def left_object(rng: np.random.Generator, ctx: Context) -> Event:
    """A walker drops a bag and walks on; the bag lies there until a passer-by takes it.

    Or it lies there until the video ends. The bag is the anomaly (track 1) from the
    moment it is let go.
    """
    view, cfg, n = ctx.view, ctx.config, ctx.n
    look = person_look(rng, cfg, ctx.photo)
    bag_lk = bag_look(rng, cfg, ctx.photo, look.height)
    v = _walk_speed(rng, cfg)
    cross = _lane(rng, view, lo_pad=2.0, hi_pad=4.0)
    d = _duration(rng, ctx)
    to_end = bool(rng.random() < 0.5)
    if to_end:
        t0 = n - d
    else:
        t0 = _start(rng, ctx, d)
        if t0 + d + 3 > n - 1:
            to_end, t0 = True, n - d
    t1 = n if to_end else t0 + d
    a_drop = float(rng.uniform(0.15, 0.85) * view.length)
    carrier = walker(view, look, n, t0, a_drop, cross, v, view.flow, float(rng.random()))
    bag = Agent.empty("bag", bag_lk, n)
    bag.present[:] = True
    attach_bag(bag, carrier, range(0, t0))
    assert bag.depth is not None                                     # set by attach_bag
    hx, _ = hand_point(carrier, t0)
    held = (hx, carrier.y[t0] - 0.46 * look.height * float(carrier.scale[t0])
            + 0.92 * bag_lk.height * float(carrier.scale[t0]))
    ground = (hx, carrier.y[t0] + 2.0)
    g_scale = float(view.scale_y(ground[1]))
    for k, t in enumerate(range(t0, t1)):
        u = min(1.0, (k + 1) / 4.0)                                  # 4 frames to reach the ground
        bag.x[t] = held[0] + (ground[0] - held[0]) * u
        bag.y[t] = held[1] + (ground[1] - held[1]) * u * u
        bag.scale[t] = float(carrier.scale[t0]) + (g_scale - float(carrier.scale[t0])) * u
        bag.depth[t] = ground[1] + 0.25
    bag.present[:t0] = carrier.present[:t0]
    agents = [carrier]
    if not to_end:
        picker_look = person_look(rng, cfg, ctx.photo)
        v_p = _walk_speed(rng, cfg)
        if view.orient == "h":
            h_p = picker_look.height * float(view.scale_y(cross))
            a_pick = ground[0] - view.flow * 0.05 * h_p
        else:
            a_pick = ground[1] - 2.0
        picker = walker(view, picker_look, n, t1, a_pick, cross, v_p, view.flow, float(rng.random()))
        for k, t in enumerate(range(t1, min(t1 + 3, n))):          # 3 frames to lift it
            hx_p, hy_p = hand_point(picker, t)
            target = (hx_p, hy_p + 0.92 * bag_lk.height * float(picker.scale[t]))
            u = (k + 1) / 3.0
            bag.x[t] = ground[0] + (target[0] - ground[0]) * u
            bag.y[t] = ground[1] + (target[1] - ground[1]) * u
            bag.scale[t] = float(picker.scale[t])
            bag.depth[t] = picker.y[t] + 0.5
        attach_bag(bag, picker, range(min(t1 + 3, n), n))
        bag.present[t1:] = picker.present[t1:]
        agents.append(picker)
    if view.orient == "h":
        ctx.occupancy.walk.append((t0, t1, ground[1] - 8.0, ground[1] + 8.0))
    else:
        reach = bag_lk.width * view.perspective[1] + 6.0
        ctx.occupancy.walk.append((t0, t1, ground[0] - reach - 8.0, ground[0] + reach))
    ctx.occupancy.walk.append((0, n - 1, cross - 3.0, cross + 3.0))
    agents.append(_mark(bag, t0, t1, 1))
    return Event("left_object", True, t0, t1, agents)


def pedestrian_on_road(rng: np.random.Generator, ctx: Context) -> Event:
    """A walker steps off the walkway onto the road, walks along it, and comes back.

    Labelled: the frames in which the walker's feet are off the walkway.
    """
    view, cfg, n = ctx.view, ctx.config, ctx.n
    look = person_look(rng, cfg, ctx.photo)
    v = _walk_speed(rng, cfg)
    lane = view.near_lane()
    side = view.road_side()
    lo, hi = view.feet
    c_start = hi - 1.0 if side > 0 else lo + 1.0
    road_edge = view.road[0] if side > 0 else view.road[1]
    # Well onto the road (past the kerb and edge line), at most to the near lane's centre.
    depth = min(float(rng.uniform(12.0, 20.0)), abs(view.lanes[lane][0] - road_edge) + 4.0)
    c_target = road_edge + side * depth
    scale = float(view.scale_y(c_start)) if view.orient == "h" else float(np.mean(view.perspective))
    v_cross = float(rng.uniform(0.8, 1.1)) * cfg.object_scale * cfg.speed_scale
    delta = abs(c_target - c_start)
    d_max = _max_duration(ctx)
    t_tr = int(math.ceil(delta / (v_cross * scale)))
    if 2 * t_tr + 8 > d_max:
        # Short videos: step off more briskly rather than overrun the event budget.
        t_tr = max(4, (d_max - 8) // 2)
    d = _duration(rng, ctx, minimum=2 * t_tr + 8)
    t0 = _start(rng, ctx, d)
    cross = np.full(n, c_start)
    for k in range(d):
        if k < t_tr:
            w = _smoothstep((k + 1) / t_tr)
        elif k >= d - t_tr:
            w = 1.0 - _smoothstep((k - (d - t_tr) + 1) / t_tr)
        else:
            w = 1.0
        cross[t0 + k] = c_start + (c_target - c_start) * w
    a_key = float(rng.uniform(0.15, 0.85) * view.length)
    vel = np.full(n, view.flow * v)
    a_mid = integrate_along(view, t0 + d // 2, a_key, cross, vel)
    agent = person_on_path(view, look, a_mid, cross, np.full(n, WALK, dtype=np.int8), float(rng.random()))
    off = (cross < view.walk[0]) | (cross > view.walk[1])
    window = np.zeros(n, dtype=bool)
    window[t0:t0 + d] = True
    _mark(agent, t0, t0 + d, 1)
    agent.event = off & window
    ctx.occupancy.add_lane(lane, a_mid, agent.event & agent.present, 0.3 * look.height)
    ctx.occupancy.walk.append((0, n - 1, c_start - 8.0, c_start + 8.0))
    return Event("pedestrian_on_road", True, t0, t0 + d, [agent])


BUILDERS = {
    "running": running,
    "wrong_way": wrong_way,
    "vehicle_in_zone": vehicle_in_zone,
    "fighting": fighting,
    "fall": fall,
    "left_object": left_object,
    "pedestrian_on_road": pedestrian_on_road,
}


def normal_counterpart(kind: str, rng: np.random.Generator, ctx: Context) -> Event:
    """The normal version of an event type, placed at a random time like an anomaly."""
    view, cfg, n = ctx.view, ctx.config, ctx.n
    d = _duration(rng, ctx)
    t0 = _start(rng, ctx, d)
    t_mid = t0 + d // 2
    a_key = float(rng.uniform(0.2, 0.8) * view.length)
    agents: list[Agent] = []
    if kind == "vehicle_in_zone":
        lane = view.near_lane()
        car_lk = car_look(rng, cfg, ctx.photo)
        car = car_on_lane(view, car_lk, n, t_mid, a_key, lane, ctx.lane_speeds[lane])
        along = car.x if view.orient == "h" else car.y
        if ctx.occupancy.lane_free(lane, along, car.present, 0.5 * car_lk.length):
            ctx.occupancy.add_lane(lane, along, car.present, 0.5 * car_lk.length)
            agents.append(car)
    elif kind == "pedestrian_on_road":
        # A walker on the walkway's road-side edge: close to the road, but on the walkway.
        lo, hi = view.feet
        cross = hi - 1.0 if view.road_side() > 0 else lo + 1.0
        look = person_look(rng, cfg, ctx.photo)
        agent = walker(view, look, n, t_mid, a_key, cross, _walk_speed(rng, cfg), view.flow, float(rng.random()))
        ctx.occupancy.walk.append((0, n - 1, cross - 8.0, cross + 8.0))
        agents.append(agent)
    else:
        group = {"fighting": "pair", "left_object": "carrier"}.get(kind, "single")
        agents += add_walker_group(rng, view, cfg, ctx.photo, n, t_mid, a_key, ctx.occupancy, kind=group)
        for agent in agents:
            if agent.kind == "person":
                c = float(agent.y[t_mid] if view.orient == "h" else agent.x[t_mid])
                ctx.occupancy.walk.append((0, n - 1, c - 8.0, c + 8.0))
    for agent in agents:
        agent.role = "counterpart" if agent.kind != "bag" else "bag"
    return Event(kind, False, t0, t0 + d, agents)


def build_event(kind: str, anomalous: bool, rng: np.random.Generator, ctx: Context) -> Event:
    """An anomaly of type ``kind``, or its normal counterpart when not ``anomalous``."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown anomaly type '{kind}'")
    return BUILDERS[kind](rng, ctx) if anomalous else normal_counterpart(kind, rng, ctx)

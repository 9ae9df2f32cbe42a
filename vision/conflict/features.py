"""Interaction features of a short window of observations: the one feature code for training and runtime.

Everything is in body heights and seconds, so the numbers mean the same near
and far from the camera and at any analysis rate. The window is summarised by
the pairs of people who stand close together (distance, overlap, how they
approach, how fast their limbs move relative to their hips, arms raised, a
torso tipping over, the flow inside their boxes and how disordered it is)
against the motion of the whole scene (camera shake and moving crowds, which
set off motion-only detectors).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..detections import assign, centres, iou_matrix
from .observe import CLOSE_H, MOTION_STATS, Observation, close_pairs

MOTION_PEAKS = ("speed_p90", "speed_p99", "top5_share", "dspeed_mean", "dspeed_p90", "dspeed_burst")
LIMBS = [7, 8, 9, 10, 13, 14, 15, 16]  # elbows, wrists, knees, ankles
WRISTS, SHOULDERS, HIPS = [9, 10], [5, 6], [11, 12]
KP_MIN_CONF = 0.3

FEATURE_NAMES: tuple[str, ...] = (
    "people_mean", "pairs_mean", "pair_frames",
    "dist_min", "dist_mean", "iou_max", "iou_mean", "approach_min", "approach_abs",
    "flow_pair_max", "flow_pair_mean", "chaos_pair_mean", "chaos_pair_max", "flow_any_max",
    "scene_flow", "flow_pair_over_scene",
    "body_speed_max", "body_speed_mean", "shape_rate_max", "shape_rate_mean",
    "limb_speed_max", "limb_speed_mean", "reach_min", "reach_mean", "arms_up", "tilt_max", "tilt_change",
    "pose_coverage", "moving_area_mean", "moving_area_max", "moving_speed_mean", "moving_speed_max",
    "moving_speed_std", "moving_speed_change", "moving_area_std", "moving_area_change", "scene_flow_change",
    "flow_top_std", "flow_top_change", "chaos_all_mean",
    *(f"{m}_mean" for m in MOTION_STATS), *(f"{m}_max" for m in MOTION_PEAKS),
)


def link(prev: np.ndarray, cur: np.ndarray, gate_h: float = 1.0) -> np.ndarray:
    """For each current box, the index of the same person in ``prev`` or -1 (optimal assignment by centre distance)."""
    out = np.full(len(cur), -1, np.int64)
    if len(prev) == 0 or len(cur) == 0:
        return out
    h = np.maximum((cur[:, 3] - cur[:, 1])[:, None] + (prev[:, 3] - prev[:, 1])[None, :], 2.0) / 2
    d = np.linalg.norm(centres(cur)[:, None] - centres(prev)[None], axis=2) / h
    cost = np.where(d <= gate_h, d, 1e6)
    for r, c in assign(cost, cost < 1e6):
        out[r] = c
    return out


def _hip_centre(kp: np.ndarray, box: np.ndarray) -> np.ndarray:
    hips = kp[HIPS]
    ok = hips[:, 2] >= KP_MIN_CONF
    if ok.any():
        return hips[ok, :2].mean(axis=0)
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _reach(kp: np.ndarray, other: np.ndarray, h: float) -> float:
    """How far the nearest wrist of one person is from the other person's box, in heights (0 inside)."""
    best = np.inf
    for k in WRISTS:
        if kp[k, 2] < KP_MIN_CONF:
            continue
        x, y = kp[k, :2]
        dx = max(other[0] - x, 0.0, x - other[2])
        dy = max(other[1] - y, 0.0, y - other[3])
        best = min(best, float(np.hypot(dx, dy)) / h)
    return best


def _arms_up(kp: np.ndarray) -> float | None:
    """Fraction of visible wrists above their shoulder: striking, shoving, shielding."""
    votes = [float(kp[w, 1] < kp[s, 1]) for w, s in zip(WRISTS, SHOULDERS)
             if kp[w, 2] >= KP_MIN_CONF and kp[s, 2] >= KP_MIN_CONF]
    return float(np.mean(votes)) if votes else None


def _tilt(kp: np.ndarray) -> float | None:
    """Torso angle from upright, 0..1 (1 = lying): falls and grappling."""
    s, hp = kp[SHOULDERS], kp[HIPS]
    if (s[:, 2] < KP_MIN_CONF).any() or (hp[:, 2] < KP_MIN_CONF).any():
        return None
    v = s[:, :2].mean(axis=0) - hp[:, :2].mean(axis=0)
    return float(np.arctan2(abs(v[0]), max(-v[1], 1e-6)) / (np.pi / 2)) if np.linalg.norm(v) > 1 else None


def _agg(values: list[float], how, empty: float) -> float:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(how(v)) if v else empty


def _series_stats(ts: np.ndarray, values: list[float]) -> tuple[float, float]:
    """Spread over the window, and mean change per second: fights surge and stop, walks and crowds flow evenly."""
    v = np.nan_to_num(np.asarray(values, np.float64))
    if len(v) < 2:
        return 0.0, 0.0
    dt = np.maximum(np.diff(ts), 1e-3)
    return float(v.std()), float(np.mean(np.abs(np.diff(v)) / dt))


def _variability(window: Sequence[Observation]) -> list[float]:
    ts = np.array([o.ts for o in window])
    top = [float(np.nanmax(o.flow_mag)) if np.isfinite(o.flow_mag).any() else 0.0 for o in window]
    chaos = [float(np.nanmean(o.flow_chaos)) for o in window if np.isfinite(o.flow_chaos).any()]
    ms_std, ms_chg = _series_stats(ts, [o.moving_speed for o in window])
    ma_std, ma_chg = _series_stats(ts, [o.moving_area for o in window])
    _, sc_chg = _series_stats(ts, [o.scene_flow for o in window])
    top_std, top_chg = _series_stats(ts, top)
    return [ms_std, ms_chg, ma_std, ma_chg, sc_chg, top_std, top_chg, float(np.mean(chaos)) if chaos else 0.0]


def window_features(window: Sequence[Observation]) -> np.ndarray:
    """One vector (``FEATURE_NAMES``) summarising a window of consecutive observations of one zone."""
    people, npairs, pair_frames = [], [], 0
    dist, iou, approach, fpair, chaos, fany, scene = [], [], [], [], [], [], []
    body, shape, limb, reach, arms, tilt, tilt_all, covered = [], [], [], [], [], [], [], []
    prev: Observation | None = None
    prev_pairs: dict[tuple[int, int], float] = {}
    for ob in window:
        n = len(ob.xyxy)
        h = np.maximum(ob.xyxy[:, 3] - ob.xyxy[:, 1], 1.0)
        pairs = close_pairs(ob.xyxy)
        people.append(n)
        npairs.append(len(pairs))
        pair_frames += bool(pairs)
        fany += [float(x) for x in ob.flow_mag if np.isfinite(x)]
        if np.isfinite(ob.scene_flow):
            scene.append(ob.scene_flow * ob.frame_h / max(float(np.median(h)) if n else ob.frame_h, 1.0))
        links = link(prev.xyxy, ob.xyxy) if prev is not None else np.full(n, -1)
        dt = ob.ts - prev.ts if prev is not None else 0.0
        in_pair = sorted({k for p in pairs for k in p})
        frame_tilt: list[float | None] = []
        # per person motion, only for those in a close pair (the rest cannot be fighting each other)
        for k in in_pair:
            j = links[k]
            if j >= 0 and dt > 0:
                pb, cb = prev.xyxy[j], ob.xyxy[k]
                ph, ch = max(pb[3] - pb[1], 1.0), max(cb[3] - cb[1], 1.0)
                body.append(float(np.linalg.norm(centres(cb[None])[0] - centres(pb[None])[0])) / ch / dt)
                shape.append(abs(ch / max(cb[2] - cb[0], 1.0) - ph / max(pb[2] - pb[0], 1.0)) / dt
                             + abs(ch - ph) / ch / dt)
                if ob.has_pose[k] and prev.has_pose[j]:
                    a, b = prev.keypoints[j], ob.keypoints[k]
                    rel_a = a[LIMBS, :2] - _hip_centre(a, pb)
                    rel_b = b[LIMBS, :2] - _hip_centre(b, cb)
                    ok = (a[LIMBS, 2] >= KP_MIN_CONF) & (b[LIMBS, 2] >= KP_MIN_CONF)
                    if ok.any():
                        limb.append(float(np.linalg.norm(rel_b[ok] - rel_a[ok], axis=1).max()) / ch / dt)
            if ob.has_pose[k]:
                covered.append(1.0)
                arms.append(_arms_up(ob.keypoints[k]))
                frame_tilt.append(_tilt(ob.keypoints[k]))
            else:
                covered.append(0.0)
        cur_pairs = {}
        for i, j in pairs:
            mh = (h[i] + h[j]) / 2
            d = float(np.linalg.norm(centres(ob.xyxy[[i]])[0] - centres(ob.xyxy[[j]])[0]) / mh)
            dist.append(d)
            iou.append(float(iou_matrix(ob.xyxy[[i]], ob.xyxy[[j]])[0, 0]))
            fpair.append(_agg([ob.flow_mag[i], ob.flow_mag[j]], max, np.nan))
            chaos.append(_agg([ob.flow_chaos[i], ob.flow_chaos[j]], np.mean, np.nan))
            if ob.has_pose[i]:
                reach.append(_reach(ob.keypoints[i], ob.xyxy[j], h[i]))
            if ob.has_pose[j]:
                reach.append(_reach(ob.keypoints[j], ob.xyxy[i], h[j]))
            key = (int(links[i]), int(links[j]))
            if dt > 0 and min(key) >= 0 and tuple(sorted(key)) in prev_pairs:
                approach.append((d - prev_pairs[tuple(sorted(key))]) / dt)
            cur_pairs[(i, j)] = d
        prev_pairs = cur_pairs
        tilt += frame_tilt
        tilt_all.append(_agg(frame_tilt, max, np.nan))
        prev = ob
    fpm = _agg(fpair, np.mean, 0.0)
    sc = _agg(scene, np.mean, 0.0)
    ta = [t for t in tilt_all if np.isfinite(t)]
    out = [
        _agg(people, np.mean, 0.0), _agg(npairs, np.mean, 0.0), pair_frames / max(len(window), 1),
        _agg(dist, min, CLOSE_H), _agg(dist, np.mean, CLOSE_H), _agg(iou, max, 0.0), _agg(iou, np.mean, 0.0),
        _agg(approach, min, 0.0), _agg([abs(a) for a in approach], np.mean, 0.0),
        _agg(fpair, max, 0.0), fpm, _agg(chaos, np.mean, 0.0), _agg(chaos, max, 0.0), _agg(fany, max, 0.0),
        sc, fpm / (sc + 0.05),
        _agg(body, max, 0.0), _agg(body, np.mean, 0.0), _agg(shape, max, 0.0), _agg(shape, np.mean, 0.0),
        _agg(limb, max, 0.0), _agg(limb, np.mean, 0.0), _agg(reach, min, 1.0), _agg(reach, np.mean, 1.0),
        _agg(arms, np.mean, 0.0), _agg(tilt, max, 0.0), float(np.ptp(ta)) if len(ta) > 1 else 0.0,
        _agg(covered, np.mean, 0.0),
        _agg([o.moving_area for o in window], np.mean, 0.0), _agg([o.moving_area for o in window], max, 0.0),
        _agg([o.moving_speed for o in window], np.mean, 0.0), _agg([o.moving_speed for o in window], max, 0.0),
        *_variability(window),
        *_scene_motion(window),
    ]
    return np.asarray(out, np.float64)


def _scene_motion(window: Sequence[Observation]) -> list[float]:
    """The whole zone's motion statistics (``observe.flow_stats``) over the window: mean of each, peak of some."""
    m = np.array([o.motion for o in window], np.float64).reshape(len(window), len(MOTION_STATS))
    finite = np.isfinite(m)
    seen = finite.any(axis=0)
    mean = np.where(finite, m, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)
    peaks = [MOTION_STATS.index(p) for p in MOTION_PEAKS]
    top = [float(np.nanmax(m[:, k])) if seen[k] else 0.0 for k in peaks]
    return [*mean.tolist(), *top]

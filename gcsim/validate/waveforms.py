"""Recorded converter pulses made into the PWL sources that drive the V array in a split run:
cleaned to trapezoids (`clean_pulse`) and moved onto a V-only run's time axis (`shift_pwl`)."""

from __future__ import annotations

import numpy as np


def _crossing_s(t: np.ndarray, v: np.ndarray, i: int, level: float) -> float:
    """Where the segment from sample i to i + 1 meets `level` (i clamped to the recording)."""
    i = min(max(i, 0), t.size - 2)
    span = v[i + 1] - v[i]
    fraction = np.clip((level - v[i]) / span, 0.0, 1.0) if span else 0.0
    return float(t[i] + fraction * (t[i + 1] - t[i]))


def _first(mask: np.ndarray, start: int) -> int:
    """First index from `start` on where `mask` holds; the last index if none."""
    hits = np.flatnonzero(mask[start:])
    return start + int(hits[0]) if hits.size else mask.size - 1


def _last_before(mask: np.ndarray, stop: int) -> int:
    """Last index before `stop` where `mask` holds; 0 if none."""
    hits = np.flatnonzero(mask[:stop])
    return int(hits[-1]) if hits.size else 0


def clean_pulse(time_s: np.ndarray, values: np.ndarray, high: float, width_s: float,
                min_dt: float = 1e-13) -> list[tuple[float, float]]:
    """A recorded converter pulse as the trapezoid an ideal word-line driver would make of it,
    as PWL points: it starts where the recording first crosses half of `high`, lasts the
    recording's area-equivalent `width_s` at `high`, and keeps the recording's own 10-90 % edge
    times (as a straight edge). The recording's ringing (tens of mV) is dropped: every bend of
    it would be a PWL breakpoint that the V-array run must step through.

    ngspice makes every PWL point a breakpoint, and points closer than `min_dt` would force
    vanishing timesteps, so the points sit on one grid of `min_dt` for every row."""
    t = np.asarray(time_s, dtype=float)
    v = np.asarray(values, dtype=float)
    end = float(t[-1])
    if width_s <= 0 or v.max() < high / 2:
        return [(0.0, 0.0), (end, 0.0)]

    lo, mid, hi = 0.1 * high, 0.5 * high, 0.9 * high
    on = _first(v >= mid, 0)                # first sample at half height or above
    off = _first(v < mid, on)               # first sample back below it
    t_on = _crossing_s(t, v, on - 1, mid)
    # A straight edge spends 80 % of its length between 10 and 90 %.
    rise = max(_crossing_s(t, v, _first(v >= hi, on) - 1, hi)
               - _crossing_s(t, v, _last_before(v < lo, on), lo), min_dt) / 0.8
    fall = max(_crossing_s(t, v, _first(v <= lo, off) - 1, lo)
               - _crossing_s(t, v, _last_before(v > hi, off), hi), min_dt) / 0.8
    # Half-height crossings t_on and t_on + width make the area high * width.
    points = [(0.0, 0.0), (t_on - rise / 2, 0.0), (t_on + rise / 2, high),
              (t_on + width_s - fall / 2, high), (t_on + width_s + fall / 2, 0.0), (end, 0.0)]
    out: list[tuple[float, float]] = []
    for time, level in points:
        tick = round(time / min_dt) * min_dt
        if not out or tick > out[-1][0]:
            out.append((tick, level))
    return out


def shift_pwl(points: list[tuple[float, float]], shift: float) -> list[tuple[float, float]]:
    """The waveform seen from `shift` on, on a time axis starting there."""
    if shift <= 0:
        return points
    t = np.array([p[0] for p in points])
    v = np.array([p[1] for p in points])
    later = t > shift + 1e-13
    start = float(np.interp(shift, t, v))
    return [(0.0, start)] + list(zip((t[later] - shift).tolist(), v[later].tolist()))

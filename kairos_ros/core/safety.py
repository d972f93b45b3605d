"""Joint limits applied to every commanded point, and the checks that decide when to hold.

Plain Python: the act node calls these, tests call them directly."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclass
class JointLimits:
    """Per joint, in the robot's joint order: position bounds and the largest speed (units/s)."""
    names: List[str]
    lower: List[float]
    upper: List[float]
    max_velocity: List[float]

    def __post_init__(self):
        n = len(self.names)
        if not (len(self.lower) == len(self.upper) == len(self.max_velocity) == n):
            raise ValueError(f"joint limits: {n} names but {len(self.lower)} lower, {len(self.upper)} upper, "
                             f"{len(self.max_velocity)} max_velocity values")
        for name, lo, hi, v in zip(self.names, self.lower, self.upper, self.max_velocity):
            if not lo <= hi or v <= 0:
                raise ValueError(f"joint {name!r}: need lower <= upper and max_velocity > 0, got {lo}, {hi}, {v}")

    def clamp_chunk(self, positions_hj: np.ndarray, current_j: np.ndarray, dt: float) -> np.ndarray:
        """Clamp a chunk [H, J] so every point is within bounds and no step moves a joint faster than
        max_velocity (starting from the current position). Returns a new array."""
        pos = np.asarray(positions_hj, dtype=np.float64)
        cur = np.clip(np.asarray(current_j, dtype=np.float64), self.lower, self.upper)
        if pos.ndim != 2 or pos.shape[1] != len(self.names):
            raise ValueError(f"chunk must be [H, {len(self.names)}], got {pos.shape}")
        if dt <= 0:
            raise ValueError(f"step duration must be > 0, got {dt}")
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        dmax = np.asarray(self.max_velocity) * dt
        out = np.empty_like(pos)
        prev = cur
        for h in range(pos.shape[0]):
            p = np.where(np.isfinite(pos[h]), pos[h], prev)        # a NaN never reaches the robot
            p = np.clip(p, prev - dmax, prev + dmax)
            p = np.clip(p, lo, hi)
            out[h] = prev = p
        return out


def check_joint_state(expected: Sequence[str], names: Sequence[str], positions: Sequence[float],
                      max_age_s: float, age_s: float) -> Optional[str]:
    """None if the joint state is usable, else the reason to hold (one line)."""
    if age_s > max_age_s:
        return f"joint state is {age_s:.3f} s old (max {max_age_s} s)"
    if len(names) != len(positions):
        return f"joint state has {len(names)} names but {len(positions)} positions"
    missing = [n for n in expected if n not in names]
    if missing:
        return f"joint state lacks joints {missing} (has {list(names)})"
    bad = [n for n, p in zip(names, positions) if n in expected and not math.isfinite(p)]
    if bad:
        return f"joint state has non-finite positions for {bad}"
    return None


def reorder(names: Sequence[str], values: Sequence[float], order: Sequence[str]) -> np.ndarray:
    """Values given in `names` order -> in `order` (the robot's or the model's)."""
    index: Dict[str, int] = {n: i for i, n in enumerate(names)}
    missing = [n for n in order if n not in index]
    if missing:
        raise KeyError(f"joints {missing} are not among {list(names)}")
    return np.asarray([values[index[n]] for n in order], dtype=np.float64)

"""What a joint_trajectory_controller does with a JointTrajectory, without ROS: keep the newest
trajectory (absolute times = header stamp + time_from_start; a zero stamp means "on receipt") and
answer "where should the joints be at time t" by linear interpolation, holding the last point after
the end and the current position before any trajectory arrives."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


class TrajectoryFollower:
    def __init__(self, joint_names: Sequence[str]):
        self.joint_names = list(joint_names)
        self.times: Optional[np.ndarray] = None      # [K] absolute seconds
        self.points: Optional[np.ndarray] = None     # [K, J] in joint_names order
        self.start: Optional[np.ndarray] = None      # [J] position when the trajectory was accepted
        self.start_time = 0.0

    def clear(self) -> None:
        self.times = self.points = self.start = None

    def set(self, names: Sequence[str], times_from_start: Sequence[float], positions: np.ndarray,
            stamp_s: float, now_s: float, current: np.ndarray) -> None:
        """positions [K, len(names)]; raises ValueError on unknown/missing joints or non-finite values."""
        names = list(names)
        if sorted(names) != sorted(self.joint_names):
            raise ValueError(f"trajectory joints {names} do not match the robot's {self.joint_names}")
        pos = np.asarray(positions, np.float64).reshape(len(times_from_start), len(names))
        if not np.isfinite(pos).all() or not np.isfinite(times_from_start).all():
            raise ValueError("trajectory holds non-finite values")
        if len(pos) == 0:
            raise ValueError("trajectory has no points")
        order = [names.index(n) for n in self.joint_names]
        t0 = stamp_s if stamp_s > 0 else now_s
        self.times = t0 + np.asarray(times_from_start, np.float64)
        self.points = pos[:, order]
        self.start, self.start_time = np.asarray(current, np.float64).copy(), now_s

    def target(self, t: float, current: np.ndarray) -> np.ndarray:
        """Joint positions [J] the trajectory asks for at time t."""
        if self.points is None:
            return np.asarray(current, np.float64).copy()
        times = np.concatenate([[min(self.start_time, self.times[0])], self.times])
        pts = np.concatenate([self.start[None], self.points])
        if t >= times[-1]:
            return pts[-1].copy()
        if t <= times[0]:
            return pts[0].copy()
        k = int(np.searchsorted(times, t, side="right"))
        a = (t - times[k - 1]) / max(1e-9, times[k] - times[k - 1])
        return (1 - a) * pts[k - 1] + a * pts[k]

"""The sim robot's behaviour without ROS: a Meta-World arm that follows the newest joint trajectory,
one control step per tick, and runs episodes over held-out task variations.

    core = SimEpisodes(SimEpisodesConfig(task="button-press-topdown-v3", episodes=5))
    obs = core.start()                       # first episode's first observation
    obs, event = core.tick(now_s)            # follow the trajectory for one control step
    event: None, or {"event": "end", "success": ..., "steps": ..., "variation": ...}; the next
    episode starts on the following tick (event "start").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from kairos_ros.core.trajectory_follower import TrajectoryFollower


@dataclass
class SimEpisodesConfig:
    """task: Meta-World task. first_variation: scene of the first episode (held-out ones start at
    10000). episodes: how many (0: forever). max_steps: control steps before an episode counts as
    failed. image_size / camera: the rendered frame. substeps: physics steps per control step
    (8 x 12.5 ms = 10 Hz)."""
    task: str = "button-press-topdown-v3"
    first_variation: int = 10_000
    episodes: int = 0
    max_steps: int = 40
    image_size: int = 64
    camera: str = "corner2"
    substeps: int = 8


class SimEpisodes:
    def __init__(self, cfg: SimEpisodesConfig):
        from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig
        self.cfg = cfg
        self.sim = MetaWorldSim(SimConfig(task=cfg.task, camera=cfg.camera, image_size=cfg.image_size,
                                          substeps=cfg.substeps, max_steps=cfg.max_steps))
        self.joint_names = list(JOINT_NAMES)
        self.follower = TrajectoryFollower(JOINT_NAMES)
        self.dt = self.sim.cfg.control_dt
        self.episode = -1
        self.results: List[dict] = []
        self.obs = None
        self.frames: List[np.ndarray] = []

    @property
    def instruction(self) -> str:
        return self.sim.instruction

    @property
    def finished(self) -> bool:
        return self.cfg.episodes > 0 and len(self.results) >= self.cfg.episodes

    def start(self):
        """Reset into the next episode's scene; returns its first observation."""
        self.episode += 1
        self.follower.clear()
        self.obs = self.sim.reset(self.cfg.first_variation + self.episode)
        self.frames = [self.obs.image]
        self.distances = [self.obs.distance]
        return self.obs

    def command(self, names, times_from_start, positions, stamp_s: float, now_s: float) -> None:
        self.follower.set(names, times_from_start, positions, stamp_s, now_s, self.obs.joints)

    def tick(self, now_s: float) -> Tuple[object, Optional[dict]]:
        n = self.cfg.substeps
        cur = self.obs.joints
        waypoints = np.stack([self.follower.target(now_s + self.dt * (i + 1) / n, cur) for i in range(n)])
        self.obs = self.sim.step(waypoints)
        self.frames.append(self.obs.image)
        self.distances.append(self.obs.distance)
        if self.obs.success or self.obs.step >= self.cfg.max_steps:
            res = {"event": "end", "episode": self.episode, "variation": self.cfg.first_variation + self.episode,
                   "success": bool(self.obs.success), "steps": int(self.obs.step), "task": self.cfg.task,
                   "start_distance": self.distances[0], "min_distance": float(np.min(self.distances)),
                   "final_distance": self.distances[-1]}
            self.results.append(res)
            return self.obs, res
        return self.obs, None

    def close(self) -> None:
        self.sim.close()

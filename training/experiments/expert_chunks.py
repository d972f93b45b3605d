"""Is the control loop the limit? The scripted expert's own recorded joint targets, served as action
chunks through the same ActCore path `kairos evaluate` runs a model through (chunk strategy, joint and
velocity limits, holds), against replaying those targets directly in the simulator. If the two solve
the same scenes, whatever a model loses is the model's.

    python -m training.experiments.expert_chunks --task push-v3 --episodes 10
"""
from __future__ import annotations

import argparse
import json
from typing import Optional

import numpy as np
import torch


class ExpertChunks:
    """The engine interface over one recorded episode: at memory step k the chunk is the expert's
    targets k .. k+H-1 (the last one repeated past the end). Open loop in time, like the replay."""
    backend = "expert"

    def __init__(self, joint_names, horizon: int = 8, image_size: int = 64):
        self.joint_names, self.horizon = list(joint_names), horizon
        self.image_size = (image_size, image_size)
        self.actions: Optional[np.ndarray] = None          # [T, J]
        self.k = 0

    def reset(self) -> None:
        self.k = 0

    def step(self, obs, decode_future: bool = False, sample: bool = True, update_memory: bool = True, **_):
        from kairos_model.engine import ActionPrediction
        k = self.k
        self.k += int(update_memory)
        if not sample:
            return None
        a = self.actions[min(k, len(self.actions) - 1):][: self.horizon]
        a = np.concatenate([a, np.repeat(a[-1:], self.horizon - len(a), 0)])
        return ActionPrediction(a.astype(np.float64), torch.zeros(0), self.k, {})


def run(task: str, episodes: int, first_variation: int = 10_000, max_steps: Optional[int] = None,
        strategy: str = "execute_then_replan", execution_horizon: int = 4, control_hz: float = 10.0) -> dict:
    """-> {"expert", "direct_replay", "through_act_core"}: successes out of `episodes`, and per scene.
    max_steps None: a 4 s episode at control_hz."""
    from kairos_ros.core.act_core import ActCore
    from training.evaluate import act_config
    from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig, rollout_expert
    engine = ExpertChunks(JOINT_NAMES)
    rows = []
    rate = SimConfig.at_rate(control_hz)
    max_steps = max_steps or rate.max_steps
    with MetaWorldSim(SimConfig(task=task, max_steps=max_steps, substeps=rate.substeps)) as sim:
        cfg = act_config(sim, JOINT_NAMES, strategy, execution_horizon)     # what evaluate() gives the core
        for v in range(first_variation, first_variation + episodes):
            _, _, actions, expert_ok = rollout_expert(sim, v)
            sim.reset(v)
            for a in actions:
                sim.step(a, render=False)
            replay_ok = bool(sim.success)
            engine.actions = np.asarray(actions)
            core = ActCore(cfg, engine)
            obs = sim.reset(v)
            core.reset()
            for k in range(max_steps):
                now = k * sim.cfg.control_dt
                core.set_image(obs.image, now)
                core.set_joints(JOINT_NAMES, obs.joints, now)
                r = core.tick(now)
                obs = sim.step(r.positions[0] if r.positions is not None else obs.joints)
                if obs.success:
                    break
            rows.append({"variation": v, "expert": bool(expert_ok), "direct_replay": replay_ok,
                         "through_act_core": bool(obs.success), "expert_steps": len(actions)})
    return {"task": task, "strategy": strategy, "episodes": rows,
            **{key: sum(r[key] for r in rows) for key in ("expert", "direct_replay", "through_act_core")}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="push-v3")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--first-variation", type=int, default=10_000)
    ap.add_argument("--strategy", default="execute_then_replan")
    ap.add_argument("--control-hz", type=float, default=10.0)
    ap.add_argument("--out", help="write the result as JSON here")
    a = ap.parse_args(argv)
    res = run(a.task, a.episodes, a.first_variation, strategy=a.strategy, control_hz=a.control_hz)
    n = a.episodes
    print(f"{a.task} at {a.control_hz:g} Hz: expert {res['expert']}/{n}, its joint targets replayed directly {res['direct_replay']}/{n}, "
          f"served as chunks through ActCore ({a.strategy}) {res['through_act_core']}/{n}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()

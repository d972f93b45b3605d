"""How much does the joint-target interface itself cost? The scripted expert, given the simulator's
true state, drives the arm through the policy's own interface instead of Meta-World's end-effector
controller, in several forms, on the same held-out scenes:

- native: the expert commands the mocap every physics step (12.5 ms), as `kairos collect` records it;
- joint: one joint target and one gripper command per 100 ms control step, what a policy's chunk
  gives the arm (the expert looks one step ahead: MetaWorldSim.expert_target);
- waypoints: the joints the expert passes through at every physics step of the look-ahead, as 8
  waypoints per control step, with its gripper command at each;
- waypoints_one_grip: those waypoints, one gripper command per control step;
- one_target_grips: one joint target per control step, the gripper switched at each physics step;
- interpolated: one target per control step, reached along a straight line in joint space from the
  previous one (as a joint_trajectory_controller interpolates), one gripper command;
- replay_reached / replay_commanded: not closed loop: the native expert's episode recorded as joint
  targets and replayed open loop, the targets being the joints it reached (what `kairos collect`
  records) or its commanded set-point, followed as such (SimConfig.targets).

    python -m training.experiments.expert_interface --tasks push-v3 peg-insert-side-v3 --episodes 20

Prints successes per task and form and writes them as JSON (--out).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List

import numpy as np
from tqdm import tqdm

FORMS = ("native", "joint", "waypoints", "waypoints_one_grip", "one_target_grips", "interpolated",
         "replay_reached", "replay_commanded")


def _look_ahead(sim, policy):
    """The expert's control step on the physics, undone: joints after each physics step [n, 8] and its
    gripper commands [n] (MetaWorldSim.expert_substeps)."""
    state = sim.save_state()
    try:
        return sim.expert_substeps(policy)
    finally:
        sim.restore_state(state)


def replay(sim, variation: int, targets: str) -> bool:
    """The native expert's episode recorded with SimConfig.targets = `targets`, replayed open loop."""
    from kairos_sim.metaworld_sim import rollout_expert
    was = sim.cfg.targets
    sim.cfg.targets = targets
    try:
        actions = rollout_expert(sim, variation)[2]
        sim.reset(variation)
        for a in actions:
            sim.step(a, render=False)
        return bool(sim.success)
    finally:
        sim.cfg.targets = was


def run_episode(sim, variation: int, form: str) -> bool:
    if form not in FORMS:
        raise ValueError(f"form {form!r}: one of {FORMS}")
    if form.startswith("replay_"):
        return replay(sim, variation, form[len("replay_"):])
    policy = sim.expert_policy()
    sim.reset(variation)
    lo, hi = sim.joint_lower[-1], sim.joint_upper[-1]
    prev = sim.joints()
    for _ in range(sim.cfg.max_steps):
        if form == "native":
            sim.expert_step(policy)
        else:
            qs, grips = _look_ahead(sim, policy)
            grip_each = np.where(grips > 0, hi, lo)
            grip_one = hi if np.mean(grips) > 0 else lo           # as MetaWorldSim.expert_step
            target = qs[-1].copy()
            target[-1] = grip_one
            if form == "joint":
                way = target[None]
            elif form == "waypoints":
                way = qs.copy()
                way[:, -1] = grip_each
            elif form == "waypoints_one_grip":
                way = qs.copy()
                way[:, -1] = grip_one
            elif form == "one_target_grips":
                way = np.repeat(target[None], len(qs), 0)
                way[:, -1] = grip_each
            else:   # interpolated
                alpha = (np.arange(1, len(qs) + 1) / len(qs))[:, None]
                way = prev[None] * (1 - alpha) + target[None] * alpha
                way[:, -1] = grip_one
            sim.step(way, render=False)
            prev = target
        if sim.success:
            return True
    return bool(sim.success)


def measure(tasks: List[str], episodes: int, forms=FORMS, first_variation: int = 10_000,
            progress: bool = True) -> Dict[str, Dict[str, int]]:
    from kairos_sim.metaworld_sim import MetaWorldSim, SimConfig
    out: Dict[str, Dict[str, int]] = {}
    bar = tqdm(total=len(tasks) * len(forms) * episodes, desc="expert", unit="ep", disable=not progress)
    for task in tasks:
        out[task] = {}
        with MetaWorldSim(SimConfig(task=task, image_size=32)) as sim:
            for form in forms:
                ok = 0
                for v in range(first_variation, first_variation + episodes):
                    ok += run_episode(sim, v, form)
                    bar.update(1)
                out[task][form] = ok
    bar.close()
    return out


def main(argv=None) -> int:
    from kairos_sim.metaworld_sim import MT10
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["push-v3"], help="Meta-World tasks, or MT10")
    ap.add_argument("--episodes", type=int, default=20, help="held-out scenes per task")
    ap.add_argument("--first-variation", type=int, default=10_000)
    ap.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    ap.add_argument("--out", help="JSON report")
    args = ap.parse_args(argv)
    tasks = MT10 if args.tasks == ["MT10"] else args.tasks
    res = measure(tasks, args.episodes, args.forms, args.first_variation)
    width = max(len(f) for f in args.forms)
    print(f"{'task':28s} " + " ".join(f"{f:>{width}s}" for f in args.forms))
    for task, row in res.items():
        print(f"{task:28s} " + " ".join(f"{str(row[f]) + '/' + str(args.episodes):>{width}s}" for f in args.forms))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"episodes": args.episodes, "first_variation": args.first_variation, "successes": res}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

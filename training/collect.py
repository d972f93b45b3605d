"""`kairos collect`: scripted-expert demonstrations in joint space, written as a LeRobot dataset.

    kairos collect --tasks button-press-topdown-v3 --episodes 40 --out data/demos

Each frame also records the simulator's object and goal positions (observation.environment_state:
privileged, for training-time supervision such as `kairos train-bc --aux-weight`; never a policy input).

--snapshots writes labelled scenes instead of demonstrations: one "episode" per task whose frames each
come from a different task variation (a random step, below --max-steps, of that scene's expert
rollout), with its joints, expert action and object/goal positions. Such a dataset (info.json
"kairos": {"snapshots": true}) feeds only per-frame losses (the position head of `kairos train-bc
--aux-data` or a recipe's `aux_only` source); its frames are not a trajectory and the trainers refuse
it as one. One video per task instead of one per scene keeps it ~10x smaller.

Each episode is one task variation (seeded scene from Meta-World's task sampling; variations
0..N-1 by default, held-out evaluation uses variations from TEST_VARIATIONS up). Failed expert
episodes are counted and left out unless --keep-failures; the count is printed, never hidden.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from tqdm import tqdm


def collect(tasks, episodes: int, out: str, first_variation: int = 0, image_size: int = 64,
            max_steps: Optional[int] = None, keep_failures: bool = False, camera: str = "corner2",
            progress: bool = True, check_replay: bool = False, control_hz: float = 10.0,
            snapshots: bool = False, expert_control: str = "native"):
    """expert_control: how the expert drives the arm (kairos_sim.metaworld_sim.rollout_expert: 'native'
    or 'joint', through the policy's own joint-target interface). control_hz: control steps (frames
    and joint targets) per second, written as the dataset's fps;
    max_steps: per episode (None: 4 s worth). snapshots: one frame per variation, gathered into one
    episode per task (see the module doc)."""
    import numpy as np
    from training.data.lerobot import Episode, LeRobotWriter
    from kairos_sim.metaworld_sim import ENV_STATE_NAMES, JOINT_NAMES, MetaWorldSim, SimConfig, rollout_expert
    stats, replayed = {}, {}
    base = SimConfig.at_rate(control_hz)
    max_steps = max_steps or base.max_steps
    with LeRobotWriter(out, fps=1.0 / base.control_dt, state_names=JOINT_NAMES, action_names=JOINT_NAMES,
                       image_shape=(image_size, image_size, 3), env_state_names=ENV_STATE_NAMES,
                       kairos_info={"camera": camera, "snapshots": snapshots,
                                    "expert_control": expert_control}) as w:
        bar = tqdm(total=len(tasks) * episodes, desc="collect", unit="scene" if snapshots else "ep",
                   disable=not progress)
        for task in tasks:
            ok = 0
            shots = []
            with MetaWorldSim(SimConfig(task=task, image_size=image_size, max_steps=max_steps, camera=camera,
                                        substeps=base.substeps)) as sim:
                for v in range(first_variation, first_variation + episodes):
                    frames, joints, actions, success, env = rollout_expert(sim, v, record_env_state=True,
                                                                   control=expert_control)
                    ok += success
                    if snapshots:             # one frame of this scene, at a step fixed by the variation
                        k = int(np.random.default_rng([v, 17]).integers(len(frames)))
                        shots.append((frames[k], joints[k], actions[k], env[k]))
                        bar.update(1)
                        continue
                    if check_replay:          # the recorded joint-space actions, replayed open loop
                        sim.reset(v)
                        for a in actions:
                            sim.step(a, render=False)
                        replayed[task] = replayed.get(task, 0) + int(sim.success)
                    if success or keep_failures:
                        w.add(Episode({"observation.images.cam": frames}, joints, actions, sim.instruction,
                                      success=success, env_state=env))
                    bar.update(1)
                    bar.set_postfix(task=task, success=f"{ok}/{v - first_variation + 1}")
            if snapshots:
                f, j, a, e = (np.stack(x) for x in zip(*shots))
                w.add(Episode({"observation.images.cam": f}, j, a, sim.instruction, env_state=e))
            stats[task] = (ok, episodes, replayed.get(task) if check_replay else None)
        bar.close()
    return stats


def main(argv=None) -> int:
    from kairos_sim.metaworld_sim import MT10
    ap = argparse.ArgumentParser(prog="kairos collect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["button-press-topdown-v3"],
                    help="Meta-World v3 tasks, this project's (kairos_sim PROJECT_TASKS: reach-wall-around-v3), or MT10 for the ten MT10 tasks")
    ap.add_argument("--episodes", type=int, default=40, help="episodes (task variations) per task")
    ap.add_argument("--out", required=True, help="new dataset directory")
    ap.add_argument("--first-variation", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--control-hz", type=float, default=10.0,
                    help="control rate: frames and joint targets per second (80 Hz / a whole number); the "
                    "dataset's fps, which training and evaluation then follow")
    ap.add_argument("--max-steps", type=int, default=None, help="control steps per episode at most (default 4 s)")
    ap.add_argument("--camera", default="corner2", help="Meta-World camera the frames come from")
    ap.add_argument("--keep-failures", action="store_true")
    ap.add_argument("--snapshots", action="store_true",
                    help="labelled scenes, not demonstrations: one frame per variation (a random step below "
                    "--max-steps), one episode per task; for position supervision only")
    ap.add_argument("--expert-control", choices=["native", "joint"], default="native",
                    help="native: the expert drives Meta-World's end-effector controller every physics step and "
                    "the joints it reaches each control step are recorded; joint: it acts through the "
                    "policy's interface, one joint target per control step (looked up one step ahead)")
    ap.add_argument("--check-replay", action="store_true",
                    help="also replay each episode's recorded joint targets open loop and count successes")
    args = ap.parse_args(argv)
    tasks = MT10 if args.tasks == ["MT10"] else args.tasks
    stats = collect(tasks, args.episodes, args.out, args.first_variation, args.image_size, args.max_steps,
                    args.keep_failures, check_replay=args.check_replay, camera=args.camera,
                    control_hz=args.control_hz, snapshots=args.snapshots,
                    expert_control=args.expert_control)
    for task, (ok, n, rep) in stats.items():
        print(f"{task:28s} expert success {ok}/{n}" + ("" if rep is None else f", joint-space replay {rep}/{n}")
              + ("" if args.keep_failures or args.snapshots or ok == n
                 else f"  ({n - ok} failed episodes left out)"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How far can joint-space imitation go when perception is perfect? A small MLP is trained on the
scripted expert's demonstrations with the simulator's own object and goal positions as input (privileged
state a camera policy never gets), then run closed loop on held-out scenes through the same ActCore
path and chunking as `kairos evaluate` (execute-then-replan, joint and velocity limits). It separates the
two limits of the pixel policies:

- the control interface: the same policy at 10 Hz and at 40 Hz (`--control-hz 10 40`; joint waypoints
  every 100 ms or every 25 ms, the same 4 s episodes);
- perception: `--inputs joints hand` leaves out the objects and the goal, which is all a policy that
  cannot find them in its camera frame has;
- perception as it can be learned: `--inputs joints hand positions --estimator ARTIFACT` trains
  on the true first-object and goal positions (`positions`, the 6 values `kairos collect` records as
  observation.environment_state; `--train-noise` adds Gaussian noise to them in training) but runs
  on the positions read from the camera frame of each control step, by a BC policy's position head
  (`kairos train-bc --aux-weight`) or a keypoint net (training.experiments.goal_pixels): how far a
  policy gets on estimated state.

    python -m training.experiments.privileged_bc --tasks push-v3 --control-hz 10 40
    python -m training.experiments.privileged_bc --tasks push-v3 --inputs joints hand
    python -m training.experiments.privileged_bc --tasks MT10 --relative --inputs joints hand positions \
        --estimator runs/bc_mt10_ws_aux --camera workspace --train-noise 0.02
    python -m training.experiments.privileged_bc --tasks MT10 --relative --inputs joints hand positions \
        --estimator runs/keypoints_ws --camera workspace --train-noise 0.02
    python -m training.experiments.privileged_bc --tasks MT10 --relative --inputs joints hand positions \
        --estimator runs/keypoints_ws --camera workspace --train-on-estimates --first-demo 40 --demos 160

`--train-on-estimates` trains on what the estimator reads from the demonstration frames instead of the
true positions (`--first-demo` past the scenes the estimator was trained on), so the policy learns the
estimator's real errors; `--demos` and `--execution-horizon` measure how the ceiling moves with the
number of demonstrations and with replanning at every control step. `--hold-goals` makes a keypoint
estimator keep each episode's surest goal reading (the goal does not move; the arm covers it later).
`--record-frames DIR` writes the closed-loop episodes' frames, labelled with the simulator's positions,
as a LeRobot dataset that training.experiments.goal_pixels trains a keypoint net on (run it on scenes
that are not held out: `--first-variation 20000`).

Inputs (Meta-World's observation vector, current frame): joints [8] (JOINT_NAMES), hand [4] (hand
position and gripper opening), objects [14] (up to two objects: position and quaternion each), goal [3],
positions [6] (first object's and goal's position, MetaWorldSim.env_state).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from training.data.sources import chunk_targets

GROUPS = ("joints", "hand", "objects", "goal", "positions")
SIZES = {"joints": 8, "hand": 4, "objects": 14, "goal": 3, "positions": 6}


@dataclass
class PrivilegedBCConfig:
    """inputs: which GROUPS the policy sees. horizon: chunk length [H] in control steps. hidden: MLP width.
    relative: predict the chunk as offsets from the current joints instead of absolute targets.
    iters / batch / lr: training (Adam on normalised targets; a few seconds on one core).
    train_noise: std (m) of Gaussian noise added to the `positions` inputs of each training batch (a
    policy meant to run on estimated positions learns to tolerate their error)."""
    inputs: List[str] = field(default_factory=lambda: list(GROUPS[:4]))
    horizon: int = 8
    hidden: int = 256
    relative: bool = False
    iters: int = 3000
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0
    train_noise: float = 0.0

    def columns(self, group: str) -> List[int]:
        """Indices of one input group in the feature vector."""
        start = 0
        for g in self.inputs:
            if g == group:
                return list(range(start, start + SIZES[g]))
            start += SIZES[g]
        return []


def features(sim, inputs, positions: Optional[np.ndarray] = None) -> np.ndarray:
    """The chosen input groups of the simulator's current state, concatenated [F] (joints first);
    positions [6]: use these (an estimate) for the `positions` group instead of the simulator's."""
    o = sim._obs_vec
    parts = {"joints": sim.joints(), "hand": o[0:4], "objects": o[4:18], "goal": o[-3:],
             "positions": sim.env_state() if positions is None else positions}
    unknown = set(inputs) - set(parts)
    if unknown:
        raise ValueError(f"unknown input groups {sorted(unknown)}; choose from {list(GROUPS)}")
    return np.concatenate([np.asarray(parts[g], np.float64) for g in inputs])


class PrivilegedEngine:
    """The engine interface over the MLP: each sampling tick reads the simulator's state and returns a
    chunk [H, 8] of joint targets; with an estimator the `positions` input comes from the camera frame
    the core passes instead, read by a BC policy's position head (BCEngine.positions) or a keypoint net
    (KeypointEstimator.positions; the rest of the
    state stays the simulator's: joints and hand, which a robot knows)."""
    backend = "privileged-mlp"

    def __init__(self, sim, net: nn.Module, cfg: PrivilegedBCConfig, norm: Dict[str, np.ndarray],
                 joint_names, image_size: int = 64, estimator=None):
        self.sim, self.net, self.cfg, self.norm = sim, net, cfg, norm
        self.estimator = estimator
        self.errors: List[List[float]] = []     # |estimate - truth| per sampling tick: [object, goal] (m)
        self.joint_names = list(joint_names)
        self.image_size = (image_size, image_size)
        self.steps = 0

    def reset(self) -> None:
        self.steps = 0
        if hasattr(self.estimator, "reset"):       # a new episode: a keypoint estimator's held goals go
            self.estimator.reset()

    @torch.no_grad()
    def step(self, obs, decode_future: bool = False, sample: bool = True, update_memory: bool = True, **_):
        from kairos_model.engine import ActionPrediction
        self.steps += int(update_memory)
        if not sample:
            return None
        n = self.norm
        est = None
        if self.estimator is not None:
            est = self.estimator.positions(obs.image_hwc[None], self.sim.instruction)[0]
            true = self.sim.env_state()
            self.errors.append([float(np.linalg.norm(est[:3] - true[:3])), float(np.linalg.norm(est[3:] - true[3:]))])
        x = torch.from_numpy((features(self.sim, self.cfg.inputs, est) - n["xm"]) / n["xs"]).float()[None]
        a = self.net(x).view(self.cfg.horizon, -1).double().numpy() * n["ys"] + n["ym"]
        if self.cfg.relative:
            a = a + self.sim.joints()
        return ActionPrediction(a, torch.zeros(0), self.steps, {})


def _demos(sim, variations, cfg: PrivilegedBCConfig, estimator=None):
    """Expert episodes -> inputs [N, F], chunks [N, H, 8]; failed episodes are left out and counted.
    estimator: the `positions` inputs are what it reads from each demonstration frame (rendered), not
    the simulator's (rendering is off without one)."""
    X, Y, ok = [], [], 0
    extra = max(1, int(round(0.2 / sim.cfg.control_dt)))
    for v in variations:
        pol = sim.expert_policy()
        sim.reset(v)
        if hasattr(estimator, "reset"):
            estimator.reset()
        feats, acts, after = [], [], None
        for _ in range(sim.cfg.max_steps):
            est = None if estimator is None else estimator.positions(sim.render()[None], sim.instruction)[0]
            feats.append(features(sim, cfg.inputs, est))
            acts.append(sim.expert_step(pol))
            if sim.success:
                after = extra if after is None else after - 1
                if after <= 0:
                    break
        if not sim.success:
            continue
        ok += 1
        chunks = chunk_targets(np.asarray(acts), cfg.horizon)            # [T, H, 8]
        for t, chunk in enumerate(chunks):
            X.append(feats[t])
            Y.append(chunk - feats[t][:8] if cfg.relative else chunk)
    return np.asarray(X), np.asarray(Y), ok


def train(X: np.ndarray, Y: np.ndarray, cfg: PrivilegedBCConfig):
    """MSE on normalised chunks -> (net, normalisation, final loss)."""
    torch.manual_seed(cfg.seed)
    xs = X.std(0)
    xs = np.where(xs < 1e-3, 1.0, xs)      # an input (near) constant in training (a fixed object's pose, to a
    norm = {"xm": X.mean(0), "xs": xs,      # mm) is centred, not scaled up: its jitter is not information
            "ym": Y.mean(0), "ys": Y.std(0) + 1e-6}
    Xt = torch.from_numpy((X - norm["xm"]) / norm["xs"]).float()
    Yt = torch.from_numpy((Y - norm["ym"]) / norm["ys"]).float().flatten(1)
    noise = torch.zeros(X.shape[1])                     # per-input noise std, in normalised units
    cols = cfg.columns("positions")
    if cfg.train_noise > 0 and cols:
        noise[cols] = torch.from_numpy(cfg.train_noise / norm["xs"][cols]).float()
    net = nn.Sequential(nn.Linear(X.shape[1], cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                        nn.Linear(cfg.hidden, Yt.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), cfg.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for _ in range(cfg.iters):
        i = torch.randint(0, len(Xt), (cfg.batch,), generator=g)
        xb = Xt[i] + noise * torch.randn(len(i), X.shape[1], generator=g)
        loss = (net(xb) - Yt[i]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net.eval(), norm, float(np.mean(losses[-50:]))


def run(task: str, control_hz: float = 10.0, demos: int = 40, episodes: int = 20, first_variation: int = 10_000,
        cfg: Optional[PrivilegedBCConfig] = None, execution_horizon: int = 4,
        estimator=None, camera: str = "corner2", train_on_estimates: bool = False, first_demo: int = 0,
        writer=None, targets: str = "reached") -> dict:
    """Train on variations first_demo.. (+demos), run on first_variation.. (+episodes). execution_horizon: chunk
    steps executed before replanning (`kairos evaluate`'s default, at any rate). estimator: a BCEngine
    with a position head or a KeypointEstimator; run on the positions it reads from `camera`'s frame (rendered at its input
    size). train_on_estimates: train on the estimator's readings of the demonstration frames too (the
    policy learns the estimator's real errors; demonstrations the estimator was trained on read better
    than new frames do). writer: a training.data.lerobot.LeRobotWriter (with env_state_names) that
    takes every closed-loop episode: the frames the estimator read, labelled with the simulator's
    positions (perception training data from the states this policy visits; needs an estimator).
    targets: what a joint target means, in the demonstrations and for the arm (SimConfig.targets)."""
    from kairos_ros.core.act_core import ActCore
    from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig
    from training.evaluate import act_config
    cfg = cfg or PrivilegedBCConfig()
    if cfg.relative and cfg.inputs[:1] != ["joints"]:
        raise ValueError("relative chunks are offsets from the joints: inputs must start with 'joints'")
    t0 = time.time()
    if estimator is not None and "positions" not in cfg.inputs:
        raise ValueError("an estimator supplies the `positions` input: add it to --inputs")
    if train_on_estimates and estimator is None:
        raise ValueError("train_on_estimates needs an estimator")
    if writer is not None and estimator is None:
        raise ValueError("recording closed-loop frames needs an estimator (without one nothing is rendered)")
    size = estimator.cfg.image_size if estimator is not None else 64
    with MetaWorldSim(SimConfig.at_rate(control_hz, task=task, camera=camera, image_size=size,
                                        targets=targets)) as sim:
        exe = min(execution_horizon, cfg.horizon)
        X, Y, ok = _demos(sim, range(first_demo, first_demo + demos), cfg, estimator if train_on_estimates else None)
        if not len(X):
            raise RuntimeError(f"the expert solved none of the {demos} demonstration scenes of {task}")
        net, norm, loss = train(X, Y, cfg)
        engine = PrivilegedEngine(sim, net, cfg, norm, JOINT_NAMES, size, estimator)
        core = ActCore(act_config(sim, JOINT_NAMES, "execute_then_replan", exe), engine)
        blank = np.zeros((size, size, 3), np.uint8)        # without an estimator the policy reads no frame
        rows = []
        starts = []                                         # index of each episode's first estimate
        for v in range(first_variation, first_variation + episodes):
            obs = sim.reset(v)
            core.reset()
            starts.append(len(engine.errors))
            q = sim.joints()
            seen = []                                       # (frame, joints, target, env_state) per step
            for k in range(sim.cfg.max_steps):
                now = k * sim.cfg.control_dt
                core.set_image(obs.image if estimator is not None else blank, now)
                core.set_joints(JOINT_NAMES, q, now)
                r = core.tick(now)
                target = r.positions[0] if r.positions is not None else q
                if writer is not None:
                    seen.append((obs.image, q, np.asarray(target, np.float64), sim.env_state()))
                obs = sim.step(target, render=estimator is not None)
                q = sim.joints()
                if sim.success:
                    break
            rows.append({"variation": v, "success": bool(sim.success), "steps": sim.steps})
            if writer is not None and seen:
                from training.data.lerobot import Episode
                f, j, a, e = (np.stack(x) for x in zip(*seen))
                writer.add(Episode({"observation.images.cam": f}, j, a, sim.instruction, success=bool(sim.success),
                                   env_state=e))
    return {"task": task, "control_hz": control_hz, "targets": targets, "inputs": list(cfg.inputs), "demos_ok": ok,
            "trained_on_estimates": train_on_estimates,
            "samples": int(len(X)), "final_loss": loss, "execution_horizon": exe,
            "successes": sum(r["success"] for r in rows), "episodes": rows, "seconds": time.time() - t0,
            "config": asdict(cfg),
            **({"camera": camera, "estimate_error_cm": (100 * np.mean(engine.errors, axis=0)).tolist(),
                "first_estimate_error_cm": (100 * np.mean([engine.errors[i] for i in starts], axis=0)).tolist()}
               if estimator is not None else {})}


def load_estimator(path: str, hold_goals: bool = False):
    """A position reader from an artifact: a keypoint net (training.perception, `kind: keypoints` in
    its config.json; hold_goals: each episode keeps its surest goal reading) or a BC policy with a
    position head."""
    import os
    with open(os.path.join(path, "config.json")) as f:
        kind = json.load(f).get("kind")
    if kind == "keypoints":
        from training.perception import KeypointEstimator
        return KeypointEstimator(path, hold_goals=hold_goals)
    if hold_goals:
        raise ValueError(f"--hold-goals needs a keypoint artifact; {path} is a BC policy")
    from training.baselines.bc import BCEngine
    return BCEngine(path)


def main(argv=None):
    from kairos_sim.metaworld_sim import MT10
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["push-v3"], help="tasks, or MT10")
    ap.add_argument("--control-hz", type=float, nargs="+", default=[10.0])
    ap.add_argument("--inputs", nargs="+", default=list(GROUPS[:4]), choices=GROUPS)
    ap.add_argument("--estimator", help="a BC artifact with a position head or a keypoint artifact "
                    "(training.experiments.goal_pixels): the `positions` input comes from its reading of the "
                    "camera frame at run time")
    ap.add_argument("--camera", default="corner2", help="the camera the estimator reads")
    ap.add_argument("--hold-goals", action="store_true",
                    help="a keypoint estimator keeps each episode's surest goal reading (the goal does not move)")
    ap.add_argument("--train-noise", type=float, default=0.0, help="std (m) of noise on `positions` in training")
    ap.add_argument("--relative", action="store_true", help="chunks as offsets from the current joints")
    ap.add_argument("--demos", type=int, default=40, help="demonstration scenes (variations first-demo.. +N)")
    ap.add_argument("--episodes", type=int, default=20, help="held-out scenes (from --first-variation)")
    ap.add_argument("--first-variation", type=int, default=10_000, help="first held-out scene")
    ap.add_argument("--record-frames", metavar="DIR",
                    help="write every closed-loop episode's frames, labelled with the simulator's positions, as a "
                         "LeRobot dataset (keypoint training data from the states this policy visits)")
    ap.add_argument("--train-on-estimates", action="store_true",
                    help="train on the estimator's readings of the demonstration frames, not the true positions")
    ap.add_argument("--first-demo", type=int, default=0,
                    help="first demonstration scene (e.g. past the scenes the estimator was trained on)")
    ap.add_argument("--execution-horizon", type=int, default=4,
                    help="chunk steps executed before replanning (1: replan every control step)")
    ap.add_argument("--targets", choices=["reached", "commanded"], default="reached",
                    help="what a joint target is, in the demonstrations and for the arm: the joints reached or "
                    "the commanded set-point (kairos_sim.metaworld_sim.SimConfig.targets)")
    ap.add_argument("--iters", type=int, default=PrivilegedBCConfig.iters, help="training iterations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args(argv)
    tasks = MT10 if a.tasks == ["MT10"] else a.tasks
    cfg = PrivilegedBCConfig(inputs=list(a.inputs), seed=a.seed, relative=a.relative, train_noise=a.train_noise,
                              iters=a.iters)
    est = load_estimator(a.estimator, a.hold_goals) if a.estimator else None
    writer = contextlib.nullcontext()
    if a.record_frames:
        from kairos_sim.metaworld_sim import ENV_STATE_NAMES, JOINT_NAMES, SimConfig
        from training.data.lerobot import LeRobotWriter
        if len(a.control_hz) != 1 or est is None:
            raise SystemExit("--record-frames needs one --control-hz and an --estimator")
        size = est.cfg.image_size
        writer = LeRobotWriter(a.record_frames, fps=1.0 / SimConfig.at_rate(a.control_hz[0]).control_dt,
                               state_names=JOINT_NAMES, action_names=JOINT_NAMES, image_shape=(size, size, 3),
                               env_state_names=ENV_STATE_NAMES,
                               kairos_info={"camera": a.camera, "snapshots": False, "closed_loop": "privileged_bc"})
    results = []
    with writer as w:
        for hz in a.control_hz:
            for task in tasks:
                results.append(run(task, hz, a.demos, a.episodes, a.first_variation, cfg=cfg, estimator=est,
                                   camera=a.camera, execution_horizon=a.execution_horizon,
                                   train_on_estimates=a.train_on_estimates, first_demo=a.first_demo, writer=w,
                                   targets=a.targets))
                _print(results[-1], a)
    for hz in a.control_hz:
        rs = [r for r in results if r["control_hz"] == hz]
        print(f"mean at {hz:g} Hz: {100 * np.mean([r['successes'] / a.episodes for r in rs]):.1f}%")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    return results


def _print(r: dict, a) -> None:
    err = r.get("estimate_error_cm")
    print(f"{r['task']:26s} {r['control_hz']:4g} Hz  inputs {'+'.join(a.inputs)}{' (relative)' if a.relative else ''}: "
          f"{r['successes']}/{a.episodes} (trained on {r['demos_ok']} demos, {r['samples']} samples, loss "
          f"{r['final_loss']:.4f}; {r['seconds']:.0f} s)" + ("" if err is None else
                                                            f"; estimate off by {err[0]:.1f} cm (object), {err[1]:.1f} cm (goal), "
                                                            f"at the first step {r['first_estimate_error_cm'][0]:.1f} / "
                                                            f"{r['first_estimate_error_cm'][1]:.1f} cm"),
          flush=True)


if __name__ == "__main__":
    main()

"""How far can joint-space imitation go when perception is perfect? A small MLP is trained on the
scripted expert's demonstrations with the simulator's own object and goal positions as input (privileged
state a camera policy never gets), then run closed loop on held-out scenes through the same ActCore
path and chunking as `kairos evaluate` (execute-then-replan, joint and velocity limits). It separates the
two limits of the pixel policies:

- the control interface: the same policy at 10 Hz and at 40 Hz (`--control-hz 10 40`; joint waypoints
  every 100 ms or every 25 ms, the same 4 s episodes);
- perception: `--inputs joints hand` leaves out the objects and the goal, which is all a policy that
  cannot find them in its camera frame has.

    python -m training.experiments.privileged_bc --tasks push-v3 --control-hz 10 40
    python -m training.experiments.privileged_bc --tasks push-v3 --inputs joints hand

Inputs (Meta-World's observation vector, current frame): joints [8] (JOINT_NAMES), hand [4] (hand
position and gripper opening), objects [14] (up to two objects: position and quaternion each), goal [3].
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from training.data.sources import chunk_targets

GROUPS = ("joints", "hand", "objects", "goal")


@dataclass
class PrivilegedBCConfig:
    """inputs: which GROUPS the policy sees. horizon: chunk length [H] in control steps. hidden: MLP width.
    relative: predict the chunk as offsets from the current joints instead of absolute targets.
    iters / batch / lr: training (Adam on normalised targets; a few seconds on one core)."""
    inputs: List[str] = field(default_factory=lambda: list(GROUPS))
    horizon: int = 8
    hidden: int = 256
    relative: bool = False
    iters: int = 3000
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0


def features(sim, inputs) -> np.ndarray:
    """The chosen input groups of the simulator's current state, concatenated [F] (joints first)."""
    o = sim._obs_vec
    parts = {"joints": sim.joints(), "hand": o[0:4], "objects": o[4:18], "goal": o[-3:]}
    unknown = set(inputs) - set(parts)
    if unknown:
        raise ValueError(f"unknown input groups {sorted(unknown)}; choose from {list(GROUPS)}")
    return np.concatenate([np.asarray(parts[g], np.float64) for g in inputs])


class PrivilegedEngine:
    """The engine interface over the MLP: each sampling tick reads the simulator's state (not the camera
    frame the core passes) and returns a chunk [H, 8] of joint targets."""
    backend = "privileged-mlp"

    def __init__(self, sim, net: nn.Module, cfg: PrivilegedBCConfig, norm: Dict[str, np.ndarray],
                 joint_names, image_size: int = 64):
        self.sim, self.net, self.cfg, self.norm = sim, net, cfg, norm
        self.joint_names = list(joint_names)
        self.image_size = (image_size, image_size)
        self.steps = 0

    def reset(self) -> None:
        self.steps = 0

    @torch.no_grad()
    def step(self, obs, decode_future: bool = False, sample: bool = True, update_memory: bool = True, **_):
        from kairos_model.engine import ActionPrediction
        self.steps += int(update_memory)
        if not sample:
            return None
        n = self.norm
        x = torch.from_numpy((features(self.sim, self.cfg.inputs) - n["xm"]) / n["xs"]).float()[None]
        a = self.net(x).view(self.cfg.horizon, -1).double().numpy() * n["ys"] + n["ym"]
        if self.cfg.relative:
            a = a + self.sim.joints()
        return ActionPrediction(a, torch.zeros(0), self.steps, {})


def _demos(sim, variations, cfg: PrivilegedBCConfig):
    """Expert episodes (rendering off) -> inputs [N, F], chunks [N, H, 8]; failed episodes are left out
    and counted."""
    X, Y, ok = [], [], 0
    extra = max(1, int(round(0.2 / sim.cfg.control_dt)))
    for v in variations:
        pol = sim.expert_policy()
        sim.reset(v)
        feats, acts, after = [], [], None
        for _ in range(sim.cfg.max_steps):
            feats.append(features(sim, cfg.inputs))
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
    net = nn.Sequential(nn.Linear(X.shape[1], cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                        nn.Linear(cfg.hidden, Yt.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), cfg.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for _ in range(cfg.iters):
        i = torch.randint(0, len(Xt), (cfg.batch,), generator=g)
        loss = (net(Xt[i]) - Yt[i]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net.eval(), norm, float(np.mean(losses[-50:]))


def run(task: str, control_hz: float = 10.0, demos: int = 40, episodes: int = 20, first_variation: int = 10_000,
        cfg: Optional[PrivilegedBCConfig] = None, execution_horizon: int = 4) -> dict:
    """Train on variations 0..demos-1, run on first_variation.. (+episodes). execution_horizon: chunk
    steps executed before replanning (`kairos evaluate`'s default, at any rate)."""
    from kairos_ros.core.act_core import ActCore
    from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig
    from training.evaluate import act_config
    cfg = cfg or PrivilegedBCConfig()
    if cfg.relative and cfg.inputs[:1] != ["joints"]:
        raise ValueError("relative chunks are offsets from the joints: inputs must start with 'joints'")
    t0 = time.time()
    with MetaWorldSim(SimConfig.at_rate(control_hz, task=task)) as sim:
        exe = min(execution_horizon, cfg.horizon)
        X, Y, ok = _demos(sim, range(demos), cfg)
        if not len(X):
            raise RuntimeError(f"the expert solved none of the {demos} demonstration scenes of {task}")
        net, norm, loss = train(X, Y, cfg)
        engine = PrivilegedEngine(sim, net, cfg, norm, JOINT_NAMES)
        core = ActCore(act_config(sim, JOINT_NAMES, "execute_then_replan", exe), engine)
        blank = np.zeros((64, 64, 3), np.uint8)            # the policy reads the state, not the frame
        rows = []
        for v in range(first_variation, first_variation + episodes):
            sim.reset(v)
            core.reset()
            q = sim.joints()
            for k in range(sim.cfg.max_steps):
                now = k * sim.cfg.control_dt
                core.set_image(blank, now)
                core.set_joints(JOINT_NAMES, q, now)
                r = core.tick(now)
                sim.step(r.positions[0] if r.positions is not None else q, render=False)
                q = sim.joints()
                if sim.success:
                    break
            rows.append({"variation": v, "success": bool(sim.success), "steps": sim.steps})
    return {"task": task, "control_hz": control_hz, "inputs": list(cfg.inputs), "demos_ok": ok,
            "samples": int(len(X)), "final_loss": loss, "execution_horizon": exe,
            "successes": sum(r["success"] for r in rows), "episodes": rows, "seconds": time.time() - t0,
            "config": asdict(cfg)}


def main(argv=None):
    from kairos_sim.metaworld_sim import MT10
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["push-v3"], help="tasks, or MT10")
    ap.add_argument("--control-hz", type=float, nargs="+", default=[10.0])
    ap.add_argument("--inputs", nargs="+", default=list(GROUPS), choices=GROUPS)
    ap.add_argument("--relative", action="store_true", help="chunks as offsets from the current joints")
    ap.add_argument("--demos", type=int, default=40, help="demonstration scenes (variations 0..N-1)")
    ap.add_argument("--episodes", type=int, default=20, help="held-out scenes (from 10000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args(argv)
    tasks = MT10 if a.tasks == ["MT10"] else a.tasks
    cfg = PrivilegedBCConfig(inputs=list(a.inputs), seed=a.seed, relative=a.relative)
    results = []
    for hz in a.control_hz:
        for task in tasks:
            r = run(task, hz, a.demos, a.episodes, cfg=cfg)
            results.append(r)
            print(f"{task:26s} {hz:4g} Hz  inputs {'+'.join(a.inputs)}{' (relative)' if a.relative else ''}: {r['successes']}/{a.episodes} "
                  f"(trained on {r['demos_ok']} demos, {r['samples']} samples, loss {r['final_loss']:.4f}; "
                  f"{r['seconds']:.0f} s)", flush=True)
    for hz in a.control_hz:
        rs = [r for r in results if r["control_hz"] == hz]
        print(f"mean at {hz:g} Hz: {100 * np.mean([r['successes'] / a.episodes for r in rs]):.1f}%")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()

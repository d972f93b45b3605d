"""`kairos evaluate --artifact DIR --tasks T... --episodes N`: closed-loop episodes in the simulator,
without ROS and faster than real time, through the same ActCore the act node runs (chunk strategy,
joint limits, holds). Prints success per task, mean episode length and control latency p50/p99, and
writes a report (report.json, episodes.png, a GIF per task) to --report.

Scenes are held-out task variations (from 10000 up; demonstrations use 0..N-1)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm


def evaluate(artifact: str, tasks, episodes: int, first_variation: int = 10_000, max_steps: int = 40,
             strategy: str = "execute_then_replan", execution_horizon: int = 4, sampler_steps: int = 4,
             progress: bool = True, backend: str = "torch", quantized: bool = False):
    from kairos_model.engine import load_engine
    from kairos_ros.core.act_core import ActConfig, ActCore
    from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig
    with open(os.path.join(artifact, "config.json")) as f:
        fmt = json.load(f).get("format")
    if fmt == "kairos-bc-1":
        from training.baselines.bc import BCEngine
        engine = BCEngine(artifact)
        names = engine.joint_names or JOINT_NAMES
    else:
        if backend in ("onnx", "tensorrt"):
            from training.export import ensure_exported
            artifact = ensure_exported(artifact)
        loaded = load_engine(artifact, sampler_steps=sampler_steps, backend=backend, quantized=quantized)
        engine, names = loaded.engine, loaded.joint_names or JOINT_NAMES
    per_task, lat, frames_by_task = {}, [], {}
    bar = tqdm(total=len(tasks) * episodes, desc="evaluate", unit="ep", disable=not progress)
    for task in tasks:
        with MetaWorldSim(SimConfig(task=task, max_steps=max_steps)) as sim:
            cfg = ActConfig(joint_names=JOINT_NAMES, model_joint_names=list(names),
                            lower=sim.joint_lower.tolist(), upper=sim.joint_upper.tolist(),
                            max_velocity=[4.0] * 7 + [0.5], control_rate_hz=1 / sim.cfg.control_dt,
                            strategy=strategy, execution_horizon=execution_horizon, instruction=sim.instruction)
            core = ActCore(cfg, engine)
            res = []
            for e in range(episodes):
                obs = sim.reset(first_variation + e)
                core.reset()
                frames = [obs.image]
                for k in range(max_steps):
                    now = k * sim.cfg.control_dt
                    core.set_image(obs.image, now)
                    core.set_joints(JOINT_NAMES, obs.joints, now)
                    t0 = time.perf_counter()
                    r = core.tick(now)
                    lat.append(1e3 * (time.perf_counter() - t0))
                    obs = sim.step(r.positions[0] if r.positions is not None else obs.joints)
                    frames.append(obs.image)
                    if obs.success:
                        break
                res.append({"variation": first_variation + e, "success": bool(obs.success), "steps": obs.step})
                if e == 0:
                    frames_by_task[task] = frames
                bar.update(1)
                bar.set_postfix(task=task, success=f"{sum(r['success'] for r in res)}/{len(res)}")
        per_task[task] = res
    bar.close()
    return per_task, lat, frames_by_task


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--tasks", nargs="+", default=["button-press-topdown-v3"], help="tasks, or MT10")
    ap.add_argument("--episodes", type=int, default=20, help="held-out variations per task")
    ap.add_argument("--first-variation", type=int, default=10_000)
    ap.add_argument("--max-steps", type=int, default=40)
    ap.add_argument("--backend", default="torch", choices=("torch", "onnx", "tensorrt", "auto"),
                    help="onnx/tensorrt export a plain checkpoint first (cached)")
    ap.add_argument("--quantized", action="store_true", help="the artifact's int8/int4 graphs (onnx backend)")
    ap.add_argument("--strategy", default="execute_then_replan")
    ap.add_argument("--execution-horizon", type=int, default=4)
    ap.add_argument("--sampler-steps", type=int, default=4)
    ap.add_argument("--report", default="runs/evaluate")
    args = ap.parse_args(argv)
    from kairos_sim.metaworld_sim import MT10
    tasks = MT10 if args.tasks == ["MT10"] else args.tasks
    per_task, lat, frames = evaluate(args.artifact, tasks, args.episodes, args.first_variation, args.max_steps,
                                     args.strategy, args.execution_horizon, args.sampler_steps, backend=args.backend,
                                     quantized=args.quantized)
    os.makedirs(args.report, exist_ok=True)
    from PIL import Image
    rows = []
    for task, res in per_task.items():
        ok = sum(r["success"] for r in res)
        rows.append({"task": task, "successes": ok, "episodes": len(res), "success_rate": ok / len(res),
                     "mean_steps": float(np.mean([r["steps"] for r in res]))})
        print(f"{task:28s} success {ok}/{len(res)} ({100 * ok / len(res):.0f}%), mean episode "
              f"{rows[-1]['mean_steps']:.1f} steps")
        imgs = [Image.fromarray(f).resize((128, 128), Image.NEAREST) for f in frames[task]]
        imgs[0].save(os.path.join(args.report, f"{task}.gif"), save_all=True, append_images=imgs[1:], duration=100, loop=0)
    mean = float(np.mean([r["success_rate"] for r in rows]))
    p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    print(f"mean success {100 * mean:.1f}%; control step latency p50 {p50:.1f} ms, p99 {p99:.1f} ms "
          f"(ActCore.tick on this CPU, {args.sampler_steps} sampler steps, replanning every {args.execution_horizon})")
    with open(os.path.join(args.report, "report.json"), "w") as f:
        json.dump({"artifact": args.artifact, "tasks": rows, "mean_success": mean, "latency_p50_ms": p50,
                   "latency_p99_ms": p99, "episodes": per_task, "args": vars(args)}, f, indent=2)
    print(f"report: {args.report}/report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

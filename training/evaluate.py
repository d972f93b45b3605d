"""`kairos evaluate --artifact DIR --tasks T... --episodes N`: closed-loop episodes in the simulator,
without ROS and faster than real time, through the same ActCore the act node runs (chunk strategy,
joint limits, holds). Prints success per task, mean episode length and control latency p50/p99, and
writes a report to --report: report.json, report.html, a GIF of the first episode per task, and
imagined.png (per task, the camera frame that came after each inference tick of the first episode
above the frame the world model imagined for it; a BC baseline imagines nothing, so its row shows
only real frames).

Scenes are held-out task variations (from 10000 up; demonstrations use 0..N-1)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional

import numpy as np
from tqdm import tqdm


def act_config(sim, model_joint_names, strategy: str = "execute_then_replan", execution_horizon: int = 4):
    """The act core's settings for the simulated arm: its joint limits, velocity limits and control rate."""
    from kairos_ros.core.act_core import ActConfig
    from kairos_sim.metaworld_sim import JOINT_NAMES
    return ActConfig(joint_names=JOINT_NAMES, model_joint_names=list(model_joint_names),
                     lower=sim.joint_lower.tolist(), upper=sim.joint_upper.tolist(),
                     max_velocity=[4.0] * 7 + [0.5], control_rate_hz=1 / sim.cfg.control_dt,
                     strategy=strategy, execution_horizon=execution_horizon, instruction=sim.instruction)


def resolve_camera(artifact: str, camera: Optional[str] = None) -> str:
    """The simulator camera to evaluate from: `camera` when given (with a warning if the artifact's meta
    names another, which the trainer records for simulator data), else the artifact's, else corner2."""
    doc = os.path.join(artifact, "config.json")
    if not os.path.isfile(doc):
        raise FileNotFoundError(f"no artifact at {artifact!r}: {doc} is missing (a `kairos train`, `kairos "
                                "train-bc` or `kairos export` output folder, or one under artifacts/)")
    with open(doc) as f:
        trained_on = (json.load(f).get("meta") or {}).get("camera")
    if camera is not None and trained_on is not None and camera != trained_on:
        print(f"warning: evaluating from camera {camera!r}; the artifact was trained on {trained_on!r}")
    return camera or trained_on or "corner2"


def evaluate(artifact: str, tasks, episodes: int, first_variation: int = 10_000, max_steps: Optional[int] = None,
             strategy: str = "execute_then_replan", execution_horizon: int = 4, sampler_steps: int = 4,
             progress: bool = True, backend: str = "torch", quantized: bool = False, camera: Optional[str] = None,
             keypoint_hold: Optional[bool] = None, cfg_scale: float = 1.0, record_hand: bool = False,
             seed_per_scene: bool = False):
    """seed_per_scene: a world model's sampling noise is seeded with the scene's variation number at each
    episode start instead of the engine's fixed seed (0), so episodes draw independent noise (what a
    task with two equally good ways needs to show how often a sampler lands between them).
    record_hand: also return the hand's path of every episode (its "hand_path", [steps + 1, 3] m, as
    lists), for analyses of where the arm went (bench/distillation.py on reach-wall-around-v3).
    camera: the simulator camera the policy sees; use the one its demonstrations were collected with
    (None: the one the artifact's meta names, which the trainer records for simulator data; else corner2).
    keypoint_hold: override a world model's und.keypoint_hold (None: as the artifact says).
    cfg_scale: classifier-free guidance on the instruction (1: none).
    Frames are rendered at the policy's input side (engine.image_size), not resized up to it.
    The control rate is the artifact's (its demonstrations' fps); max_steps None: a 4 s episode."""
    from kairos_model.engine import load_engine
    from kairos_ros.core.act_core import ActCore, distilled_step_note
    from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig
    camera = camera or resolve_camera(artifact)
    with open(os.path.join(artifact, "config.json")) as f:
        fmt = json.load(f).get("format")
    if fmt == "kairos-bc-1":
        from training.baselines.bc import BCEngine
        if keypoint_hold or cfg_scale != 1.0:
            raise ValueError(f"{artifact} is a BC policy: keypoint_hold and cfg_scale are world-model options")
        engine = BCEngine(artifact)
        names = engine.joint_names or JOINT_NAMES
        control_hz = engine.cfg.control_hz
    else:
        if backend in ("onnx", "tensorrt"):
            from training.export import ensure_exported
            artifact = ensure_exported(artifact, quantize=("int8", "int4-text") if quantized else ())
        loaded = load_engine(artifact, sampler_steps=sampler_steps, backend=backend, quantized=quantized,
                             keypoint_hold=keypoint_hold, cfg_scale=cfg_scale)
        engine, names = loaded.engine, loaded.joint_names or JOINT_NAMES
        control_hz = 1.0 / float(loaded.meta.get("control_dt", 0.1))
        note = distilled_step_note(loaded.meta, sampler_steps, artifact)
        if note and progress:
            print(f"note: {note}")
    rate = SimConfig.at_rate(control_hz)
    max_steps = max_steps or rate.max_steps
    per_task, lat, frames_by_task, imagined_by_task = {}, [], {}, {}
    decode = getattr(engine, "decode_future", None)
    bar = tqdm(total=len(tasks) * episodes, desc="evaluate", unit="ep", disable=not progress)
    for task in tasks:
        with MetaWorldSim(SimConfig(task=task, max_steps=max_steps, camera=camera, substeps=rate.substeps,
                                    image_size=int(engine.image_size[0]))) as sim:   # the policy's input side
            core = ActCore(act_config(sim, names, strategy, execution_horizon), engine)
            res = []
            for e in range(episodes):
                obs = sim.reset(first_variation + e)
                if seed_per_scene and hasattr(engine, "seed"):
                    engine.seed = first_variation + e
                core.reset()
                frames, pairs, pending = [obs.image], [], None
                hand = [sim.hand().tolist()] if record_hand else None
                for k in range(max_steps):
                    now = k * sim.cfg.control_dt
                    core.set_image(obs.image, now)
                    core.set_joints(JOINT_NAMES, obs.joints, now)
                    t0 = time.perf_counter()
                    r = core.tick(now)
                    lat.append(1e3 * (time.perf_counter() - t0))
                    if e == 0 and r.prediction is not None:     # imagined next frame of this inference tick
                        fut = r.prediction.future_latents
                        pending = decode(fut)[0] if decode is not None and fut.numel() else np.zeros(0)
                    obs = sim.step(r.positions[0] if r.positions is not None else obs.joints)
                    frames.append(obs.image)
                    if record_hand:
                        hand.append(sim.hand().tolist())
                    if pending is not None:
                        pairs.append((obs.image, pending))
                        pending = None
                    if obs.success:
                        break
                res.append({"variation": first_variation + e, "success": bool(obs.success), "steps": obs.step})
                if record_hand:
                    res[-1]["hand_path"] = hand
                if e == 0:
                    frames_by_task[task], imagined_by_task[task] = frames, pairs
                bar.update(1)
                bar.set_postfix(task=task, success=f"{sum(r['success'] for r in res)}/{len(res)}")
        per_task[task] = res
    bar.close()
    return per_task, lat, frames_by_task, imagined_by_task


def write_report(out: str, rows, frames, imagined, summary: dict) -> None:
    """report.html with the per-task table, GIFs and imagined.png (real above imagined)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    for task, fr in frames.items():
        imgs = [Image.fromarray(f).resize((128, 128), Image.NEAREST) for f in fr]
        imgs[0].save(os.path.join(out, f"{task}.gif"), save_all=True, append_images=imgs[1:], duration=100, loop=0)
    cols = max([len(p) for p in imagined.values()] + [1])
    cols = min(cols, 10)
    fig, ax = plt.subplots(2 * len(imagined), cols, figsize=(max(cols * 1.1, 6.0), 2.3 * len(imagined)), squeeze=False)
    for r, (task, pairs) in enumerate(imagined.items()):
        for c in range(cols):
            for k, row in enumerate((2 * r, 2 * r + 1)):
                a = ax[row, c]
                a.axis("off")
                if c < len(pairs) and pairs[c][k].size:
                    a.imshow(pairs[c][k])
            ax[2 * r, 0].set_title(f"{task}: real", fontsize=7, loc="left")
            ax[2 * r + 1, 0].set_title("imagined", fontsize=7, loc="left")
    fig.suptitle("first episode per task: the frame after each inference tick, real (top) vs imagined", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "imagined.png"), dpi=100)
    plt.close(fig)
    table = "".join(f"<tr><td>{r['task']}</td><td>{r['successes']}/{r['episodes']}</td><td>{r['mean_steps']:.1f}</td>"
                    f"<td><img src='{r['task']}.gif' width=128></td></tr>" for r in rows)
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write(f"<html><body><h2>kairos evaluate: {summary['artifact']}</h2><p>mean success "
                f"{100 * summary['mean_success']:.1f}%; control step latency p50 {summary['latency_p50_ms']:.1f} ms,"
                f" p99 {summary['latency_p99_ms']:.1f} ms</p><table border=1><tr><th>task</th><th>success</th>"
                f"<th>mean steps</th><th>first episode</th></tr>{table}</table><h3>real vs imagined</h3>"
                f"<img src='imagined.png'></body></html>")


def _strategy_words(args) -> str:
    """How the evaluation turned chunks into commands, for the summary line."""
    if args.strategy == "execute_then_replan":
        return f"replanning every {args.execution_horizon}"
    if args.strategy == "temporal_ensemble":
        return "a new chunk every step, overlapping chunks averaged"
    return args.strategy


def main(argv=None) -> int:
    from kairos_ros.core.act_core import STRATEGIES
    ap = argparse.ArgumentParser(prog="kairos evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--tasks", nargs="+", default=["button-press-topdown-v3"], help="tasks, or MT10")
    ap.add_argument("--episodes", type=int, default=20, help="held-out variations per task")
    ap.add_argument("--first-variation", type=int, default=10_000)
    ap.add_argument("--max-steps", type=int, default=None,
                    help="control steps per episode (default: 4 s at the artifact's control rate)")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnx", "tensorrt", "auto"),
                    help="onnx/tensorrt export a plain checkpoint first (cached)")
    ap.add_argument("--quantized", action="store_true", help="the artifact's int8/int4 graphs (onnx backend)")
    ap.add_argument("--strategy", default="execute_then_replan", choices=STRATEGIES,
                    help="how chunks become commands (the act node's `strategy` parameter)")
    ap.add_argument("--execution-horizon", type=int, default=4)
    ap.add_argument("--sampler-steps", type=int, default=None,
                    help="flow-matching steps per sampling tick (default: the artifact's own, which a distilled "
                         "student records, else 4)")
    ap.add_argument("--camera", default=None, help="Meta-World camera (the one the demonstrations were "
                    "collected with: kairos collect --camera; default: the one the artifact records, else corner2)")
    ap.add_argument("--keypoint-hold", choices=("on", "off"), default=None,
                    help="a world model with a keypoint net: hold each episode's surest goal readings "
                         "(default: as the artifact says)")
    ap.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance on the instruction (1: none)")
    ap.add_argument("--seed-per-scene", action="store_true",
                    help="seed a world model's sampling noise with each scene's number (default: the engine's fixed "
                         "seed at every episode start)")
    ap.add_argument("--report", default="runs/evaluate")
    args = ap.parse_args(argv)
    from kairos_sim.metaworld_sim import MT10
    tasks = MT10 if args.tasks == ["MT10"] else args.tasks
    args.camera = resolve_camera(args.artifact, args.camera)       # the report names the camera used
    if args.sampler_steps is None:
        from kairos_model.engine import artifact_sampler_steps
        args.sampler_steps = artifact_sampler_steps(args.artifact)
    if args.sampler_steps < 1:
        ap.error("--sampler-steps must be at least 1")
    per_task, lat, frames, imagined = evaluate(args.artifact, tasks, args.episodes, args.first_variation, args.max_steps,
                                     args.strategy, args.execution_horizon, args.sampler_steps, backend=args.backend,
                                     quantized=args.quantized, camera=args.camera,
                                     keypoint_hold=None if args.keypoint_hold is None else args.keypoint_hold == "on",
                                     cfg_scale=args.cfg_scale, seed_per_scene=args.seed_per_scene)
    rows = []
    for task, res in per_task.items():
        ok = sum(r["success"] for r in res)
        rows.append({"task": task, "successes": ok, "episodes": len(res), "success_rate": ok / len(res),
                     "mean_steps": float(np.mean([r["steps"] for r in res]))})
        print(f"{task:28s} success {ok}/{len(res)} ({100 * ok / len(res):.0f}%), mean episode "
              f"{rows[-1]['mean_steps']:.1f} steps")
    mean = float(np.mean([r["success_rate"] for r in rows]))
    # The run's first tick pays the engine's one-off start-up (lazy allocation, a graph's first run):
    # reported on its own, not inside p99, where a short evaluation would read it as a slow control step.
    first, steady = lat[0], (lat[1:] or lat)
    p50, p99 = float(np.percentile(steady, 50)), float(np.percentile(steady, 99))
    print(f"mean success {100 * mean:.1f}%; control step latency p50 {p50:.1f} ms, p99 {p99:.1f} ms "
          f"(ActCore.tick on this CPU, {args.sampler_steps} sampler steps, {_strategy_words(args)}; "
          f"the first tick, with the start-up, {first:.1f} ms)")
    summary = {"artifact": args.artifact, "tasks": rows, "mean_success": mean, "latency_p50_ms": p50,
               "latency_p99_ms": p99, "latency_first_tick_ms": float(first), "episodes": per_task,
               "args": vars(args)}
    write_report(args.report, rows, frames, imagined, summary)
    with open(os.path.join(args.report, "report.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"report: {args.report}/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())

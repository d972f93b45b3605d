"""Does another robot learn faster from the trained artifact than from nothing? (`new_embodiment`)

The "other robot" is the simulated Sawyer reporting only its first K joints under new names
(`arm_0` ... `arm_{K-1}`): as far as the data can tell, an arm the artifact never acted on. Its
scripted-expert demonstrations go the way a user's would: recorder bags -> `kairos dataset
from-bags` -> `kairos train` (stage III only). Two runs with the same data, steps, learning rate,
batch and seed:

- `artifact`: from the committed artifact with `new_embodiment: true` (everything but the joint
  layers kept: VAE, understanding encoder, video and action experts);
- `scratch`: a fresh model of the same preset, given the same VAE (`--vae-from`), so the two differ
  only in what the world model and the understanding encoder start from.

Both are scored by `kairos eval-bag` on held-out episodes (scenes 10000+ that no demonstration
used): the sampled action chunk against the joint states that followed, streamed frame by frame
through the engine with its memory. The same on the training steps' loss curves.

    python -m training.experiments.new_embodiment --task drawer-close-v3 --demos 10 --steps 300 \
        --plot docs/figures/new_embodiment/drawer_close.png

With --same-robot the robot is the Sawyer under its own joint names, so the question becomes a new
task on the same robot (the user who records a few demonstrations of their own task): the `artifact`
run is a plain fine-tune (`init_from`, every weight kept; `renormalize: true`, the joint
normalisation from the new task's data, whose range of motion differs), and both runs
are also scored closed loop in the simulator (`kairos evaluate`, held-out scenes, noise seeded per
scene):

    python -m training.experiments.new_embodiment --same-robot --task door-open-v3 --out runs/new_task

A rerun with the same --out reuses what is there (bags, dataset, trained runs, evaluations).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import yaml

S = 1_000_000_000


def record_episodes(root: str, task: str, variations, names=None) -> list:
    """Expert episodes of `task` as the recorder writes them (rosbag2 mcap), the robot reporting the
    first len(names) joints of the Sawyer under `names` (None: all of them, under their own names).
    Returns the episode directories."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image, JointState

    from kairos_ros.core.recorder import EpisodeRecorder, RecorderConfig
    from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig, rollout_expert
    names = JOINT_NAMES if names is None else names
    rec = EpisodeRecorder(RecorderConfig(output_dir=root, min_free_mb=0))
    with MetaWorldSim(SimConfig(task=task)) as sim:
        for v in variations:
            frames, joints, _, ok = rollout_expert(sim, v)
            rec.start_episode(task=sim.instruction)
            for i, (f, q) in enumerate(zip(frames, joints)):
                t = S + i * S // 10
                h, w = f.shape[:2]
                rec.write("/camera/image_raw", "sensor_msgs/msg/Image", t, serialize_message(
                    Image(height=h, width=w, encoding="rgb8", step=3 * w, data=f.tobytes())))
                rec.write("/joint_states", "sensor_msgs/msg/JointState", t, serialize_message(
                    JointState(name=list(names), position=[float(x) for x in q[:len(names)]])))
            rec.end_episode(success=ok)
    return sorted(os.path.join(root, p) for p in os.listdir(root) if p.startswith("episode_"))


def kairos(*args) -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "kairos")
    r = subprocess.run([exe, *args], text=True, stdout=subprocess.PIPE, stderr=None)
    if r.returncode:
        raise SystemExit(f"kairos {' '.join(args[:2])} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return r.stdout


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", default="artifacts/tiny_button_press_v1")
    ap.add_argument("--task", default="drawer-close-v3")
    ap.add_argument("--joints", type=int, default=7, help="K: how many of the Sawyer's joints the new robot reports")
    ap.add_argument("--demos", type=int, default=10)
    ap.add_argument("--heldout", type=int, default=10)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/new_embodiment")
    ap.add_argument("--plot", default=None, help="a PNG of both runs' loss curves and held-out error per horizon step")
    ap.add_argument("--same-robot", action="store_true",
                    help="the Sawyer under its own joint names: a new task on the same robot, fine-tuned from the "
                         "artifact as is (no new_embodiment), and scored closed loop in the simulator too")
    ap.add_argument("--closed-loop", type=int, default=20,
                    help="with --same-robot: held-out scenes per run for `kairos evaluate` (0: none)")
    a = ap.parse_args(argv)
    if a.same_robot:
        from kairos_sim.metaworld_sim import JOINT_NAMES
        names = list(JOINT_NAMES)
    else:
        names = [f"arm_{i}" for i in range(a.joints)]
    os.makedirs(a.out, exist_ok=True)
    train_root, held_root = os.path.join(a.out, "bags_train"), os.path.join(a.out, "bags_heldout")
    if not os.path.isdir(train_root):
        record_episodes(train_root, a.task, range(a.demos), names)
    if not os.path.isdir(held_root):
        record_episodes(held_root, a.task, range(10000, 10000 + a.heldout), names)
    train_bags = sorted(os.path.join(train_root, p) for p in os.listdir(train_root) if p.startswith("episode_"))
    held_bags = sorted(os.path.join(held_root, p) for p in os.listdir(held_root) if p.startswith("episode_"))
    ds = os.path.join(a.out, "ds")
    if not os.path.isdir(ds):
        kairos("dataset", "from-bags", *train_bags, "--out", ds, "--joints", *names)
    stage = {"name": "III", "objective": "video+action", "steps": a.steps, "lr": a.lr, "batch": a.batch,
             "frames": [12], "warmup": 20, "sources": [{"kind": "lerobot", "path": ds, "actions": True}]}
    common = {"joint_names": names, "seed": a.seed, "ema_decay": 0.99, "checkpoint_every": max(a.steps, 1),
              "eval_episodes": 0, "stages": [stage]}
    # a new task moves the joints through other ranges than the artifact's, so its normalisation comes
    # from the new data either way (the trainer warns when a kept one does not fit)
    start = {"init_from": a.artifact, "renormalize": True} if a.same_robot else \
        {"init_from": a.artifact, "new_embodiment": True}
    runs = {
        "artifact": ({"name": "new_embodiment_artifact", **start, **common}, []),
        "scratch": ({"name": "new_embodiment_scratch", "preset": "tiny",
                     "model": {"action_dim": len(names), "proprio_dim": len(names)}, **common}, ["--vae-from", a.artifact]),
    }
    results, curves = {}, {}
    for name, (recipe, extra) in runs.items():
        run_dir = os.path.join(a.out, name)
        path = os.path.join(a.out, f"{name}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({**recipe, "out": run_dir}, f)
        if not os.path.isfile(os.path.join(run_dir, "artifact", "config.json")):
            kairos("train", path, *extra)
        report = os.path.join(a.out, f"{name}_eval")
        if not os.path.isfile(os.path.join(report, "report.json")):      # a rerun reuses a finished evaluation
            kairos("eval-bag", *held_bags, "--artifact", os.path.join(run_dir, "artifact"), "--backend", "torch",
                   "--report", report)
        with open(os.path.join(report, "report.json")) as f:
            per_bag = json.load(f)
        with open(os.path.join(run_dir, "III", "losses.json")) as f:
            losses = json.load(f)
        with open(os.path.join(run_dir, "metrics.json")) as f:
            seconds = json.load(f)["stages"]["III"]["seconds"]
        k = max(1, len(losses) // 10)
        curves[name] = losses
        loop = {}
        if a.same_robot and a.closed_loop:
            loop_dir = os.path.join(a.out, f"{name}_closed_loop")
            if not os.path.isfile(os.path.join(loop_dir, "report.json")):
                kairos("evaluate", "--artifact", os.path.join(run_dir, "artifact"), "--tasks", a.task,
                       "--episodes", str(a.closed_loop), "--seed-per-scene", "--report", loop_dir)
            with open(os.path.join(loop_dir, "report.json")) as f:
                eps = [e for task_eps in json.load(f)["episodes"].values() for e in task_eps]
            loop = {"closed_loop_successes": sum(bool(e["success"]) for e in eps), "closed_loop_episodes": len(eps),
                    "closed_loop_mean_steps": float(np.mean([e["steps"] for e in eps]))}
        results[name] = {
            "heldout_action_mae_rad": float(np.mean([b["action_mae_rad"] for b in per_bag])),
            "heldout_action_mae_per_step": np.mean([b["action_mae_per_step"] for b in per_bag], axis=0).tolist(),
            "heldout_future_psnr_db": float(np.mean([b["future_psnr_db_per_step"][0] for b in per_bag])),
            "loss_first_tenth": float(np.mean(losses[:k])), "loss_last_tenth": float(np.mean(losses[-k:])),
            "train_seconds": seconds, **loop,
        }
    out = {"task": a.task, "same_robot": a.same_robot, "joints": names, "demos": a.demos, "heldout_scenes": a.heldout, "steps": a.steps,
           "lr": a.lr, "batch": a.batch, "seed": a.seed, "artifact": a.artifact, "runs": results}
    with open(os.path.join(a.out, "new_embodiment.json"), "w") as f:
        json.dump(out, f, indent=1)
    if a.plot:
        plot(a, results, curves)
    print(f"{a.task}, {len(names)} joints, {a.demos} demonstrations, {a.steps} steps; {a.heldout} held-out scenes:")
    for name, r in results.items():
        print(f"  {name:9s} action error {r['heldout_action_mae_rad']:.4f} rad, next-frame PSNR "
              f"{r['heldout_future_psnr_db']:.2f} dB, loss {r['loss_first_tenth']:.3f} -> {r['loss_last_tenth']:.3f}"
              + (f", closed loop {r['closed_loop_successes']}/{r['closed_loop_episodes']} in "
                 f"{r['closed_loop_mean_steps']:.1f} steps" if "closed_loop_successes" in r else ""))
    return out


def plot(a, results: dict, curves: dict) -> None:
    """Left: each run's training loss (a running mean of 20 steps); right: its held-out action error
    per step of the action chunk."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (l, r) = plt.subplots(1, 2, figsize=(9, 3.2))
    label = {"artifact": "from the artifact" + ("" if a.same_robot else " (new_embodiment)"),
             "scratch": "from nothing (same VAE)"}
    for name, losses in curves.items():
        x = np.asarray(losses, dtype=float)
        w = min(20, len(x))
        l.plot(np.arange(w, len(x) + 1), np.convolve(x, np.ones(w) / w, mode="valid"), label=label[name])
        per = results[name]["heldout_action_mae_per_step"]
        r.plot(np.arange(1, len(per) + 1), per, marker="o", label=f"{label[name]}: {results[name]['heldout_action_mae_rad']:.4f} rad")
    robot = "the same robot" if a.same_robot else f"{a.joints} new joints"
    l.set(xlabel="training step", ylabel="loss (video + action)", yscale="log", title=f"{a.task}, {a.demos} demos, {robot}")
    r.set(xlabel="step of the action chunk", ylabel="action error (rad)", ylim=(0, None),
          title=f"{a.heldout} held-out episodes (eval-bag)")
    l.legend(fontsize=8); r.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.plot)), exist_ok=True)
    fig.savefig(a.plot, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""Can the goal markers be found at the pixel level? Trains a keypoint net (training.perception) on
labelled frames (LeRobot datasets with observation.environment_state, e.g. `kairos collect
--snapshots` scenes and demonstrations) and measures on held-out frames, per task: the pixel error of
the heatmap peak, the 3D error after lifting it at the height read there, and the 3D error of
answering each task's training mean (a reader that found nothing).

    python -m training.experiments.goal_pixels --train runs/mt10_ws/scenes runs/mt10_ws/demos \\
        --heldout runs/est/first_frames_fixed2 --camera workspace --minutes 20 \\
        --out runs/keypoints_ws --report docs/figures/mt10/perception/goal_pixels.json

The artifact in --out is a KeypointEstimator (privileged_bc --estimator takes it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List

import numpy as np


def load_frames(roots: List[str], max_per_episode: int = 0, skip_first: bool = False):
    """Frames [N, S, S, 3] uint8, task names [N], env_state [N, 6] of every dataset in roots; with
    max_per_episode, at most that many frames (evenly spaced) of each episode; skip_first leaves out
    each trajectory's first frame (datasets recorded before the simulator's first-frame fix of
    2026-11-27 drew the goal there at a stale place)."""
    from training.data.lerobot import LeRobotDataset
    from training.perception import task_of
    frames, tasks, env = [], [], []
    for root in roots:
        ds = LeRobotDataset(root)
        if ds.env_state_names is None:
            raise ValueError(f"{root} records no observation.environment_state: its frames have no labels")
        for e in ds:
            idx = np.arange(int(skip_first and not ds.snapshots), len(e.env_state))
            if max_per_episode and len(idx) > max_per_episode:
                idx = idx[np.linspace(0, len(idx) - 1, max_per_episode).round().astype(int)]
            frames.append(e.frames[ds.camera_key][idx])
            env.append(e.env_state[idx])
            tasks += [task_of(e.task)] * len(idx)
    return np.concatenate(frames), tasks, np.concatenate(env).astype(np.float64)


def evaluate(est, frames, tasks, env, train_env, train_tasks) -> Dict[str, Dict[str, float]]:
    """Per task: pixel and 3D errors of each point (object, goal), and the training mean's 3D error."""
    from training.perception import POINTS
    out = {}
    tasks, train_tasks = np.asarray(tasks), np.asarray(train_tasks)
    for t in sorted(set(tasks)):
        m = tasks == t
        px, _ = est.pixels(frames[m], t)
        true_px = est.camera.project(env[m].reshape(-1, 3)).reshape(-1, len(POINTS), 2)
        pos = est.positions(frames[m], t).reshape(-1, len(POINTS), 3)
        true = env[m].reshape(-1, len(POINTS), 3)
        mean = train_env[train_tasks == t].reshape(-1, len(POINTS), 3).mean(0)
        row = {}
        for k, p in enumerate(POINTS):
            row[f"{p}_px"] = float(np.linalg.norm(px[:, k] - true_px[:, k], axis=1).mean())
            row[f"{p}_cm"] = 100 * float(np.linalg.norm(pos[:, k] - true[:, k], axis=1).mean())
            row[f"{p}_xy_cm"] = 100 * float(np.linalg.norm(pos[:, k, :2] - true[:, k, :2], axis=1).mean())
            row[f"{p}_z_cm"] = 100 * float(np.abs(pos[:, k, 2] - true[:, k, 2]).mean())
            row[f"{p}_mean_cm"] = 100 * float(np.linalg.norm(mean[k] - true[:, k], axis=1).mean())
        out[t] = {k: round(v, 2) for k, v in row.items()}
    return out


def fingerprint(frames_nhwc: np.ndarray, tasks, env_n6: np.ndarray, weights_file: str) -> dict:
    """What a rerun must match to give the same net bit for bit: sha256 of the training frames, task
    names and labels (so a rerun can tell different data from different arithmetic), of the saved
    weights, and the arithmetic's setting: torch's thread count, the CPU, torch and numpy versions.
    Training is bit-reproducible for a seed on one such setting (test/training/test_perception.py);
    another thread count or CPU changes float reductions, and over thousands of steps the net."""
    import hashlib
    from kairos_model.checkpoint import sha256_file
    from training.provenance import arithmetic
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(frames_nhwc).tobytes())
    h.update("\n".join(tasks).encode())
    h.update(np.ascontiguousarray(env_n6, dtype=np.float64).tobytes())
    return {"data_sha256": h.hexdigest(), "weights_sha256": sha256_file(weights_file), **arithmetic()}


def main(argv=None) -> int:
    from kairos_sim.metaworld_sim import MT10, MetaWorldSim, SimConfig
    from training.perception import KeypointConfig, KeypointEstimator, save_keypoints, train_keypoints
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="+", required=True, help="labelled LeRobot datasets")
    ap.add_argument("--heldout", nargs="+", required=True, help="held-out labelled datasets")
    ap.add_argument("--camera", required=True, help="the camera the datasets were recorded with")
    ap.add_argument("--tasks", nargs="+", default=MT10)
    ap.add_argument("--max-per-episode", type=int, default=0, help="frames kept per training episode (0: all)")
    ap.add_argument("--skip-first-frame", action="store_true",
                    help="leave out each training trajectory's first frame (recorded before the 2026-11-27 fix)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="where the keypoint artifact goes")
    ap.add_argument("--report")
    a = ap.parse_args(argv)
    frames, tasks, env = load_frames(a.train, a.max_per_episode, a.skip_first_frame)
    keep = np.isin(tasks, a.tasks)
    frames, env, tasks = frames[keep], env[keep], [t for t, k in zip(tasks, keep) if k]
    hf, ht, he = load_frames(a.heldout)
    keep = np.isin(ht, a.tasks)
    hf, he, ht = hf[keep], he[keep], [t for t, k in zip(ht, keep) if k]
    size = frames.shape[1]
    with MetaWorldSim(SimConfig(task=tasks[0], camera=a.camera, image_size=size)) as sim:
        cam = sim.camera_model()     # the camera does not move between tasks or scenes
    print(f"{len(frames)} training frames, {len(hf)} held-out, {len(set(tasks))} tasks, camera {a.camera}")
    cfg = KeypointConfig(tasks=sorted(set(tasks)), image_size=size, width=a.width, minutes=a.minutes,
                         max_steps=a.max_steps, batch=a.batch, seed=a.seed)
    res = train_keypoints(frames, tasks, env, cam, cfg)
    save_keypoints(a.out, res["net"], cam, {"camera_name": a.camera, "train": a.train, "steps": res["steps"]})
    est = KeypointEstimator(a.out)
    sub = np.random.default_rng(0).choice(len(frames), min(len(frames), 2000), replace=False)
    report = {"train": a.train, "heldout": a.heldout, "camera": a.camera, "frames": len(frames),
              "fingerprint": fingerprint(frames, tasks, env, os.path.join(a.out, "keypoints.safetensors")),
              "steps": res["steps"], "minutes": round(res["seconds"] / 60, 1),
              "final_loss": float(np.mean([l for _, l in res["log"][-50:]])),
              "heldout_errors": evaluate(est, hf, ht, he, env, tasks),
              "train_errors": evaluate(est, frames[sub], [tasks[i] for i in sub], env[sub], env, tasks)}
    print(f"{res['steps']} steps in {report['minutes']} min, final loss {report['final_loss']:.3f}")
    fp = report["fingerprint"]
    print(f"data sha256 {fp['data_sha256'][:16]}, weights sha256 {fp['weights_sha256'][:16]} "
          f"({fp['torch_threads']} torch threads, {fp['cpu']})")
    print(f"{'held out':24s} {'obj px':>7s} {'obj cm':>7s} {'mean cm':>7s} {'goal px':>7s} {'goal cm':>7s} "
          f"{'xy cm':>6s} {'z cm':>6s} {'mean cm':>7s}")
    for t, r in report["heldout_errors"].items():
        print(f"{t:24s} {r['object_px']:7.2f} {r['object_cm']:7.2f} {r['object_mean_cm']:7.2f} {r['goal_px']:7.2f} "
              f"{r['goal_cm']:7.2f} {r['goal_xy_cm']:6.2f} {r['goal_z_cm']:6.2f} {r['goal_mean_cm']:7.2f}")
    if a.report:
        os.makedirs(os.path.dirname(os.path.abspath(a.report)), exist_ok=True)
        with open(a.report, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

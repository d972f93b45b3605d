"""`kairos eval-bag BAG... --artifact DIR`: offline evaluation on recorded data, before a model
touches the robot. Each bag (a recorder episode or any rosbag2 bag, mcap or sqlite3) is resampled
to the control rate (training/data/bags.py), then streamed through the deployed engine frame by
frame, faster than real time, the memory carrying across the whole bag. At every tick the predicted
action chunk is compared with the joint states that really followed (per joint, per horizon step),
and the imagined future frames with the frames that really came (PSNR and SSIM per horizon).
Writes report.json, plots and report.html (with real vs imagined strips and a GIF) to --report.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from kairos_ros.core.image import psnr_u8


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 [H, W, 3] images (Gaussian window 7, sigma 1.5; Wang et al. 2004)."""
    import torch.nn.functional as F
    x = torch.from_numpy(a).permute(2, 0, 1).float().unsqueeze(0) / 255
    y = torch.from_numpy(b).permute(2, 0, 1).float().unsqueeze(0) / 255
    g = torch.exp(-((torch.arange(7) - 3.0) ** 2) / (2 * 1.5 ** 2))
    w = (g[:, None] * g[None]) / g.sum() ** 2
    w = w.expand(3, 1, 7, 7)
    f = lambda z: F.conv2d(z, w, groups=3)  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def evaluate_bag(path: str, loaded, instruction: str = "", progress: bool = True, rate_hz: float = 10.0,
                 **kw) -> dict:
    """Stream one bag through the engine; throughput is ticks (frames at the control rate) per wall
    second, and bag seconds per wall second (above 1: faster than real time), decoding included."""
    from kairos_model.engine import Observation
    from training.data.bags import episode_from_bag
    eng = loaded.engine
    wall0 = time.perf_counter()
    ep = episode_from_bag(path, loaded.joint_names, rate_hz=rate_hz, image_size=eng.image_size[0], **kw)
    frames, states = ep.frames["observation.images.cam"], ep.state.astype(np.float64)
    T, J = states.shape
    H, Fh = eng.cfg.action_horizon, eng.cfg.future_frames
    task = instruction or ep.task or (loaded.meta.get("instructions") or [""])[0]
    eng.reset()
    err = np.full((T, H, J), np.nan)
    fpsnr, fssim = np.full((T, Fh), np.nan), np.full((T, Fh), np.nan)
    lat, strip = [], []
    for t in tqdm(range(T), desc=os.path.basename(path.rstrip("/")), disable=not progress, leave=False):
        t0 = time.perf_counter()
        pred = eng.step(Observation(frames[t], states[t], task))
        lat.append(1e3 * (time.perf_counter() - t0))
        n = min(H, T - 1 - t)
        if n > 0:
            err[t, :n] = np.abs(pred.actions[:n] - states[t + 1:t + 1 + n])
        imagined = eng.decode_future(pred.future_latents)
        for f in range(min(Fh, T - 1 - t)):
            fpsnr[t, f] = psnr_u8(imagined[f], frames[t + 1 + f])
            fssim[t, f] = ssim(imagined[f], frames[t + 1 + f])
        if t + 1 < T:
            strip.append((frames[t + 1], imagined[0]))
    wall = time.perf_counter() - wall0
    return {"bag": path, "task": task, "ticks": T, "sampler_steps": int(eng.sampler_steps), "wall_s": wall,
            "ticks_per_s": T / wall,
            "bag_s_per_wall_s": T / rate_hz / wall, "action_mae_rad": float(np.nanmean(err)),
            "action_mae_per_step": np.nanmean(err, axis=(0, 2)).tolist(),
            "action_mae_per_joint": dict(zip(loaded.joint_names, np.nanmean(err, axis=(0, 1)).tolist())),
            "hold_baseline_mae_rad": float(np.nanmean(np.abs(states[1:] - states[:-1]))),
            "future_psnr_db_per_step": np.nanmean(fpsnr, axis=0).tolist(),
            "future_ssim_per_step": np.nanmean(fssim, axis=0).tolist(),
            "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p99_ms": float(np.percentile(lat, 99)),
            "_strip": strip}


def write_report(out: str, results: list) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.2))
    for r in results:
        name = os.path.basename(r["bag"].rstrip("/"))
        ax[0].plot(range(1, len(r["action_mae_per_step"]) + 1), r["action_mae_per_step"], marker="o", label=name)
        ax[1].bar(list(r["action_mae_per_joint"]), list(r["action_mae_per_joint"].values()), alpha=0.5)
        ax[2].plot(range(1, len(r["future_psnr_db_per_step"]) + 1), r["future_psnr_db_per_step"], marker="o")
    ax[0].set(xlabel="horizon step", ylabel="|action - recorded| (rad)", title="action error per step")
    ax[1].set(ylabel="rad", title="action error per joint")
    ax[1].tick_params(axis="x", rotation=60, labelsize=6)
    ax[2].set(xlabel="future frame", ylabel="PSNR (dB)", title="imagined vs real frames")
    ax[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "metrics.png"), dpi=100)
    plt.close(fig)
    rows = []
    for i, r in enumerate(results):
        strip = r.pop("_strip")
        pairs = [np.concatenate([a, b], axis=0) for a, b in strip]          # real above imagined
        if pairs:
            imgs = [Image.fromarray(p).resize((p.shape[1] * 2, p.shape[0] * 2), Image.NEAREST) for p in pairs]
            imgs[0].save(os.path.join(out, f"bag_{i:02d}.gif"), save_all=True, append_images=imgs[1:], duration=100, loop=0)
            idx = np.linspace(0, len(pairs) - 1, min(8, len(pairs))).round().astype(int)
            Image.fromarray(np.concatenate([pairs[k] for k in idx], axis=1)).save(os.path.join(out, f"bag_{i:02d}_strip.png"))
        rows.append(f"<h3>{r['bag']}</h3><p>action error {r['action_mae_rad']:.4f} rad (holding still: "
                    f"{r['hold_baseline_mae_rad']:.4f}); future PSNR {', '.join(f'{x:.1f}' for x in r['future_psnr_db_per_step'])}"
                    f" dB; latency p50 {r['latency_p50_ms']:.1f} ms</p><p>real (top) vs imagined next frame (bottom):"
                    f"</p><img src='bag_{i:02d}_strip.png'> <img src='bag_{i:02d}.gif'>")
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write("<html><body><h2>kairos eval-bag</h2><img src='metrics.png'>" + "".join(rows) + "</body></html>")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos eval-bag", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bags", nargs="+", help="recorder episode directories or rosbag2 bag directories")
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--camera-topic")
    ap.add_argument("--joints-topic")
    ap.add_argument("--instruction", default="", help="overrides the recorded task text")
    ap.add_argument("--sampler-steps", type=int, default=None,
                    help="default: the artifact's own (a distilled student's step count, else 4)")
    ap.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx", "tensorrt"),
                    help="auto: an exported artifact's default backend, torch for a plain checkpoint")
    ap.add_argument("--report", default="runs/eval_bag")
    args = ap.parse_args(argv)
    from kairos_model.engine import artifact_sampler_steps, load_engine
    if args.sampler_steps is None:
        args.sampler_steps = artifact_sampler_steps(args.artifact)
    if args.sampler_steps < 1:
        ap.error("--sampler-steps must be at least 1")
    artifact = args.artifact
    if args.backend in ("onnx", "tensorrt"):        # a plain checkpoint is exported once, as the act node does
        from training.export import ensure_exported
        artifact = ensure_exported(artifact)
    loaded = load_engine(artifact, sampler_steps=args.sampler_steps, backend=args.backend)
    if not loaded.joint_names:
        print("kairos eval-bag: the artifact names no joints (meta.joint_names); cannot map the bag's", file=sys.stderr)
        return 2
    results = []
    for b in args.bags:
        r = evaluate_bag(b, loaded, args.instruction, camera_topic=args.camera_topic, joints_topic=args.joints_topic)
        print(f"{b}: {r['ticks']} ticks, action error {r['action_mae_rad']:.4f} rad (holding still "
              f"{r['hold_baseline_mae_rad']:.4f}), future PSNR per step "
              f"{[round(x, 1) for x in r['future_psnr_db_per_step']]} dB, SSIM "
              f"{[round(x, 3) for x in r['future_ssim_per_step']]}, latency p50 {r['latency_p50_ms']:.1f} ms; "
              f"{r['ticks_per_s']:.1f} frames/s = {r['bag_s_per_wall_s']:.2f}x real time")
        results.append(r)
    write_report(args.report, results)
    print(f"report: {args.report}/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())

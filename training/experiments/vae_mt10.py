"""What each artifact's VAE keeps of a robot camera frame: one held-out scene per MT10 task (variation
10000, after a few expert steps so the arm is in view), each frame encoded and decoded alone, as the
deployed engine does, with its PSNR. The VAE bounds what the world model sees and imagines: an object
the VAE blurs away is one the policy cannot find.

    python -m training.experiments.vae_mt10 --artifacts artifacts/tiny_button_press runs/stage1_sharp/artifact \\
        --out docs/figures/vae/vae_mt10.png
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch


def mt10_frames(variation: int = 10_000, expert_steps: int = 6) -> tuple:
    """-> (tasks, frames uint8 [10, S, S, 3]) from the simulator's camera."""
    from kairos_sim.metaworld_sim import MT10, MetaWorldSim, SimConfig
    frames = []
    for task in MT10:
        with MetaWorldSim(SimConfig(task=task)) as sim:
            sim.reset(variation)
            policy = sim.expert_policy()
            for _ in range(expert_steps):
                sim.expert_step(policy)
            frames.append(sim.render())
    return list(MT10), np.stack(frames)


def reconstruct(artifact: str, frames_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> reconstructions [N, 3, S, S] in [0, 1], each frame alone through the VAE."""
    from kairos_model.checkpoint import load_checkpoint
    _, parts = load_checkpoint(artifact, require=("vae",))
    vae = parts["vae"].eval()
    x = torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float().div(255).unsqueeze(1)   # [N, 1, 3, S, S]
    with torch.no_grad():
        mu, _ = vae.encode(x)
        return vae.decode(mu)[:, 0].clamp(0, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", nargs="+", required=True, help="artifacts whose VAEs to compare")
    ap.add_argument("--variation", type=int, default=10_000, help="the scene of every task (held out: >= 10000)")
    ap.add_argument("--out", required=True, help="PNG path; a .json with the PSNRs is written beside it")
    a = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kairos_model.vae import psnr

    tasks, frames = mt10_frames(a.variation)
    truth = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
    rows = [("camera frame", truth, None)]
    report = {"variation": a.variation, "tasks": tasks, "artifacts": {}}
    for art in a.artifacts:
        rec = reconstruct(art, frames)
        per_task = [psnr(rec[i:i + 1], truth[i:i + 1]) for i in range(len(tasks))]
        report["artifacts"][art] = {"psnr_db": psnr(rec, truth), "per_task_psnr_db": dict(zip(tasks, per_task))}
        rows.append((art, rec, per_task))
        print(f"{art}: {psnr(rec, truth):.2f} dB  " + " ".join(f"{t}:{p:.1f}" for t, p in zip(tasks, per_task)))
    fig, axes = plt.subplots(len(rows), len(tasks), figsize=(1.9 * len(tasks), 2.2 * len(rows)))
    for r, (name, imgs, per_task) in enumerate(rows):
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            ax.imshow(imgs[c].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            title = (task.replace("-v3", "") + "\n") if r == 0 else ""
            if per_task is not None:
                title += f"{per_task[c]:.1f} dB"
            ax.set_title(title, fontsize=7)
        label = name if per_task is None else f"{name}\n{report['artifacts'][name]['psnr_db']:.1f} dB"
        axes[r, 0].set_ylabel(label, fontsize=6)
    fig.suptitle(f"each MT10 task's camera frame (held-out scene {a.variation}) and its VAE reconstruction",
                 fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out, dpi=110)
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

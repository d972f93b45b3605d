"""Stage I as pictures: held-out synthetic physics clips, the last context frame, the true next frame,
the world model's predicted next frame (a sample, and its conditional mean: one step from noise) and
copy-last through the VAE, one row per clip, with each
row's PSNR against the true frame (the same clips and sampler as the trainer's stage I metric).

    python -m training.experiments.stage1_frames --artifact runs/stage1_sharp/artifact \\
        --out docs/figures/stage1/stage1_sharp.png
"""
from __future__ import annotations

import argparse
import json
import os

import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True, help="a run's artifact/ (kairos train)")
    ap.add_argument("--rows", type=int, default=6, help="clips shown (of the 16 evaluated)")
    ap.add_argument("--out", required=True, help="PNG path; a .json with the metrics is written beside it")
    a = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kairos_model.checkpoint import load_checkpoint
    from kairos_model.vae import psnr
    from training.trainer import WorldModelTrainable, eval_next_frame

    _, parts = load_checkpoint(a.artifact)
    with open(os.path.join(a.artifact, "config.json")) as f:
        meta = json.load(f)["meta"]
    tr = WorldModelTrainable(parts, parts["vae"].eval(), meta["latent_scale"]).eval()
    frames: dict = {}
    with torch.no_grad():
        metrics = eval_next_frame(tr, 64, frames_out=frames)
    cols = [("last context frame", "last"), ("true next frame", "target"), ("predicted (sample)", "predicted"),
            ("predicted (mean)", "predicted_mean"), ("last frame via the VAE", "last_via_vae")]
    fig, axes = plt.subplots(a.rows, len(cols), figsize=(2.2 * len(cols), 2.3 * a.rows))
    for r in range(a.rows):
        for c, (title, key) in enumerate(cols):
            img = frames[key][r].clamp(0, 1).permute(1, 2, 0).numpy()
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            label = title if r == 0 else ""
            if key != "target":
                label += f"\n{psnr(frames[key][r:r + 1], frames['target'][r:r + 1]):.1f} dB"
            ax.set_title(label, fontsize=8)
    fig.suptitle(f"stage I, held-out physics: predicted {metrics['next_frame_psnr_db']:.2f} dB (sample), "
                 f"{metrics['next_frame_mean_psnr_db']:.2f} dB (mean) vs copy-last "
                 f"{metrics['copy_last_psnr_db']:.2f} dB (16 clips)", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out, dpi=110)
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump({"artifact": a.artifact, **metrics}, f, indent=1)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()

"""The VAE on a wall-clock budget: how sharp does the tiny VAE get in N minutes of this CPU, per
learning rate, batch and width? Held-out metric: PSNR of the reconstruction of 16 held-out synthetic
physics frames (the frames stage I's metric predicts: its "VAE ceiling"). Trained per frame on the
VAE sources of a recipe (synthetic physics + expert video, collected on first use) by the trainer's
own loop (`train_loop` with a time budget: warm-up, cosine decay over the budget, EMA weights, which
are evaluated).

    python -m training.experiments.vae_budget --minutes 5 --lr 2e-3 --batch 4 --threads 1 --name b4
    python -m training.experiments.vae_budget --minutes 5 --base-channels 32 --max-channels 128 --name wide
    python -m training.experiments.vae_budget --minutes 5 --crop 32 --batch 4 --lr 2e-3 --name crop32 --save runs/vae_crop32
    python -m training.experiments.vae_budget --minutes 100 --max-steps 4500 --crop 32 --batch 4 --lr 2e-3 \
        --vae-preset tiny_shortcut --seed 4 --name tiny_shortcut_4500_s4   # the VAE of tiny_shortcut.yaml

--crop trains on random 32 px windows of the 64 px frames (vae.crop in a recipe) and still scores on
whole frames; --save keeps the VAE for `kairos train --vae-from`; colour_cast_share is the part of the
held-out squared error that is each image's colour cast (its mean error per channel). Measured: docs/results/curriculum.md,
"A sharp VAE in five minutes".
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import torch


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="training/recipes/tiny.yaml", help="whose VAE sources to train on")
    ap.add_argument("--data-out", default="runs/vae_budget", help="where the recipe's sources are collected")
    ap.add_argument("--name", default="run")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=8, help="5-frame clips per step (each frame encoded alone)")
    ap.add_argument("--base-channels", type=int, default=16)
    ap.add_argument("--max-channels", type=int, default=64)
    ap.add_argument("--vae-preset", default=None, help="a VAE preset other than the recipe's (e.g. tiny_shortcut)")
    ap.add_argument("--crop", type=int, default=None, help="train on random crop x crop windows (VAE.crop)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="the VAE's initialisation and the order of its training data")
    ap.add_argument("--save", help="write the trained (EMA) VAE to SAVE/vae.safetensors (for kairos train --vae-from)")
    ap.add_argument("--max-steps", type=int, default=100_000,
                    help="an upper bound for the progress bar; the time budget ends the run long before")
    a = ap.parse_args(argv)
    from kairos_model.vae import VAE_PRESETS, VideoVAE, psnr
    from training.data.sources import Mixture
    from training.data.synthetic_physics import PhysicsVideoConfig, SyntheticPhysicsVideo
    from training.recipe import load_recipe
    from training.trainer import Dist, Normalization, build_source, model_config, train_loop, vae_loss_fn

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    recipe = load_recipe(a.recipe, {"out": a.data_out})
    D, cfg = Dist(), model_config(recipe)
    J = cfg.proprio_dim
    norm = Normalization(np.zeros(J), np.ones(J), np.zeros(cfg.action_dim), np.ones(cfg.action_dim))
    srcs = [build_source(s, recipe, cfg, 64, norm, D, {}) for s in recipe.vae.sources]
    mix = Mixture(srcs, [s.weight for s in recipe.vae.sources])
    vc_name = a.vae_preset or cfg.vae
    vae = VideoVAE(replace(VAE_PRESETS[vc_name], base_channels=a.base_channels, max_channels=a.max_channels))
    ckpt = os.path.join(a.data_out, f"vae_budget_{a.name}")
    shutil.rmtree(ckpt, ignore_errors=True)                 # a fresh run, not a resumed one
    res = train_loop(f"vae {a.name}", vae, vae_loss_fn(vae, mix, a.batch, True, a.seed, D, a.crop), a.max_steps, a.lr,
                     50, ckpt, D, ema_decay=recipe.ema_decay, checkpoint_every=10 ** 9,
                     samples_per_step=a.batch, max_seconds=a.minutes * 60)
    vae.load_state_dict(res["ema"])
    vae.eval()
    if a.save:                                                # a VAE folder `kairos train --vae-from` takes
        from safetensors.torch import save_file
        os.makedirs(a.save, exist_ok=True)
        save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, os.path.join(a.save, "vae.safetensors"))
    held, _ = SyntheticPhysicsVideo(PhysicsVideoConfig(size=64, frames=7), seed=999, length=16).batch(list(range(16)))
    held = held[:, 6:7]                                       # [16, 1, 3, 64, 64]: stage I's target frames
    with torch.no_grad():
        mu, _ = vae.encode(held)
        rec = vae.decode(mu)[:, 0].clamp(0, 1)
        value = psnr(rec, held[:, 0])
    err = rec - held[:, 0]                                    # the share of the error that is each image's
    cast = err.mean(dim=(-1, -2), keepdim=True)               # colour cast (its per-channel mean error)
    out = {"name": a.name, "seed": a.seed, "minutes": a.minutes, "threads": a.threads, "lr": a.lr, "batch": a.batch,
           "vae_preset": vc_name, "base_channels": a.base_channels, "max_channels": a.max_channels, "crop": a.crop,
           "parameters": sum(p.numel() for p in vae.parameters()), "steps": res["steps"],
           "heldout_psnr_db": value, "colour_cast_share": cast.pow(2).mean().item() / err.pow(2).mean().item()}
    os.makedirs(a.data_out, exist_ok=True)
    with open(os.path.join(a.data_out, f"{a.name}.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

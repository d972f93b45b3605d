"""The VAE on a wall-clock budget: how sharp does the tiny VAE get in N minutes of this CPU, per
learning rate, batch and width? Held-out metric: PSNR of the reconstruction of 16 held-out synthetic
physics frames (the frames stage I's metric predicts; its "VAE ceiling"). Trained per frame on the
VAE mixture of a recipe (synthetic physics + expert video, collected on first use), AdamW with
warm-up and cosine decay over the budget, EMA weights evaluated, as the trainer does.

    python -m training.experiments.vae_budget --minutes 5 --lr 2e-3 --batch 4 --threads 1 --name b4
    python -m training.experiments.vae_budget --minutes 5 --base-channels 32 --max-channels 128 --name wide
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
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
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    from kairos_model.vae import VAE_PRESETS, VideoVAE, psnr
    from training.data.sources import Mixture
    from training.data.synthetic_physics import PhysicsVideoConfig, SyntheticPhysicsVideo
    from training.recipe import load_recipe
    from training.trainer import Dist, Normalization, _rng, build_source, model_config

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    recipe = load_recipe(a.recipe, {"out": a.data_out})
    D, cfg = Dist(), model_config(recipe)
    J = cfg.proprio_dim
    norm = Normalization(np.zeros(J), np.ones(J), np.zeros(cfg.action_dim), np.ones(cfg.action_dim))
    srcs = [build_source(s, recipe, cfg, 64, norm, D, {}) for s in recipe.vae.sources]
    mix = Mixture(srcs, [s.weight for s in recipe.vae.sources])
    vc = replace(VAE_PRESETS[cfg.vae], base_channels=a.base_channels, max_channels=a.max_channels)
    vae, shadow = VideoVAE(vc), VideoVAE(vc).eval()
    opt = torch.optim.AdamW(vae.parameters(), lr=a.lr, weight_decay=0.0)
    ema = {k: v.detach().clone() for k, v in vae.state_dict().items()}
    held, _ = SyntheticPhysicsVideo(PhysicsVideoConfig(size=64, frames=7), seed=999, length=16).batch(list(range(16)))
    held = held[:, 6:7]                                       # [16, 1, 3, 64, 64]: stage I's target frames

    def evaluate() -> float:
        shadow.load_state_dict(ema)
        with torch.no_grad():
            mu, _ = shadow.encode(held)
            return psnr(shadow.decode(mu)[:, 0].clamp(0, 1), held[:, 0])

    budget, t0, step, curve = a.minutes * 60, time.time(), 0, []
    while time.time() - t0 < budget:
        frac = (time.time() - t0) / budget
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
        rng, gen = _rng(0, 0, 0, step, 0)
        x = mix.sample(rng, a.batch, 5).frames.flatten(0, 1).unsqueeze(1)     # [5B, 1, 3, 64, 64]
        loss, _ = vae.loss_from(x, *vae(x, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        d = min(0.995, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in vae.state_dict().items():
                if v.is_floating_point():
                    ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    ema[k].copy_(v)
        step += 1
        if step % 200 == 0:
            curve.append((step, round(time.time() - t0, 1), evaluate()))
            print(f"{a.name}: step {step}, {curve[-1][1]:.0f} s, held-out PSNR {curve[-1][2]:.2f} dB", flush=True)
    out = {"name": a.name, "minutes": a.minutes, "threads": a.threads, "lr": a.lr, "batch": a.batch,
           "base_channels": a.base_channels, "max_channels": a.max_channels,
           "parameters": sum(p.numel() for p in vae.parameters()), "steps": step,
           "heldout_psnr_db": evaluate(), "curve": curve}
    os.makedirs(a.data_out, exist_ok=True)
    with open(os.path.join(a.data_out, f"{a.name}.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}))
    return out


if __name__ == "__main__":
    main()

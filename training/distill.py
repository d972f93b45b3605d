"""Few-step distillation of the world model's sampler (video latents and action chunk together):
consistency distillation on teacher ODE pairs + Distribution Matching Distillation (DMD), combined as
the paper does ("from dozens to 4 steps").

    kairos distill training/recipes/distill_tiny.yaml          # teacher -> 4-step student, <= 20 min on CPU
    kairos distill training/recipes/distill_tiny_1step.yaml    # -> the one-step student the main job runs

One iteration on a batch of demonstration clips (context computed once per model, as at run time):

1. Teacher ODE pairs. From noise x_0 (sigma 1) the frozen teacher integrates the flow ODE through the
   student's own 4-step grid s_0 = 1 > s_1 > ... > s_4 = 0 with `teacher_substeps` Euler substeps per
   segment (4 x 10 = 40 teacher steps), giving the states x_k on its trajectory.
2. Consistency distillation: the student's single step from x_k must land where the teacher's ODE
   lands: its velocity matches (x_{k+1} - x_k) / (s_{k+1} - s_k), for every k.
3. Regression (DMD's ODE-pair loss): the student's full 4-step sample from x_0, with gradients through
   all 4 steps, matches the teacher's endpoint x_4.
4. DMD: noise the student's sample to a random level sigma; the frozen teacher (the "real" score)
   and a fake score model trained on the student's own samples both predict the clean sample; the
   student moves along (fake - real), normalised per sample (DMD's distribution-matching gradient).
5. The fake score takes a flow-matching step on the (detached) student samples.

The student starts as a copy of the teacher; the VAE and the understanding encoder are shared and
frozen. The result is a normal checkpoint (the teacher's meta, `sampler_steps: 4`, `distilled: {...}`)
that exports and runs through the same path as any other (`kairos export`, the act node).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import List

import numpy as np
import torch
import torch.nn.functional as F

from kairos_model import flow
from training.provenance import arithmetic


@dataclass
class DistillConfig:
    """teacher: checkpoint directory. out: run directory (the student lands in out/artifact).
    tasks / episodes: the demonstrations the clips come from (sim_expert, collected when missing).
    student_steps: the few-step sampler being distilled. teacher_substeps: teacher Euler steps per
    student step (their product is the teacher's step count). steps / minutes: iterations, stopped
    early at the time budget. batch, frames, anchors: clips per iteration, their length, prediction
    anchors per clip. lr / fake_lr: student and fake-score learning rates. cd_weight, reg_weight,
    dmd_weight: loss weights. dmd_after: iterations the fake score trains alone before the DMD term is
    switched on (at first it equals the teacher and the DMD gradient is zero, then noise until it has
    learnt the student's samples). fake_updates: fake-score steps per student step."""
    teacher: str
    out: str
    tasks: List[str] = field(default_factory=lambda: ["button-press-topdown-v3"])
    episodes: int = 40
    data: str = ""
    student_steps: int = 4
    teacher_substeps: int = 10
    steps: int = 600
    minutes: float = 20.0
    batch: int = 4
    frames: int = 8
    anchors: int = 3
    lr: float = 1e-4
    fake_lr: float = 2e-4
    cd_weight: float = 1.0
    reg_weight: float = 1.0
    dmd_weight: float = 0.5
    dmd_after: int = 30
    fake_updates: int = 1
    seed: int = 0

    @classmethod
    def load(cls, path: str, overrides: dict = None) -> "DistillConfig":
        from training.recipe import read_recipe
        d = read_recipe(path, own_keys=("out",))       # `base:` as in training recipes
        d.update(overrides or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def _velocity(wm, ctx, anchors, fut, act, sigma):
    B, P = fut.shape[:2]
    return wm.velocity(ctx, anchors, fut, act, sigma.expand(B, P) if sigma.dim() == 0 else sigma)


def _weighted_mse(wm, vf, va, tf, ta):
    c = wm.cfg
    return c.video_weight * F.mse_loss(vf, tf) + c.action_weight * F.mse_loss(va, ta)


def distill(cfg: DistillConfig, progress: bool = True) -> dict:
    from tqdm import tqdm
    from kairos_model.checkpoint import load_checkpoint, save_checkpoint
    from training.data.sources import EpisodeSource, Normalization
    from training.recipe import SourceConfig
    from training.trainer import Dist, WorldModelTrainable, load_episodes

    torch.manual_seed(cfg.seed)
    mcfg, parts = load_checkpoint(cfg.teacher)
    with open(os.path.join(cfg.teacher, "config.json")) as f:
        meta = json.load(f)["meta"]
    names = meta.get("joint_names") or []
    m = meta
    norm = Normalization.from_meta(m)
    D = Dist()
    src = SourceConfig(kind="lerobot" if cfg.data else "sim_expert", path=cfg.data or None, tasks=cfg.tasks,
                       episodes=cfg.episodes, actions=True)
    episodes = load_episodes(src, cfg.out, names, D)
    source = EpisodeSource(episodes, 64, mcfg.action_horizon, norm, True)

    dev = D.device                     # a CUDA GPU when there is one (everything below follows it)
    for m in parts.values():
        m.to(dev)
    teacher = parts["world_model"].eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    fake = copy.deepcopy(teacher).train().requires_grad_(True)
    shared = WorldModelTrainable({"world_model": teacher, "understanding": parts["understanding"].eval()},
                                 parts["vae"].eval(), meta.get("latent_scale", 1.0))
    shared.und.requires_grad_(False)
    opt_s = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    opt_f = torch.optim.AdamW(fake.parameters(), lr=cfg.fake_lr, weight_decay=0.0, betas=(0.9, 0.99))
    k_shift = teacher.shift_factor()
    grid = flow.sigma_schedule(cfg.student_steps, k_shift).to(dev)              # [S + 1], 1 -> 0
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(os.path.join(cfg.out, "tb"))
    history, t0 = [], time.time()
    bar = tqdm(range(cfg.steps), desc="distill", unit="it", disable=not progress)
    for it in bar:
        if time.time() - t0 > 60 * cfg.minutes:
            print(f"distill: time budget of {cfg.minutes} min reached after {it} iterations")
            break
        b = source.sample(rng, cfg.batch, cfg.frames)
        proprio = b.proprio.to(dev)
        with torch.no_grad():
            lat = shared.latents(b.frames)
            und = shared.und_tokens(b.frames, b.texts)
            ctx_t, _ = teacher.encode_context(lat, proprio, und)
        n = cfg.frames - mcfg.future_frames
        anchors = torch.randperm(n, generator=gen)[:cfg.anchors].sort().values.to(dev)
        B, P = cfg.batch, anchors.shape[0]
        h, w = mcfg.latent_hw
        # noise from the seeded CPU generator, then moved: the same draws on any device
        fut0 = torch.randn(B, P, mcfg.future_frames, mcfg.latent_channels, h, w, generator=gen).to(dev)
        act0 = torch.randn(B, P, mcfg.action_horizon, mcfg.action_dim, generator=gen).to(dev)
        # 1. the teacher's ODE trajectory through the student's grid
        states = [(fut0, act0)]
        with torch.no_grad():
            xf, xa = fut0, act0
            for s, s_next in zip(grid[:-1], grid[1:]):
                sub = torch.linspace(float(s), float(s_next), cfg.teacher_substeps + 1, device=dev)
                for a, c in zip(sub[:-1], sub[1:]):
                    vf, va = _velocity(teacher, ctx_t, anchors, xf, xa, a)
                    xf, xa = xf + (c - a) * vf, xa + (c - a) * va
                states.append((xf, xa))
        # 2. consistency distillation on the teacher's segments
        ctx_s, _ = student.encode_context(lat, proprio, und)
        l_cd = 0.0
        for k, (s, s_next) in enumerate(zip(grid[:-1], grid[1:])):
            (xf, xa), (yf, ya) = states[k], states[k + 1]
            vf, va = _velocity(student, ctx_s, anchors, xf, xa, s)
            l_cd = l_cd + _weighted_mse(student, vf, va, (yf - xf) / (s_next - s), (ya - xa) / (s_next - s))
        l_cd = l_cd / cfg.student_steps
        # 3. regression: the student's own 4-step sample from the same noise lands on the teacher's endpoint
        xf, xa = fut0, act0
        for s, s_next in zip(grid[:-1], grid[1:]):
            vf, va = _velocity(student, ctx_s, anchors, xf, xa, s)
            xf, xa = xf + (s_next - s) * vf, xa + (s_next - s) * va
        l_reg = _weighted_mse(student, xf, xa, states[-1][0], states[-1][1])
        # 4. DMD: real (teacher) vs fake score on the student's sample, noised to a random level
        sig = flow.sample_training_sigma(B * P, k_shift, gen).reshape(B, P).to(dev)
        nf, na = torch.randn(xf.shape, generator=gen).to(dev), torch.randn(xa.shape, generator=gen).to(dev)
        with torch.no_grad():
            ctx_f, _ = fake.encode_context(lat, proprio, und)
            zf = flow.interpolate(xf.detach().flatten(0, 1), nf.flatten(0, 1), sig.flatten()).unflatten(0, (B, P))
            za = flow.interpolate(xa.detach().flatten(0, 1), na.flatten(0, 1), sig.flatten()).unflatten(0, (B, P))
            s_f = sig.view(B, P, 1, 1, 1, 1)
            s_a = sig.view(B, P, 1, 1)
            rf, ra = teacher.velocity(ctx_t, anchors, zf, za, sig)
            ff, fa = fake.velocity(ctx_f, anchors, zf, za, sig)
            real_f, real_a = zf - s_f * rf, za - s_a * ra                  # clean-sample predictions
            fake_f, fake_a = zf - s_f * ff, za - s_a * fa
            norm_f = (xf.detach() - real_f).abs().mean(dim=(2, 3, 4, 5), keepdim=True).clamp_min(1e-4)
            norm_a = (xa.detach() - real_a).abs().mean(dim=(2, 3), keepdim=True).clamp_min(1e-4)
            g_f, g_a = (fake_f - real_f) / norm_f, (fake_a - real_a) / norm_a
        l_dmd = _weighted_mse(student, xf, xa, (xf - g_f).detach(), (xa - g_a).detach())
        dmd_on = float(it >= cfg.dmd_after)
        loss = cfg.cd_weight * l_cd + cfg.reg_weight * l_reg + dmd_on * cfg.dmd_weight * l_dmd
        opt_s.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt_s.step()
        # 5. the fake score learns the student's current distribution (flow matching on its samples)
        x0f, x0a = xf.detach(), xa.detach()
        for _ in range(cfg.fake_updates):
            ctx_f, _ = fake.encode_context(lat, proprio, und)
            sig2 = flow.sample_training_sigma(B * P, k_shift, gen).reshape(B, P).to(dev)
            e_f, e_a = torch.randn(xf.shape, generator=gen).to(dev), torch.randn(xa.shape, generator=gen).to(dev)
            zf = flow.interpolate(x0f.flatten(0, 1), e_f.flatten(0, 1), sig2.flatten()).unflatten(0, (B, P))
            za = flow.interpolate(x0a.flatten(0, 1), e_a.flatten(0, 1), sig2.flatten()).unflatten(0, (B, P))
            vf, va = fake.velocity(ctx_f, anchors, zf, za, sig2)
            l_fake = _weighted_mse(fake, vf, va, e_f - x0f, e_a - x0a)
            opt_f.zero_grad(set_to_none=True)
            l_fake.backward()
            torch.nn.utils.clip_grad_norm_(fake.parameters(), 1.0)
            opt_f.step()
        rec = {"cd": l_cd.item(), "reg": l_reg.item(), "dmd": l_dmd.item() * dmd_on, "fake": l_fake.item()}
        history.append(rec)
        for key, v in rec.items():
            writer.add_scalar(f"distill/{key}", v, it)
        bar.set_postfix(**{key: f"{v:.4f}" for key, v in rec.items()})
    writer.close()
    seconds = time.time() - t0
    student.eval()
    art = os.path.join(cfg.out, "artifact")
    teacher_manifest = os.path.join(cfg.teacher, "manifest.json")      # a packaged teacher: pin its files
    teacher_files = None
    if os.path.isfile(teacher_manifest):
        with open(teacher_manifest) as f:
            teacher_files = json.load(f)["files"]
    info = {"teacher": cfg.teacher, "teacher_files_sha256": teacher_files, "iterations": len(history), "seconds": seconds,
            "student_steps": cfg.student_steps, "teacher_steps": cfg.student_steps * cfg.teacher_substeps,
            "config": dataclasses.asdict(cfg),
            "final_losses": {key: float(np.mean([h[key] for h in history[-20:]])) for key in history[-1]}
            if history else {}}
    save_checkpoint(art, mcfg, {"world_model": student, "vae": parts["vae"], "understanding": parts["understanding"]},
                    meta={**meta, "sampler_steps": cfg.student_steps, "distilled": info, "arithmetic": arithmetic()})
    with open(os.path.join(cfg.out, "history.json"), "w") as f:
        json.dump(history, f)
    print(f"distilled {len(history)} iterations in {seconds / 60:.1f} min; student: {art}")
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos distill", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="YAML (training/recipes/distill_tiny.yaml)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="override recipe keys")
    a = ap.parse_args(argv)
    import yaml
    over = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)}
    distill(DistillConfig.load(a.recipe, over))
    return 0


if __name__ == "__main__":
    sys.exit(main())

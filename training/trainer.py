"""`kairos train RECIPE.yaml`: the Cross-Embodiment Data Curriculum with one trainer for every stage.

    kairos train training/recipes/tiny.yaml                     # one process
    torchrun --nproc-per-node 2 -m training.trainer training/recipes/tiny.yaml   # DDP (gloo on CPU, NCCL on GPU)

What one run does, in `--out` (the recipe's `out`):
  data/       demonstrations collected by the scripted expert when a sim_expert source asks for them
  vae/        the VAE (trained first, then frozen) and the latent scale
  I/ II/ III/ each stage's checkpoints (resumable), weights in safetensors, TensorBoard logs
  artifact/   the deployable model (EMA weights, config, joint names, normalisation, metrics)
  metrics.json  the held-out measurements printed at the end

Training details: AdamW, linear warm-up then cosine decay, gradient clipping at 1, gradient
accumulation, EMA of the weights (exported), bf16 autocast on CUDA, fixed seeds. Every batch and every
noise draw is a function of (seed, rank, stage, step), so a run resumed from a checkpoint follows the
same loss curve as one that was never interrupted (`--stop-after` interrupts on purpose; tests use it).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from kairos_model.checkpoint import build_parts, save_checkpoint
from kairos_model.durable import fsync_dir, fsync_tree, write_text_atomic
from kairos_model.vae import psnr
from kairos_model.world_model import WorldModelConfig
from training.data.lerobot import DatasetError, JointMapping, LeRobotDataset
from training.data.sources import (Batch, EnvNormalization, EpisodeSource, Mixture, Normalization,
                                   PhysicsSource, PositionSource, VideoFolderSource)
from training.provenance import arithmetic
from training.recipe import RecipeConfig, SourceConfig, load_recipe


# -- distributed ------------------------------------------------------------------------------------
class Dist:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{self.local_rank}" if self.cuda else "cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.cuda else "gloo")
        if self.cuda:
            torch.cuda.set_device(self.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def mean(self, x: float) -> float:
        if self.world == 1:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.device if self.cuda else "cpu")
        dist.all_reduce(t)
        return t.item() / self.world


# -- checkpoints ------------------------------------------------------------------------------------
def _flatten_optimizer(opt: torch.optim.Optimizer):
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{i}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{i}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(opt: torch.optim.Optimizer, tensors: Dict[str, torch.Tensor], meta: dict):
    state: Dict[int, dict] = {}
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    for key, v in meta["scalars"].items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _save_ckpt(path: str, module: nn.Module, ema: Dict[str, torch.Tensor], opt, info: dict):
    """Write a checkpoint folder at `path` so that a crash at any moment leaves a complete one: it is
    written whole to `path.tmp` (trainer.json last, itself renamed into place), the previous one is
    moved to `path.old`, the new one renamed to `path`, then `path.old` removed. `_recover_ckpt`
    finishes a swap a crash interrupted. The files and `path.tmp` are fsynced before trainer.json
    marks it complete and the parent folder after the swap, so a power cut (not only a killed
    process) also leaves a complete checkpoint: the new one, or the previous one if the swap's
    renames had not reached the disk."""
    tmp, old = path + ".tmp", path + ".old"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()},
              os.path.join(tmp, "model.safetensors"))
    save_file({k: v.contiguous().cpu() for k, v in ema.items()}, os.path.join(tmp, "ema.safetensors"))
    ot, om = _flatten_optimizer(opt)
    save_file(ot, os.path.join(tmp, "optimizer.safetensors"))
    with open(os.path.join(tmp, "trainer.json.part"), "w") as f:
        json.dump({**info, "optimizer": om}, f)
    fsync_tree(tmp)                                       # the data is on disk before it is marked complete
    os.replace(os.path.join(tmp, "trainer.json.part"), os.path.join(tmp, "trainer.json"))  # marks tmp complete
    fsync_dir(tmp)
    parent = os.path.dirname(os.path.abspath(path))
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(path):
        os.replace(path, old)
    os.replace(tmp, path)
    fsync_dir(parent)                                     # the swap itself survives a power cut
    shutil.rmtree(old, ignore_errors=True)


def _recover_ckpt(path: str) -> None:
    """Finish a checkpoint swap that a crash interrupted (see `_save_ckpt`). With `path` present
    nothing is done (a `.tmp` beside it may be half-written and is ignored); without it, a complete
    `path.tmp` (it has trainer.json) is the newest checkpoint, else `path.old` is the previous one."""
    if os.path.isdir(path):
        return
    tmp, old = path + ".tmp", path + ".old"
    if os.path.isfile(os.path.join(tmp, "trainer.json")):
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    elif os.path.isfile(os.path.join(old, "trainer.json")):
        os.replace(old, path)


def _load_ckpt(path: str, module: nn.Module, opt, device):
    module.load_state_dict(load_file(os.path.join(path, "model.safetensors"), device=str(device)))
    ema = load_file(os.path.join(path, "ema.safetensors"), device=str(device))
    with open(os.path.join(path, "trainer.json")) as f:
        info = json.load(f)
    _unflatten_optimizer(opt, load_file(os.path.join(path, "optimizer.safetensors"), device=str(device)),
                         info.pop("optimizer"))
    return ema, info


# -- the generic loop --------------------------------------------------------------------------------
def train_loop(name: str, module: nn.Module, loss_fn: Callable, steps: int, lr: float, warmup: int,
               ckpt_dir: str, D: Dist, grad_accum: int = 1, ema_decay: float = 0.995,
               checkpoint_every: int = 200, log_every: int = 20, samples_per_step: int = 1,
               stop_after: Optional[int] = None, fsdp: bool = False, progress: bool = True,
               max_seconds: Optional[float] = None) -> dict:
    """Optimise `module` for `steps` steps; loss_fn(model, step, micro) -> (loss, parts dict).
    max_seconds: a wall-clock budget; the loop ends at `steps` or when the budget is spent, whichever
    comes first, and the cosine learning-rate schedule follows whichever of the two is further along
    (so a budgeted run still anneals). Time spent before an interruption counts on resume.
    Resumes from ckpt_dir/last when present. Returns {"losses": [...], "ema": state dict,
    "steps": steps done, "seconds": ...}."""
    module.to(D.device)
    decay_params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(decay_params, lr=lr, weight_decay=0.01, betas=(0.9, 0.99))

    def lr_at(step, elapsed=0.0):
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, steps - warmup)
        if max_seconds:
            frac = max(frac, elapsed / max_seconds)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, frac))) * 0.9 + 0.1

    ema = {k: v.detach().clone().float() for k, v in module.state_dict().items()}
    start, losses, before = 0, [], 0.0
    last = os.path.join(ckpt_dir, "last")
    if D.main:
        _recover_ckpt(last)
    D.barrier()                                         # every rank sees the recovered checkpoint
    if os.path.isdir(last):
        ema, info = _load_ckpt(last, module, opt, D.device)
        start, losses, before = info["step"], info["losses"], float(info.get("seconds", 0.0))
        if D.main:
            print(f"[{name}] resumed from {last} at step {start}")
        if info.get("budget_spent"):
            steps = start                                   # a budgeted stage that already ended
    if start >= steps:
        return {"losses": losses, "ema": ema, "steps": start, "seconds": before}
    if D.world > 1:
        if fsdp:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
            model = FSDP(module, use_orig_params=True)
        else:
            model = nn.parallel.DistributedDataParallel(module, find_unused_parameters=True,
                                                        device_ids=[D.local_rank] if D.cuda else None)
    else:
        model = module
    writer = None
    if D.main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(os.path.join(ckpt_dir, "tb"))
    bar = tqdm(range(start, steps), desc=f"train {name}", disable=not (progress and D.main), unit="step",
               initial=start, total=steps)
    t0, n_samples = time.time(), 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if D.cuda else contextlib.nullcontext()
    budget_spent = False

    def elapsed() -> float:                # the same on every rank (rank 0's clock), so all stop together
        e = before + time.time() - t0
        if D.world > 1 and max_seconds:
            t = torch.tensor([e], dtype=torch.float64, device=D.device if D.cuda else "cpu")
            dist.broadcast(t, 0)
            e = t.item()
        return e

    done = start
    for step in bar:
        now = elapsed() if max_seconds else 0.0
        for g in opt.param_groups:
            g["lr"] = lr * lr_at(step, now)
        opt.zero_grad(set_to_none=True)
        total, parts_sum = 0.0, {}
        for micro in range(grad_accum):
            sync = contextlib.nullcontext()
            if D.world > 1 and micro < grad_accum - 1 and hasattr(model, "no_sync"):
                sync = model.no_sync()
            with sync, autocast:
                loss, parts = loss_fn(model, step, micro)
                (loss / grad_accum).backward()
            total += loss.item() / grad_accum
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v) / grad_accum
        gn = torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        if torch.isfinite(gn):
            opt.step()
        # EMA with warm-up: the decay grows as (1+t)/(10+t) up to ema_decay, so the starting weights
        # fade out however short the run (a fixed 0.999 would keep 0.999^1468 = 23% of them after
        # 1468 steps: measured to double the held-out action error of such a run, README "On a GPU")
        d = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in module.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[k].mul_(d).add_(v.float(), alpha=1 - d)
                else:
                    ema[k].copy_(v)
        total = D.mean(total)
        losses.append(total)
        n_samples += samples_per_step * grad_accum * D.world
        if D.main:
            if step % log_every == 0 or step == steps - 1:
                writer.add_scalar(f"{name}/loss", total, step)
                for k, v in parts_sum.items():
                    writer.add_scalar(f"{name}/{k}", v, step)
                writer.add_scalar(f"{name}/lr", opt.param_groups[0]["lr"], step)
            bar.set_postfix(loss=f"{total:.4f}", **{k: f"{v:.4f}" for k, v in parts_sum.items()},
                            samples_s=f"{n_samples / max(1e-9, time.time() - t0):.1f}")
        done = step + 1
        budget_spent = bool(max_seconds) and elapsed() >= max_seconds and done < steps
        if (done % checkpoint_every == 0 or done == steps or budget_spent
                or (stop_after is not None and done >= stop_after)):
            if D.main:
                _save_ckpt(last, module, ema, opt, {"step": done, "losses": losses, "name": name,
                                                    "seconds": before + time.time() - t0,
                                                    "budget_spent": budget_spent})
            D.barrier()
        if stop_after is not None and done >= stop_after:
            if D.main:
                print(f"[{name}] stopped after step {done} as asked (--stop-after); rerun to resume")
            raise SystemExit(3)
        if budget_spent:
            if D.main:
                bar.close()
                print(f"[{name}] time budget of {max_seconds / 60:g} min spent after step {done} of {steps}")
            break
    if writer:
        writer.close()
    return {"losses": losses, "ema": ema, "steps": done, "seconds": before + time.time() - t0}


# -- the world model as one trainable module (so DDP sees one forward) --------------------------------
class PositionHead(nn.Module):
    """The understanding encoder's image tokens of one frame [N, Mi, C] -> the simulator's object and
    goal positions [N, E] (normalised). Training only (a stage's aux_weight): it is not part of the
    artifact; what it leaves behind is image tokens that carry where the objects are."""

    def __init__(self, tokens: int, dim: int, out: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(1), nn.LayerNorm(tokens * dim), nn.Linear(tokens * dim, hidden),
                                 nn.SiLU(), nn.Linear(hidden, out))

    def forward(self, image_tokens_nmc: torch.Tensor) -> torch.Tensor:
        return self.net(image_tokens_nmc)


class WorldModelTrainable(nn.Module):
    def __init__(self, parts: Dict[str, nn.Module], vae: nn.Module, latent_scale: float,
                 pos_head: Optional[PositionHead] = None):
        super().__init__()
        self.wm, self.und = parts["world_model"], parts["understanding"]
        self.vae = [vae]                     # frozen, not a submodule (not trained, not synced, not saved)
        self.latent_scale = latent_scale
        self.pos_head = pos_head

    @property
    def device(self) -> torch.device:
        return next(self.wm.parameters()).device

    @torch.no_grad()
    def latents(self, frames_btchw: torch.Tensor) -> torch.Tensor:
        """Each frame encoded alone (as the deployed engine does): [B, T, C, h, w], scaled to unit std,
        on the model's device."""
        B, T = frames_btchw.shape[:2]
        frames_btchw = frames_btchw.to(self.device)
        mu, _ = self.vae[0].encode(frames_btchw.flatten(0, 1).unsqueeze(1))
        return mu.squeeze(1).unflatten(0, (B, T)) * self.latent_scale

    def und_tokens(self, frames_btchw: torch.Tensor, texts: List[str], with_image: bool = False):
        """Conditioning tokens [B, T, M, C] of clips; with_image: also the image encoder's tokens
        [B, T, Mi_out, C] they were combined from (what the position head reads)."""
        B, T = frames_btchw.shape[:2]
        frames_btchw = frames_btchw.to(self.device)
        text = self.und.encode_text(texts)                                           # [B, Mt, C]
        img = self.und.encode_image(frames_btchw.flatten(0, 1)).unflatten(0, (B, T))  # [B, T, Mi, C]
        und = self.und.combine(text, img)                                           # [B, T, M, C]
        return (und, img) if with_image else und

    def positions(self, frames_nchw: torch.Tensor) -> torch.Tensor:
        """Single frames [N, 3, S, S] -> predicted environment state [N, E] (normalised)."""
        return self.pos_head(self.und.encode_image(frames_nchw.to(self.device)))

    def gate_loss(self, texts: List[str]) -> Optional[torch.Tensor]:
        """Cross-entropy of the keypoint gate (und.keypoint_select) against the keypoint task each
        instruction names, over the batch's clips whose instruction is one; None when none is."""
        from kairos_sim.metaworld_sim import INSTRUCTIONS
        tasks = self.und.cfg.keypoint_tasks
        if not (tasks and self.und.cfg.keypoint_select):
            raise ValueError("gate_weight > 0 needs a keypoint token with und.keypoint_select: true")
        named = {INSTRUCTIONS.get(t, t): i for i, t in enumerate(tasks)}
        target = torch.tensor([named.get(t, -1) for t in texts])
        keep = target >= 0
        if not keep.any():
            return None
        w = self.und.keypoint_weights(self.und.encode_text([t for t, k in zip(texts, keep) if k]))   # [n, K]
        return -w.float().clamp_min(1e-8).log().gather(1, target[keep].to(w.device)[:, None]).mean()

    def forward(self, batch: Batch, generator: torch.Generator, with_actions: bool, anchors: int = 0,
                aux_weight: float = 0.0, aux=None, gate_weight: float = 0.0):
        """The world model's loss on the batch's clips; with aux_weight > 0 plus that weight times the
        position loss (MSE, normalised units) on the clips' frames that carry env_state and on the
        aux_only frames `aux` = (frames [N, 3, S, S], env_state [N, E], texts), averaged over the two;
        with gate_weight > 0 plus that weight times the keypoint gate's loss (gate_loss)."""
        dev = next(self.wm.parameters()).device
        frames = batch.frames.to(dev)
        lat = self.latents(frames)
        und, img_tokens = self.und_tokens(frames, batch.texts, with_image=True)
        acts = batch.actions.to(dev) if (with_actions and batch.actions is not None) else None
        n = frames.shape[1] - self.wm.cfg.future_frames                 # frames with a full future
        idx = None
        if 0 < anchors < n:
            idx = torch.randperm(n, generator=generator)[:anchors].sort().values.to(dev)
        loss, parts = self.wm.loss(lat, batch.proprio.to(dev), und, acts, anchors=idx, generator=generator)
        if aux_weight > 0:
            terms = []
            if batch.env_state is not None:
                pred = self.pos_head(img_tokens.flatten(0, 1)).float()                   # [B*T, E]
                err = (pred - batch.env_state.to(dev).flatten(0, 1)).pow(2).mean(1)
                w = batch.valid.to(dev).flatten().float()
                terms.append((err * w).sum() / w.sum().clamp_min(1))
            if aux is not None:
                terms.append((self.positions(aux[0]).float() - aux[1].to(dev)).pow(2).mean())
            if not terms:
                raise ValueError("aux_weight > 0, but neither the clips nor an aux_only source carry "
                                 "environment states")
            lp = sum(terms) / len(terms)
            parts["position"] = lp.detach()
            loss = loss + aux_weight * lp
        if gate_weight > 0:
            lg = self.gate_loss(batch.texts)
            if lg is not None:
                parts["gate"] = lg.detach()
                loss = loss + gate_weight * lg
        return loss, parts


def _rng(seed: int, rank: int, stage: int, step: int, micro: int):
    return np.random.default_rng([seed, rank, stage, step, micro]), torch.Generator().manual_seed(
        int(np.random.default_rng([seed, rank, stage, step, micro, 7]).integers(2 ** 62)))


# -- data ---------------------------------------------------------------------------------------------
def _ensure_sim_dataset(src: SourceConfig, out: str, D: Dist, sync: bool = True) -> str:
    path = src.path or os.path.join(out, "data", "_".join(t.replace("-v3", "") for t in src.tasks)[:80]
                                    + f"_{src.episodes}ep_v{src.first_variation}"
                                    + ("" if src.control_hz == 10 else f"_{src.control_hz:g}hz")
                                    + ("" if src.camera == "corner2" else f"_{src.camera}"))
    if D.main and not os.path.isfile(os.path.join(path, "meta", "info.json")):
        import subprocess
        shutil.rmtree(path, ignore_errors=True)          # a half-written collection is redone
        print(f"collecting {src.episodes} expert episodes per task for {src.tasks} into {path}", flush=True)
        # in a child process: the software GL (Mesa llvmpipe) state then never shares a process with training
        subprocess.run([sys.executable, "-m", "training.collect", "--tasks", *src.tasks, "--episodes",
                        str(src.episodes), "--first-variation", str(src.first_variation), "--out", path,
                        "--control-hz", str(src.control_hz), "--camera", src.camera], check=True)
    if sync:
        D.barrier()
    return path


def _ensure_bag_dataset(src: SourceConfig, out: str, joint_names, D: Dist, sync: bool = True) -> str:
    """A folder of recorded episodes (kairos_ros recorder) converted once into a LeRobot dataset."""
    import hashlib
    from kairos_ros.core.recorder import iter_episodes
    from training.data.bags import bags_to_dataset
    eps = list(iter_episodes(src.path))
    key = hashlib.sha256("|".join(eps + ["command:"] + list(src.command_joints)).encode()).hexdigest()[:10]
    path = os.path.join(out, "data", f"bags_{key}")
    if D.main and not os.path.isfile(os.path.join(path, "meta", "info.json")):
        shutil.rmtree(path, ignore_errors=True)
        n, left = bags_to_dataset(eps, path, joint_names, command_joints=src.command_joints)
        print(f"converted {n} recorded episodes from {src.path}" + "".join(f"\n  left out {w}" for w in left))
    if sync:
        D.barrier()
    return path


def episodes_control_dt(eps) -> float:
    """The control step (s) of action-labelled episodes: 1 / their fps; an error when sources disagree
    (one action step per frame, so a model can act at one rate only). 0.1 s when none says."""
    rates = sorted({round(e.fps, 6) for e in eps if e.fps})
    if len(rates) > 1:
        raise ValueError(f"stage III sources have different frame rates {rates} fps; a model acts at one "
                         f"control rate (collect or convert them at one rate)")
    return 1.0 / rates[0] if rates else 0.1


def source_key(src: SourceConfig) -> tuple:
    return (src.kind, src.path, tuple(src.tasks), src.episodes, src.first_variation, src.control_hz, src.camera,
            tuple(src.command_joints))


def open_dataset(src: SourceConfig, out: str, joint_names, D: Dist, sync: bool = True) -> LeRobotDataset:
    """The source's LeRobot dataset (collected or converted first where the kind asks for it), checked
    against its role: a snapshot dataset (separate scenes, not trajectories) only as aux_only, a
    dataset that records its camera only under the camera the source names, and a sim_expert dataset
    only when it holds no more episodes than the source asks for (the expert's failures are not kept,
    so fewer is allowed)."""
    if src.kind == "sim_expert":
        path = _ensure_sim_dataset(src, out, D, sync)
    elif src.kind == "rosbag":
        path = _ensure_bag_dataset(src, out, joint_names, D, sync)
    else:
        path = src.path
    ds = LeRobotDataset(path, mapping=JointMapping(joint_names))
    if ds.snapshots and not src.aux_only:
        raise DatasetError(f"{path} is a snapshot dataset (each frame a different scene, `kairos collect "
                           "--snapshots`): it can only feed the position loss, as a source with aux_only: true")
    if src.kind == "sim_expert" and src.episodes and len(ds) > src.episodes * len(src.tasks):
        raise DatasetError(f"{path} holds {len(ds)} episodes, more than the source's {src.episodes} per task for "
                           f"{len(src.tasks)} tasks: training would use all of them (give the source a path of "
                           "its own, or episodes equal to what was collected there)")
    cam = ds.kairos_info.get("camera")
    if src.kind == "sim_expert" and cam is not None and cam != src.camera:
        raise DatasetError(f"{path} was collected from camera {cam!r}, the recipe's source says {src.camera!r}")
    return ds


def load_episodes(src: SourceConfig, out: str, joint_names, D: Dist, sync: bool = True):
    return list(open_dataset(src, out, joint_names, D, sync))


def build_source(src: SourceConfig, recipe: RecipeConfig, cfg: WorldModelConfig, size: int, norm, D: Dist,
                 episodes_cache: dict, env_norm: Optional[EnvNormalization] = None):
    """A stage's batch source; env_norm (a stage with a position loss): episode sources whose episodes
    record environment states return them, and an aux_only source becomes a PositionSource."""
    if src.aux_only and src.kind not in ("lerobot", "sim_expert"):
        raise ValueError(f"an aux_only source must be lerobot or sim_expert data with environment states, got {src.kind!r}")
    if src.kind == "synthetic_physics":
        return PhysicsSource(size, recipe.seed, cfg.proprio_dim, clips=max(src.clips, 1))
    if src.kind == "video_folder":
        return VideoFolderSource(src.path, size, cfg.proprio_dim)
    if src.kind in ("lerobot", "sim_expert", "rosbag"):
        key = source_key(src)
        if key not in episodes_cache:
            episodes_cache[key] = load_episodes(src, recipe.out, recipe.joint_names, D)
        eps = episodes_cache[key]
        if src.aux_only:
            return PositionSource(eps, size, env_norm)
        with_env = env_norm is not None and all(e.env_state is not None for e in eps)
        return EpisodeSource(eps, size, cfg.action_horizon, norm, src.actions, env_norm if with_env else None)
    raise ValueError(f"unknown source kind {src.kind!r}: synthetic_physics, video_folder, lerobot, rosbag or sim_expert")


# -- evaluation ----------------------------------------------------------------------------------------
@torch.no_grad()
def eval_next_frame(tr: WorldModelTrainable, size: int, clips: int = 16, context: int = 6, steps: int = 10,
                    frames_out: Optional[dict] = None):
    """Stage I metric: PSNR of the predicted next frame (decoded) vs copying the last frame, on held-out
    synthetic physics clips (a seed never trained on). Two predictions: a sample (`steps` Euler steps
    from noise, what a rollout draws) and the model's conditional mean (one step from pure noise: the
    velocity at sigma = 1 points at E[x | context], the prediction with the least expected squared
    error, which is what PSNR, an MSE measure, rewards). frames_out (a dict) receives the frames
    compared, each [clips, 3, H, W] in [0, 1]: last, target, predicted, predicted_mean, last_via_vae,
    target_via_vae."""
    from training.data.synthetic_physics import PhysicsVideoConfig, SyntheticPhysicsVideo
    ds = SyntheticPhysicsVideo(PhysicsVideoConfig(size=size, frames=context + 1), seed=999, length=clips)
    x, caps = ds.batch(list(range(clips)))
    ctx_frames, target = x[:, :context], x[:, context]
    lat = tr.latents(ctx_frames)
    und = tr.und_tokens(ctx_frames, caps)
    ctx, _ = tr.wm.encode_context(lat, torch.zeros(clips, context, tr.wm.cfg.proprio_dim, device=tr.device), und)
    fut, _ = tr.wm.sample(ctx, torch.tensor([context - 1]), steps=steps, with_actions=False,
                          generator=torch.Generator().manual_seed(0))
    pred = tr.vae[0].decode(fut[:, 0, :1] / tr.latent_scale)[:, 0].cpu()
    fut1, _ = tr.wm.sample(ctx, torch.tensor([context - 1]), steps=1, with_actions=False,
                           generator=torch.Generator().manual_seed(0))
    pred_mean = tr.vae[0].decode(fut1[:, 0, :1] / tr.latent_scale)[:, 0].cpu()
    recon = tr.vae[0].decode(tr.latents(x[:, context:context + 1]) / tr.latent_scale)[:, 0].cpu()
    last = tr.vae[0].decode(lat[:, -1:] / tr.latent_scale)[:, 0].cpu()
    if frames_out is not None:
        frames_out.update(last=ctx_frames[:, -1], target=target, predicted=pred, predicted_mean=pred_mean,
                          last_via_vae=last, target_via_vae=recon)
    return {"next_frame_psnr_db": psnr(pred, target), "next_frame_mean_psnr_db": psnr(pred_mean, target),
            "sampler_steps": steps, "copy_last_psnr_db": psnr(ctx_frames[:, -1], target),
            "copy_last_latent_psnr_db": psnr(last, target), "vae_ceiling_psnr_db": psnr(recon, target)}


@torch.no_grad()
def eval_actions(tr: WorldModelTrainable, episodes, norm: Normalization, size: int, steps: int = 4):
    """Stage III metric on held-out episodes, teacher-forced along the expert's trajectory: mean
    absolute error (rad) of the sampled action chunk (as joint targets) vs the expert's, and of the
    mean-action baseline."""
    src = EpisodeSource(episodes, size, tr.wm.cfg.action_horizon, norm, True)
    errs, base = [], []
    # the baseline is a mean joint target (with relative actions: these episodes' own mean target)
    mean_action = (np.concatenate([e.action for e in episodes]).mean(0) if norm.relative else norm.action_mean)
    for i, ep in enumerate(episodes):
        T = len(ep.state)
        x, st, ch, _, task = src.clip(i, T)
        frames = torch.from_numpy(x).unsqueeze(0)
        lat, und = tr.latents(frames), tr.und_tokens(frames, [task])
        ctx, _ = tr.wm.encode_context(lat, torch.from_numpy(st).float().unsqueeze(0).to(tr.device), und)
        _, act = tr.wm.sample(ctx, torch.arange(T), steps=steps, generator=torch.Generator().manual_seed(i))
        pred = act[0].double().cpu().numpy() * norm.action_std + norm.action_mean          # [T, H, A]
        true = ch * norm.action_std + norm.action_mean
        if norm.relative:                                  # offsets -> joint targets, as the engine runs them
            s = (st * norm.state_std + norm.state_mean)[:, None]
            pred, true = pred + s, true + s
        errs.append(np.abs(pred - true).mean())
        base.append(np.abs(mean_action - true).mean())
    return {"action_mae_rad": float(np.mean(errs)), "mean_action_mae_rad": float(np.mean(base)),
            "heldout_episodes": len(episodes), "sampler_steps": steps}


@torch.no_grad()
def eval_positions(tr: WorldModelTrainable, episodes, env_norm: EnvNormalization, size: int) -> dict:
    """The position head on held-out episodes' frames: mean absolute error per environment-state column
    (m) and the mean Euclidean error per object (columns grouped by name before the last '_', e.g.
    object_x/y/z -> object) in cm, beside always answering the training mean; and the same on each
    episode's first frame alone (first_frame_error_cm), before the expert's motion can give a target
    away (later frames of an expert trajectory show where the arm goes, which a policy cannot use)."""
    src = PositionSource(episodes, size, env_norm)
    pred = torch.cat([tr.positions(src.frames[i:i + 256]).float().cpu() for i in range(0, len(src), 256)])
    pred = pred.double().numpy() * env_norm.std + env_norm.mean
    true = src.env.double().numpy() * env_norm.std + env_norm.mean
    out = {"frames": len(src), "mae_m": dict(zip(env_norm.names, np.abs(pred - true).mean(0).tolist())),
           "mean_baseline_mae_m": dict(zip(env_norm.names, np.abs(env_norm.mean - true).mean(0).tolist()))}
    groups: Dict[str, List[int]] = {}
    for i, n in enumerate(env_norm.names):
        groups.setdefault(n.rsplit("_", 1)[0], []).append(i)
    out["error_cm"] = {g: float(100 * np.linalg.norm(pred[:, ix] - true[:, ix], axis=1).mean()) for g, ix in groups.items()}
    out["mean_baseline_error_cm"] = {g: float(100 * np.linalg.norm(env_norm.mean[ix] - true[:, ix], axis=1).mean())
                                     for g, ix in groups.items()}
    first = np.cumsum([0] + [len(e.state) for e in episodes[:-1]])              # each episode's first frame
    out["first_frame_error_cm"] = {g: float(100 * np.linalg.norm(pred[first][:, ix] - true[first][:, ix], axis=1).mean())
                                   for g, ix in groups.items()}
    out["first_frame_mean_baseline_error_cm"] = {
        g: float(100 * np.linalg.norm(env_norm.mean[ix] - true[first][:, ix], axis=1).mean()) for g, ix in groups.items()}
    return out


def stage_env_norms(recipe: RecipeConfig, cache: dict, D: Dist) -> Dict[str, EnvNormalization]:
    """For each stage with a position loss: the environment-state normalisation over its LeRobot /
    sim_expert sources that record one (aux_only sources must). Fills `cache` with their episodes."""
    out = {}
    for st in recipe.stages:
        if st.aux_weight <= 0:
            continue
        names, eps = None, []
        for s in st.sources:
            if s.kind not in ("lerobot", "sim_expert"):
                continue
            ds = open_dataset(s, recipe.out, recipe.joint_names, D)
            key = source_key(s)
            if key not in cache:
                cache[key] = list(ds)
            if ds.env_state_names is None:
                if s.aux_only:
                    raise DatasetError(f"stage {st.name}: aux_only source {ds.root} records no "
                                       "observation.environment_state")
                continue
            if names is not None and ds.env_state_names != names:
                raise DatasetError(f"stage {st.name}: {ds.root} names its environment state "
                                   f"{ds.env_state_names}, another source {names}")
            names = ds.env_state_names
            eps += cache[key]
        if names is None:
            raise DatasetError(f"stage {st.name}: aux_weight > 0 but none of its sources records "
                               "observation.environment_state (`kairos collect` does)")
        out[st.name] = EnvNormalization.from_episodes(names, eps)
    return out


# -- the run --------------------------------------------------------------------------------------------
def random_crops(x_btchw: torch.Tensor, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """One random crop x crop window per clip (the same for all its frames): [B, T, C, H, W] ->
    [B, T, C, crop, crop]."""
    H, W = x_btchw.shape[-2:]
    if not 0 < crop <= min(H, W):
        raise ValueError(f"crop {crop} does not fit frames of {H}x{W}")
    ys, xs = rng.integers(0, H - crop + 1, len(x_btchw)), rng.integers(0, W - crop + 1, len(x_btchw))
    return torch.stack([c[..., y:y + crop, x:x + crop] for c, y, x in zip(x_btchw, ys, xs)])


def vae_loss_fn(vae: nn.Module, mix: Mixture, batch: int, per_frame: bool, seed: int, D: Dist,
                crop: Optional[int] = None) -> Callable:
    """The VAE's train_loop loss: `batch` 5-frame clips from `mix` per step (split into single frames
    when per_frame; cut to random crop x crop windows when crop), reconstruction + KL."""
    if crop and crop % vae.cfg.spatial_down:
        raise ValueError(f"vae.crop {crop} must be a multiple of the VAE's spatial downsampling "
                         f"({vae.cfg.spatial_down}): the windows are encoded whole")

    def vae_loss(model, step, micro):
        rng, gen = _rng(seed, D.rank, 0, step, micro)
        x = mix.sample(rng, batch, 5).frames.to(D.device)       # [B, 5, 3, S, S]
        if per_frame:
            x = x.flatten(0, 1).unsqueeze(1)                      # [5B, 1, 3, S, S]
        if crop:
            x = random_crops(x, crop, rng)                        # [., ., 3, crop, crop]
        loss, parts = vae.loss_from(x, *model(x, gen))          # forward through the DDP wrapper
        return loss, {"mse": parts["mse"]}
    return vae_loss


def _vae_stage(recipe: RecipeConfig, vae: nn.Module, D: Dist, args, norm_dummy) -> float:
    vdir = os.path.join(recipe.out, "vae")
    final = os.path.join(vdir, "vae.safetensors")
    if args.vae_from:
        final = os.path.join(args.vae_from, "vae.safetensors")
        vdir = args.vae_from
    trained_here = not os.path.isfile(final)
    if trained_here:
        vc = recipe.vae
        cfg = model_config(recipe)
        cache: dict = {}
        srcs = [build_source(s, recipe, cfg, 64, norm_dummy, D, cache) for s in vc.sources]
        mix = Mixture(srcs, [s.weight for s in vc.sources])

        res = train_loop("vae", vae, vae_loss_fn(vae, mix, vc.batch, vc.per_frame, recipe.seed, D, vc.crop), vc.steps, vc.lr, 50, vdir, D, ema_decay=recipe.ema_decay,
                         checkpoint_every=recipe.checkpoint_every, samples_per_step=vc.batch, fsdp=False,
                         stop_after=args.stop_after if args.stop_stage == "vae" else None)
        if D.main:
            vae.load_state_dict(res["ema"])
            save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, final)
        D.barrier()
    missing, unexpected = vae.load_state_dict(load_file(final), strict=False)
    if unexpected or set(missing) - set(vae.LATENT_NORM_KEYS if vae.cfg.latent_norm else ()):
        raise RuntimeError(f"{final} does not fit VAE '{model_config(recipe).vae}': missing {missing}, "
                           f"unexpected {unexpected}")
    vae.eval().requires_grad_(False)
    from training.data.synthetic_physics import PhysicsVideoConfig, SyntheticPhysicsVideo
    x, _ = SyntheticPhysicsVideo(PhysicsVideoConfig(size=64, frames=4), seed=123, length=16).batch(list(range(16)))
    calib = x.flatten(0, 1).unsqueeze(1).to(next(vae.parameters()).device)     # [64, 1, 3, 64, 64]
    calibrated_here = vae.cfg.latent_norm and vae.latent_norm_is_identity()
    if calibrated_here:                # per-channel latent mean / std from the same frames as the scale
        vae.calibrate_latent_norm(calib)
        if trained_here and D.main:
            save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, final)
    art_cfg = os.path.join(vdir, "config.json")
    if args.vae_from and os.path.isfile(art_cfg):       # an artifact: its VAE comes with its latent scale
        with open(art_cfg) as f:
            return float(json.load(f)["meta"]["latent_scale"])
    scale_file = os.path.join(vdir, "latent.json")
    if calibrated_here and not trained_here:            # another run's VAE saved before its calibration
        with torch.no_grad():
            return float(1.0 / vae.encode(calib)[0].std().clamp_min(1e-3))
    if not os.path.isfile(scale_file):
        with torch.no_grad():
            mu, _ = vae.encode(calib)
        scale = float(1.0 / mu.std().clamp_min(1e-3))
        if D.main:
            with open(scale_file, "w") as f:
                json.dump({"latent_scale": scale}, f)
        D.barrier()
    with open(scale_file) as f:
        return json.load(f)["latent_scale"]


def adopt_vae_preset(recipe: RecipeConfig, vae_from: Optional[str]) -> Optional[str]:
    """`--vae-from ARTIFACT` on a recipe whose `model` does not name a VAE: the model takes the
    artifact's VAE preset (its world_model.vae), so the artifact's VAE weights fit. Sets
    recipe.model["vae"] and returns a line saying so, or None where nothing changes (a run's vae/
    folder, which has no config; a recipe that names its VAE, which must then fit; init_from, whose
    checkpoint brings its own VAE; the same preset)."""
    path = os.path.join(vae_from or "", "config.json")
    if not vae_from or recipe.init_from or "vae" in recipe.model or not os.path.isfile(path):
        return None
    with open(path) as f:
        theirs = json.load(f).get("world_model", {}).get("vae")
    ours = model_config(recipe).vae
    if not theirs or theirs == ours:
        return None
    recipe.model = {**recipe.model, "vae": theirs}
    return (f"--vae-from {vae_from}: its VAE is '{theirs}' (the recipe's preset has '{ours}'); "
            f"the model takes '{theirs}'")


def model_config(recipe: RecipeConfig, init=None) -> WorldModelConfig:
    """The world model's config: the preset (or the starting checkpoint's) with the recipe's `model`
    overrides; `und` and `shift` are dicts of UnderstandingConfig / flow.ShiftConfig fields merged into
    the base's."""
    from dataclasses import replace
    base = init[0] if init else WorldModelConfig.preset(recipe.preset)
    over = dict(recipe.model)
    if isinstance(over.get("shift"), dict):
        over["shift"] = replace(base.shift, **over["shift"])
    und = dict(over.get("und", {}))
    if recipe.keypoints_from:
        from training.perception import read_keypoint_doc
        kp = read_keypoint_doc(recipe.keypoints_from)["config"]
        und.update(keypoint_tasks=list(kp["tasks"]), keypoint_image_size=kp["image_size"], keypoint_width=kp["width"])
    if und:
        over["und"] = replace(base.und, **und)
    return replace(base, **over)


def load_keypoints(und: nn.Module, recipe: RecipeConfig, cameras: List[str]) -> None:
    """Put the recipe's keypoint artifact's weights into the understanding encoder and freeze them; its
    camera must be the one the action sources were recorded with."""
    from training.perception import keypoint_weights, read_keypoint_doc
    doc = read_keypoint_doc(recipe.keypoints_from)
    named = doc.get("camera_name")
    wrong = sorted({c for c in cameras if named and c != named})
    if wrong:
        raise ValueError(f"keypoints_from {recipe.keypoints_from} was trained on the {named!r} camera, the recipe's "
                         f"action sources use {wrong}")
    net = und.image.keypoints
    net.load_state_dict(keypoint_weights(recipe.keypoints_from))
    net.requires_grad_(False)


# Kept normalisation vs new data: warn above this reach (Normalization.reach; ~2 for matching data).
NORM_REACH_WARN = 6.0

# The world model's layers that read or write joint values: what a new robot cannot inherit.
JOINT_LAYERS = ("proprio_in.", "act_in.", "act_out.")


def starting_weights(recipe: RecipeConfig):
    """(config, parts, meta) that fine-tuning from recipe.init_from starts with: the checkpoint's
    own, or with the recipe's `model` overrides applied when its weights still fit. With
    recipe.new_embodiment the recipe's joint_names replace the checkpoint's (their count sets
    action_dim and proprio_dim unless `model` says otherwise) and the joint layers (JOINT_LAYERS)
    start new; every other weight (VAE, understanding encoder, video and action experts) is kept.
    Sets recipe.joint_names to the checkpoint's when the recipe names none."""
    from kairos_model.checkpoint import load_checkpoint
    init_cfg, init_parts = load_checkpoint(recipe.init_from)
    with open(os.path.join(recipe.init_from, "config.json")) as f:
        init_meta = json.load(f)["meta"]
    init = (init_cfg, init_parts, init_meta)
    theirs = list(init_meta.get("joint_names") or [])
    if recipe.new_embodiment:
        if not recipe.joint_names:
            raise ValueError("new_embodiment needs joint_names: the new robot's joints, in command order")
        n = len(recipe.joint_names)
        recipe.model = {"action_dim": n, "proprio_dim": n, **recipe.model}
        print(f"new embodiment: {recipe.init_from} acted on {theirs or init_cfg.action_dim}; this recipe's "
              f"robot has {recipe.joint_names}. The joint layers ({', '.join(j[:-1] for j in JOINT_LAYERS)}) "
              "start new and the normalisation comes from this recipe's data; every other weight is kept.")
    elif theirs and recipe.joint_names and theirs != recipe.joint_names:
        raise ValueError(f"init_from {recipe.init_from} acts on {theirs}, the recipe names {recipe.joint_names} "
                         "(another robot: set new_embodiment: true to keep everything but the joint layers)")
    recipe.joint_names = recipe.joint_names or theirs
    cfg = model_config(recipe, init)
    if cfg == init_cfg and not recipe.new_embodiment:
        return init
    parts_new = build_parts(cfg)                # overrides on the starting checkpoint: its weights must fit
    for name, module in parts_new.items():
        state = init_parts[name].state_dict()
        new_ok = ("image.keypoints.", "image.keypoint_token.", "image.task_embed", "keypoint_gate.") \
            if name == "understanding" and recipe.keypoints_from else ()
        if name == "world_model" and recipe.new_embodiment:
            state = {k: v for k, v in state.items() if not k.startswith(JOINT_LAYERS)}
            new_ok = JOINT_LAYERS
        try:
            missing, unexpected = module.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise ValueError(f"the recipe's model overrides {recipe.model} change the shape of "
                             f"{recipe.init_from}'s {name} weights: {str(e)[:300]}") from None
        missing = [k for k in missing if not k.startswith(new_ok)]
        if missing or unexpected:
            raise ValueError(f"the recipe's model overrides {recipe.model} do not fit {recipe.init_from}'s "
                             f"{name} weights: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return cfg, parts_new, init_meta


def run(recipe: RecipeConfig, args) -> dict:
    D = Dist()
    torch.manual_seed(recipe.seed)
    if not D.cuda:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // D.world))
    init = starting_weights(recipe) if recipe.init_from else None
    cfg = model_config(recipe, init)
    if recipe.joint_names and len(recipe.joint_names) != cfg.action_dim:
        raise ValueError(f"recipe has {len(recipe.joint_names)} joint names, the model acts on {cfg.action_dim}")
    os.makedirs(recipe.out, exist_ok=True)
    if D.main:
        with open(os.path.join(recipe.out, "recipe.json"), "w") as f:
            json.dump(__import__("dataclasses").asdict(recipe), f, indent=2)
    parts = build_parts(cfg)
    cache: dict = {}
    # normalisation from the stage-III (action) sources
    act_sources = [s for st in recipe.stages for s in st.sources if s.actions and not s.aux_only]
    if act_sources:
        eps = []
        for s in act_sources:
            key = source_key(s)
            if key not in cache:
                cache[key] = load_episodes(s, recipe.out, recipe.joint_names, D)
            eps += cache[key]
        norm = Normalization.from_episodes(eps, recipe.relative_actions, cfg.action_horizon)
        control_dt = episodes_control_dt(eps)
        if init and "proprio" in init[2] and not (recipe.renormalize or recipe.new_embodiment):   # keep its scaling
            kept = Normalization.from_meta(init[2])
            if kept.relative == recipe.relative_actions:
                reach = kept.reach(norm)
                if D.main and reach.max() > NORM_REACH_WARN:
                    far = ", ".join(f"{n} {r:.0f}" for n, r in zip(recipe.joint_names or range(len(reach)), reach)
                                    if r > NORM_REACH_WARN)
                    print(f"warning: this data's actions reach far outside the normalisation kept from "
                          f"{recipe.init_from} (mean offset + 2 std, in its std: {far}; about 2 is a match): "
                          f"a new task or range of motion? set `renormalize: true` to compute it from this data "
                          f"(the weights are kept either way)")
                norm = kept
            elif D.main:
                print("relative_actions differs from the starting weights' action form: the action "
                      "normalisation is computed from this recipe's data")
    else:
        J = cfg.proprio_dim
        control_dt = 0.1
        norm = Normalization(np.zeros(J), np.ones(J), np.zeros(cfg.action_dim), np.ones(cfg.action_dim))
    if args.eval_only:
        from kairos_model.checkpoint import load_checkpoint
        _, parts = load_checkpoint(os.path.join(recipe.out, "artifact"))
        with open(os.path.join(recipe.out, "artifact", "config.json")) as f:
            latent_scale = json.load(f)["meta"]["latent_scale"]
    elif init:
        parts, latent_scale = init[1], init[2]["latent_scale"]
        parts["vae"].eval().requires_grad_(False)
    else:
        latent_scale = _vae_stage(recipe, parts["vae"], D, args, norm)
    gated = [st.name for st in recipe.stages if st.gate_weight > 0]
    if gated and not (cfg.und.keypoint_tasks and cfg.und.keypoint_select):
        raise ValueError(f"stages {gated} have gate_weight > 0, which needs a keypoint token with "
                         "model.und.keypoint_select: true (and keypoints_from)")
    if recipe.keypoints_from and not args.eval_only:
        load_keypoints(parts["understanding"], recipe, [s.camera for s in act_sources if s.kind == "sim_expert"])
    env_norms = stage_env_norms(recipe, cache, D)
    pos_head = None
    if env_norms:
        widths = {len(n.names) for n in env_norms.values()}
        if len(widths) > 1:
            raise DatasetError(f"the stages' environment states differ in width: {sorted(widths)}")
        pos_head = PositionHead(cfg.und.image_out_tokens, cfg.dim, widths.pop())
    vae = parts["vae"].to(D.device)
    tr = WorldModelTrainable(parts, vae, latent_scale, pos_head).to(D.device)
    stage_names = [s.name for s in recipe.stages]
    only = args.only or stage_names
    results: Dict[str, dict] = {}
    ema_final = None
    for si, st in enumerate(recipe.stages):
        if st.name not in only or args.eval_only:
            continue
        env_norm = env_norms.get(st.name)
        srcs = [build_source(s, recipe, cfg, st.resolution, norm, D, cache, env_norm) for s in st.sources]
        mix = Mixture([x for x, s in zip(srcs, st.sources) if not s.aux_only],
                      [s.weight for s in st.sources if not s.aux_only])
        aux_srcs = [x for x, s in zip(srcs, st.sources) if s.aux_only]
        with_actions = st.objective == "video+action"

        def loss_fn(model, step, micro, st=st, mix=mix, si=si, with_actions=with_actions, aux_srcs=aux_srcs):
            rng, gen = _rng(recipe.seed, D.rank, si + 1, step, micro)
            b = mix.sample(rng, st.batch, st.frames_at(step))
            aux = None
            if aux_srcs:
                aux = aux_srcs[int(rng.integers(len(aux_srcs)))].sample(rng, st.aux_batch or st.batch)
            return model(b, gen, with_actions, st.anchors, st.aux_weight, aux, st.gate_weight)

        res = train_loop(f"stage {st.name}", tr, loss_fn, st.steps, st.lr, st.warmup,
                         os.path.join(recipe.out, st.name), D, grad_accum=st.grad_accum,
                         ema_decay=recipe.ema_decay, checkpoint_every=recipe.checkpoint_every,
                         log_every=recipe.log_every, samples_per_step=st.batch, fsdp=recipe.fsdp,
                         stop_after=args.stop_after if args.stop_stage == st.name else None,
                         max_seconds=st.minutes * 60 if st.minutes else None)
        results[st.name] = {"final_loss": float(np.mean(res["losses"][-20:])), "steps": res["steps"],
                            "seconds": res["seconds"]}
        if D.main and st.objective == "video":        # what this stage taught, on its own EMA weights
            live = {k: v.detach().clone() for k, v in tr.state_dict().items()}
            tr.load_state_dict(res["ema"])
            tr.eval()
            results[st.name]["next_frame"] = eval_next_frame(tr, st.resolution)
            tr.train()
            tr.load_state_dict(live)
        if D.main:
            with open(os.path.join(recipe.out, st.name, "losses.json"), "w") as f:
                json.dump(res["losses"], f)
        ema_final = res["ema"]
    if not D.main:
        D.barrier()
        return {}
    # evaluate and export the EMA weights
    if ema_final is not None:
        tr.load_state_dict(ema_final)
    tr.eval()
    if args.eval_only:
        with open(os.path.join(recipe.out, "metrics.json")) as f:
            results = json.load(f).get("stages", {})
    metrics: Dict[str, dict] = {"stages": results, "latent_scale": latent_scale}
    print("evaluating on held-out data ...")
    metrics["next_frame"] = eval_next_frame(tr, recipe.stages[0].resolution if recipe.stages else 64)
    act_srcs = [s for s in act_sources if s.kind == "sim_expert"]
    if act_srcs and recipe.eval_episodes > 0:
        from kairos_sim.metaworld_sim import TEST_VARIATIONS
        held = []
        for s in act_srcs:
            hs = SourceConfig(kind="sim_expert", tasks=s.tasks, episodes=max(1, recipe.eval_episodes // max(1, len(s.tasks))),
                              first_variation=TEST_VARIATIONS, actions=True, camera=s.camera)
            held += load_episodes(hs, recipe.out, recipe.joint_names, D, sync=False)
        metrics["actions"] = eval_actions(tr, held, norm, recipe.stages[-1].resolution)
        if pos_head is not None and not args.eval_only:
            last = [st.name for st in recipe.stages if st.name in env_norms][-1]
            if all(e.env_state is not None for e in held):
                metrics["positions"] = eval_positions(tr, held, env_norms[last], recipe.stages[-1].resolution)
            else:
                print("held-out episodes lack environment states (collected before they were recorded): "
                      "the position head is not evaluated")
    art = os.path.join(recipe.out, "artifact")
    if args.eval_only:
        with open(os.path.join(art, "config.json")) as f:
            doc = json.load(f)
        doc["meta"]["metrics"] = metrics
        write_text_atomic(os.path.join(art, "config.json"), json.dumps(doc, indent=2))
        write_text_atomic(os.path.join(recipe.out, "metrics.json"), json.dumps(metrics, indent=2))
        _print_metrics(metrics)
        return metrics
    instr = sorted({e.task for eps in cache.values() for e in eps})
    cams = sorted({s.camera for st in recipe.stages for s in st.sources if s.kind == "sim_expert"})
    save_checkpoint(art, cfg, {"world_model": tr.wm, "vae": vae, "understanding": tr.und}, meta={
        "joint_names": recipe.joint_names, "latent_scale": latent_scale, **norm.to_dict(),
        "instructions": instr, "recipe": recipe.name, "stages": [s for s in stage_names if s in only],
        "metrics": metrics, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "arithmetic": arithmetic(), "torch": torch.__version__, "control_dt": control_dt, **({"camera": cams[0]} if len(cams) == 1 else {})})
    write_text_atomic(os.path.join(recipe.out, "metrics.json"), json.dumps(metrics, indent=2))
    _print_metrics(metrics)
    print(f"artifact: {art}")
    D.barrier()
    return metrics


def _print_metrics(m: dict) -> None:
    nf = m["next_frame"]

    def model_psnr(f: dict) -> str:
        mean = f.get("next_frame_mean_psnr_db")
        return (f"{f['next_frame_psnr_db']:.2f} dB (sampled, {f.get('sampler_steps', 10)} steps)"
                + ("" if mean is None else f", {mean:.2f} dB (its conditional mean, 1 step)"))
    print(f"stage I next-frame PSNR (held-out physics clips): copy-last-frame {nf['copy_last_psnr_db']:.2f} dB, "
          f"copy-last-frame through the VAE {nf.get('copy_last_latent_psnr_db', float('nan')):.2f} dB "
          f"(VAE ceiling {nf['vae_ceiling_psnr_db']:.2f} dB)")
    for name, st in m.get("stages", {}).items():       # measured as each video stage ended
        if "next_frame" in st:
            print(f"  the model after stage {name}: {model_psnr(st['next_frame'])}")
    print(f"  the final model: {model_psnr(nf)}")
    if "actions" in m:
        a = m["actions"]
        print(f"stage III action error (held-out episodes, {a['heldout_episodes']}): model {a['action_mae_rad']:.4f} rad,"
              f" mean-action baseline {a['mean_action_mae_rad']:.4f} rad")
    if "positions" in m:
        p = m["positions"]
        print(f"position head (held-out frames, {p['frames']}): " + ", ".join(
            f"{g} {e:.1f} cm (mean baseline {p['mean_baseline_error_cm'][g]:.1f})" for g, e in p["error_cm"].items())
              + "; first frames: " + ", ".join(f"{g} {e:.1f} cm (mean baseline {p['first_frame_mean_baseline_error_cm'][g]:.1f})"
                                             for g, e in p["first_frame_error_cm"].items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="YAML recipe (training/recipes/*.yaml)")
    ap.add_argument("--out", help="run directory (overrides the recipe's out)")
    ap.add_argument("--only", nargs="+", help="train only these stages (e.g. III: the no-curriculum ablation)")
    ap.add_argument("--vae-from", help="use the VAE of another run's vae/ directory, or of an artifact (e.g. "
                                       "artifacts/tiny_button_press), instead of training one; from an artifact, the model "
                                       "takes its VAE preset unless the recipe's model names one")
    ap.add_argument("--data", help="stage-III LeRobot dataset replacing the recipe's action sources")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML",
                    help="override top-level recipe keys, e.g. --set seed=1 eval_episodes=0")
    ap.add_argument("--stage-set", nargs="*", default=[], metavar="STAGE.KEY=YAML",
                    help="override one stage's keys, e.g. --stage-set III.steps=648 III.minutes=null (the "
                         "no-curriculum ablation at the curriculum's step count)")
    ap.add_argument("--print-recipe", action="store_true",
                    help="print the recipe as it would run (its base: chain, --set, --stage-set, --out and --data "
                         "applied) as YAML, and exit without training")
    ap.add_argument("--eval-only", action="store_true", help="recompute the held-out metrics of a finished run")
    ap.add_argument("--stop-after", type=int, help="interrupt after this many steps (resume tests)")
    ap.add_argument("--stop-stage", default=None, help="the stage --stop-after applies to (vae, I, II, III)")
    args = ap.parse_args(argv)
    import yaml
    over = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.out:
        over["out"] = args.out
    recipe = load_recipe(args.recipe, over, args.stage_set)
    if args.data:
        for st in recipe.stages:
            for s in st.sources:
                if s.actions and not s.aux_only:
                    s.kind, s.path, s.command_joints = "lerobot", args.data, []   # labelled when converted
    adopted = adopt_vae_preset(recipe, args.vae_from)
    if adopted and int(os.environ.get("RANK", "0")) == 0:
        print(adopted)
    if args.print_recipe:
        import dataclasses
        print(yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False, width=120), end="")
        return 0
    if args.stop_after is not None and args.stop_stage is None:
        args.stop_stage = recipe.stages[0].name if recipe.stages else "vae"
    run(recipe, args)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A plain behaviour-cloning baseline: small CNN over the camera frame + MLP with the joint state ->
the action chunk [H, A] directly (MSE on normalised actions). Trained on the same LeRobot
demonstrations for a wall-clock budget, and run by the same ActCore as the world model (it has the
engine interface: reset(), step(observation, sample) -> ActionPrediction).

    kairos train-bc --data runs/tiny/data/button-press-topdown_40ep_v0 --minutes 5 --out runs/bc
    kairos evaluate --artifact runs/bc --tasks button-press-topdown-v3

With several tasks in the data (MT10), the policy is conditioned on the instruction by a one-hot
task code (the instructions seen in training, in sorted order); an unknown instruction is an error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from tqdm import tqdm

FORMAT = "kairos-bc-1"


@dataclass
class BCConfig:
    """image_size: input side. channels: CNN widths (each conv halves the side). head: how the last
    feature map [C, h, w] becomes a vector: "avgpool" (averaged to 2x2: 4C numbers; where a small
    object is gets blurred away) or "spatial_softmax" (per channel, a softmax over the map and the
    expected (x, y) under it: 2C keypoint coordinates, the head robot-learning policies use to find
    small objects). hidden: MLP width. horizon / action_dim / proprio_dim: the chunk and joint sizes.
    joint_names: the action order. control_hz: the demonstrations' rate (one chunk step per tick).
    relative: the chunk is offsets from the current joint positions (else absolute targets).
    instructions: the task texts the policy is conditioned on (one-hot; empty or one entry:
    unconditioned). aux_dim: size of an auxiliary head that predicts the privileged simulator state
    (object and goal positions) from the image features during training (0: none); it is never an
    input, so the policy still acts from pixels and joints alone."""
    image_size: int = 64
    channels: List[int] = field(default_factory=lambda: [32, 64, 128, 128])
    head: str = "avgpool"
    hidden: int = 256
    horizon: int = 8
    action_dim: int = 8
    proprio_dim: int = 8
    joint_names: List[str] = field(default_factory=list)
    instructions: List[str] = field(default_factory=list)
    control_hz: float = 10.0
    relative: bool = False
    aux_dim: int = 0

    @property
    def n_tasks(self) -> int:
        return len(self.instructions) if len(self.instructions) > 1 else 0


class SpatialSoftmax(nn.Module):
    """features [B, C, h, w] -> keypoints [B, 2C]: per channel the expected (x, y) in [-1, 1] under a
    softmax over the h x w positions (with a learned temperature)."""

    def __init__(self):
        super().__init__()
        self.log_temp = nn.Parameter(torch.zeros(()))

    def forward(self, f):
        B, C, h, w = f.shape
        p = torch.softmax(f.flatten(2) / self.log_temp.exp(), dim=-1)                 # [B, C, h*w]
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=f.device, dtype=f.dtype),
                                torch.linspace(-1, 1, w, device=f.device, dtype=f.dtype), indexing="ij")
        x = (p * xs.flatten()).sum(-1)
        y = (p * ys.flatten()).sum(-1)
        return torch.cat([x, y], dim=1)                                                 # [B, 2C]


class BCPolicy(nn.Module):
    """image [B, 3, S, S] in [0, 1], proprio [B, J] (normalised), task [B] (index into
    cfg.instructions, when there are several) -> chunk [B, H, A] (normalised)."""

    def __init__(self, cfg: BCConfig):
        super().__init__()
        self.cfg = cfg
        layers, c_in = [], 3
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        if cfg.head == "avgpool":
            self.cnn, feat = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten()), c_in * 4
        elif cfg.head == "spatial_softmax":
            self.cnn, feat = nn.Sequential(*layers, nn.Conv2d(c_in, c_in, 1), SpatialSoftmax()), c_in * 2
        else:
            raise ValueError(f"BC head must be 'avgpool' or 'spatial_softmax', got {cfg.head!r}")
        self.mlp = nn.Sequential(nn.Linear(feat + cfg.proprio_dim + cfg.n_tasks, cfg.hidden), nn.SiLU(),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                                 nn.Linear(cfg.hidden, cfg.horizon * cfg.action_dim))
        if cfg.aux_dim:       # image features [feat] -> privileged state [E] (+ task code: which object)
            self.aux = nn.Sequential(nn.Linear(feat + cfg.n_tasks, cfg.hidden), nn.SiLU(),
                                     nn.Linear(cfg.hidden, cfg.aux_dim))

    def _code(self, task, like):
        """[one-hot task code [B, n_tasks]] for several tasks, [] for one."""
        return [nn.functional.one_hot(task, self.cfg.n_tasks).to(like.dtype)] if self.cfg.n_tasks else []

    def _aux(self, f, code):
        if not self.cfg.aux_dim:
            raise ValueError("this policy has no auxiliary head (aux_dim 0)")
        return self.aux(torch.cat([f] + code, dim=1))

    def forward(self, image, proprio, task=None, with_aux: bool = False):
        """-> chunk [B, H, A]; with_aux: (chunk, predicted privileged state [B, E] (normalised))."""
        f = self.cnn(image * 2 - 1)
        code = self._code(task, f)
        chunk = self.mlp(torch.cat([f, proprio] + code, dim=1)).view(-1, self.cfg.horizon, self.cfg.action_dim)
        return (chunk, self._aux(f, code)) if with_aux else chunk

    def aux_state(self, image, task=None):
        """The auxiliary head alone: image [B, 3, S, S] (+ task [B]) -> privileged state [B, E] (normalised)."""
        f = self.cnn(image * 2 - 1)
        return self._aux(f, self._code(task, f))


class BCEngine:
    """The engine interface over a BC policy (no memory: each step sees only the current frame)."""
    backend = "torch-bc"

    def __init__(self, path: str):
        with open(os.path.join(path, "config.json")) as f:
            doc = json.load(f)
        if doc.get("format") != FORMAT:
            raise ValueError(f"{path} is not a BC baseline (format {doc.get('format')!r})")
        self.cfg = BCConfig(**doc["config"])
        self.policy = BCPolicy(self.cfg)
        self.policy.load_state_dict(load_file(os.path.join(path, "policy.safetensors")))
        self.policy.eval()
        n = doc["normalization"]
        self.pm, self.ps = np.array(n["proprio"]["mean"]), np.array(n["proprio"]["std"])
        self.am, self.as_ = np.array(n["actions"]["mean"]), np.array(n["actions"]["std"])
        self.image_size = (self.cfg.image_size, self.cfg.image_size)
        self.joint_names = self.cfg.joint_names
        self.aux_norm = doc.get("aux_normalization")      # the position head's (--aux-weight), when it has one
        self.steps = 0

    def _task(self, instruction: str, n: int = 1):
        """[n] task indices for the one-hot code (None for a single-task policy); unknown: an error."""
        if not self.cfg.n_tasks:
            return None
        if instruction not in self.cfg.instructions:
            raise ValueError(f"BC policy was not trained on the instruction {instruction!r}; it knows "
                             f"{self.cfg.instructions}")
        return torch.full((n,), self.cfg.instructions.index(instruction))

    @torch.no_grad()
    def positions(self, images_nhwc: np.ndarray, instruction: str) -> np.ndarray:
        """The position head alone: camera frames [N, S, S, 3] uint8 of one task -> the environment state
        it reads from them [N, E], in the dataset's units (metres)."""
        if not self.cfg.aux_dim or not self.aux_norm:
            raise ValueError("this BC policy has no position head with its normalisation (train it with "
                             "kairos train-bc --aux-weight)")
        img = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2).float().div(255)
        pred = self.policy.aux_state(img, self._task(instruction, len(img))).double().numpy()
        return pred * np.asarray(self.aux_norm["std"]) + np.asarray(self.aux_norm["mean"])

    def reset(self):
        self.steps = 0

    @torch.no_grad()
    def step(self, obs, decode_future: bool = False, sample: bool = True, update_memory: bool = True):
        from kairos_model.engine import ActionPrediction
        self.steps += 1
        if not sample:
            return None
        img = torch.from_numpy(obs.image_hwc).permute(2, 0, 1).float().div(255).unsqueeze(0)
        j = torch.from_numpy((np.asarray(obs.joints) - self.pm) / self.ps).float().unsqueeze(0)
        task = self._task(obs.instruction)
        t0 = time.perf_counter()
        a = self.policy(img, j, task)[0].double().numpy() * self.as_ + self.am
        if self.cfg.relative:
            a = a + np.asarray(obs.joints, np.float64)
        return ActionPrediction(a, torch.zeros(0), self.steps, {"policy": 1e3 * (time.perf_counter() - t0)})


def train_bc(data: str, out: str, minutes: float, joint_names, batch: int = 64, lr: float = 1e-3,
             seed: int = 0, max_episodes: int = 0, horizon: int = 8, head: str = "avgpool",
             channels: Optional[List[int]] = None, relative: bool = False, shift: int = 4,
             image_size: int = 64, aux_weight: float = 0.0, aux_data=None) -> dict:
    """Trains for `minutes` of wall clock. head / channels / relative / image_size: BCConfig's
    (channels None: its default; frames are resized to image_size, so collect at that size). shift: random-shift augmentation, the whole batch's frames rolled by up to this many
    pixels each way (0: off). aux_weight > 0: also regress the dataset's observation.environment_state
    (privileged object/goal positions, normalised) from the image features with this loss weight; the
    data must have it (`kairos collect` records it). aux_data: more datasets (a path or a list) whose frames and
    environment states join that auxiliary loss only (its actions are never used): scenes labelled
    by the simulator, e.g. `kairos collect --max-steps 8 --keep-failures` over other variations."""
    from training.data.lerobot import JointMapping, LeRobotDataset
    from training.data.sources import EpisodeSource, Normalization
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ds = LeRobotDataset(data, mapping=JointMapping(joint_names))
    eps = list(ds)
    if max_episodes:                                   # the first N episodes of each task
        kept, seen = [], {}
        for e in eps:
            seen[e.task] = seen.get(e.task, 0) + 1
            if seen[e.task] <= max_episodes:
                kept.append(e)
        eps = kept
    if aux_weight > 0:
        lacking = [e.index for e in eps if e.env_state is None]
        if lacking:
            raise ValueError(f"--aux-weight needs observation.environment_state in every episode; {data} lacks "
                             f"it in {len(lacking)} of {len(eps)} (episodes {lacking[:5]}...): collect it again "
                             "with this version of kairos collect")
    norm = Normalization.from_episodes(eps, relative, horizon)     # relative: chunks as offsets from the joints
    instructions = sorted({e.task for e in eps})
    cfg = BCConfig(horizon=horizon, action_dim=len(joint_names), proprio_dim=len(joint_names),
                   joint_names=list(joint_names), instructions=instructions, head=head, control_hz=ds.fps,
                   relative=relative, image_size=image_size,
                   aux_dim=len(ds.env_state_names) if aux_weight > 0 else 0,
                   **({"channels": list(channels)} if channels else {}))
    src = EpisodeSource(eps, cfg.image_size, horizon, norm, True)
    frames = torch.cat([f for f in src.frames])                                      # [N, 3, S, S]
    states, chunks, tasks = [], [], []
    for i, e in enumerate(eps):
        T = len(e.state)
        _, st, ch, _, _ = src.clip(i, T)
        states.append(st)
        chunks.append(ch)
        tasks.append(np.full(len(st), instructions.index(e.task)))
    states = torch.from_numpy(np.concatenate(states)).float()
    chunks = torch.from_numpy(np.concatenate(chunks)).float()
    tasks = torch.from_numpy(np.concatenate(tasks)).long()
    env, env_norm = None, None
    if aux_weight > 0:        # [N, E], normalised over the demonstrations (kept in config.json)
        env = torch.from_numpy(np.concatenate([e.env_state for e in eps])).float()
        mu, sd = env.mean(0), env.std(0).clamp_min(1e-3)
        env = (env - mu) / sd
        env_norm = {"names": ds.env_state_names, "mean": mu.tolist(), "std": sd.tolist()}
        if len(env) != len(frames):
            raise ValueError(f"{len(env)} environment-state rows for {len(frames)} frames")
    extra = None
    if aux_data:
        if aux_weight <= 0:
            raise ValueError("--aux-data needs --aux-weight > 0 (its frames only feed the auxiliary loss)")
        aux_data = [aux_data] if isinstance(aux_data, str) else list(aux_data)
        aeps = [e for d in aux_data for e in LeRobotDataset(d, mapping=JointMapping(joint_names))]
        bad = sorted({e.task for e in aeps} - set(instructions))
        if bad or any(e.env_state is None for e in aeps):
            raise ValueError(f"{aux_data}: every episode needs observation.environment_state and a task of {data} "
                             f"({instructions}); unknown tasks: {bad}")
        asrc = EpisodeSource(aeps, cfg.image_size, horizon, norm, True)
        extra = (torch.cat([f for f in asrc.frames]),
                 torch.from_numpy(np.concatenate([np.full(len(e.state), instructions.index(e.task)) for e in aeps])).long(),
                 (torch.from_numpy(np.concatenate([e.env_state for e in aeps])).float() - mu) / sd)
    pol = BCPolicy(cfg)
    opt = torch.optim.AdamW(pol.parameters(), lr=lr, weight_decay=1e-4)
    t0, step, losses, aux_losses = time.time(), 0, [], []
    bar = tqdm(desc="train bc", unit="step")
    while time.time() - t0 < minutes * 60:
        idx = torch.from_numpy(rng.integers(0, len(frames), batch))
        img = frames[idx]
        if shift:                                                     # random-shift augmentation
            dy, dx = rng.integers(-shift, shift + 1, 2)
            img = torch.roll(img, shifts=(int(dy), int(dx)), dims=(2, 3))
        if env is None:
            loss = la = (pol(img, states[idx], tasks[idx]) - chunks[idx]).pow(2).mean()
        else:
            pred, aux = pol(img, states[idx], tasks[idx], with_aux=True)
            la, le = (pred - chunks[idx]).pow(2).mean(), (aux - env[idx]).pow(2).mean()
            if extra is not None:                                     # as many labelled scenes again
                j = torch.from_numpy(rng.integers(0, len(extra[0]), batch))
                le = 0.5 * (le + (pol.aux_state(extra[0][j], extra[1][j]) - extra[2][j]).pow(2).mean())
            loss = la + aux_weight * le
            aux_losses.append(le.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(la.item())
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    bar.close()
    os.makedirs(out, exist_ok=True)
    save_file(pol.state_dict(), os.path.join(out, "policy.safetensors"))
    doc = {"format": FORMAT, "config": asdict(cfg), "normalization": norm.to_dict(), "data": data,
           "episodes": len(eps), "steps": step, "minutes": minutes, "shift": shift, "aux_weight": aux_weight, "aux_data": aux_data,
           "aux_normalization": env_norm, "final_loss": float(np.mean(losses[-50:])),
           **({"final_aux_loss": float(np.mean(aux_losses[-50:]))} if aux_losses else {}),
           # the simulator camera of the demonstrations (kairos collect records it), which `kairos
           # evaluate` renders unless told otherwise, as for world-model artifacts
           "meta": {"camera": ds.kairos_info["camera"]} if ds.kairos_info.get("camera") else {}}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(doc, f, indent=2)
    return doc


def main(argv=None) -> int:
    from kairos_sim.metaworld_sim import JOINT_NAMES
    ap = argparse.ArgumentParser(prog="kairos train-bc", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="LeRobot dataset (kairos collect)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-clock training budget")
    ap.add_argument("--episodes", type=int, default=0, help="use only the first N episodes of each task (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head", choices=["avgpool", "spatial_softmax"], default="avgpool",
                    help="image features: averaged to 2x2 (the baseline of the README tables) or keypoints")
    ap.add_argument("--channels", type=int, nargs="+", help="CNN widths, one stride-2 conv each "
                    "(default 32 64 128 128)")
    ap.add_argument("--relative", action="store_true",
                    help="predict the chunk as offsets from the current joint positions")
    ap.add_argument("--shift", type=int, default=4,
                    help="random-shift augmentation: frames rolled by up to this many pixels (0: off)")
    ap.add_argument("--image-size", type=int, default=64,
                    help="input side (frames resized to it; collect with kairos collect --image-size alike)")
    ap.add_argument("--aux-weight", type=float, default=0.0,
                    help="also learn to predict the privileged object/goal positions from the image "
                    "(observation.environment_state, training only) with this loss weight (0: off)")
    ap.add_argument("--aux-data", nargs="+", help="more datasets (kairos collect) whose frames and object/goal "
                    "positions join the auxiliary loss only; their actions are not used")
    args = ap.parse_args(argv)
    doc = train_bc(args.data, args.out, args.minutes, JOINT_NAMES, seed=args.seed, max_episodes=args.episodes,
                   head=args.head, channels=args.channels, relative=args.relative, shift=args.shift,
                   image_size=args.image_size, aux_weight=args.aux_weight, aux_data=args.aux_data)
    print(f"BC baseline: {doc['steps']} steps in {args.minutes} min on {doc['episodes']} episodes, final loss "
          f"{doc['final_loss']:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

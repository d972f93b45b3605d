"""Theorem 1 of the paper, as an experiment: a local window cannot recall what left it.

Task (synthetic long-horizon recall). A clip of T frames, N tokens each. In one of the first few
frames a cue is shown: one of K classes, written into every token of that frame. Every other frame
is noise. In the last frame a query marker appears, and the model must name the cue's class. The
cue is always more than `min_gap` frames before the query: farther than any stack of the local
layers (SWA + DSWA) can see, so only a persistent state can carry it (Theorem 1: the excess risk of
a window-only predictor is E[Var(m_t | window)] > 0; here it is the whole class entropy, and the
best window-only accuracy is chance, 1/K).

Two models of the same width and depth are trained the same way on CPU:
- swa_only: every layer sliding-window attention;
- hybrid:   SWA, DSWA and GatedDeltaNet layers (the Kairos memory).

    kairos experiment recall                  # trains both, prints accuracies, writes a plot
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from kairos_model.memory.hybrid import HybridMemory, HybridMemoryConfig


@dataclass
class RecallTaskConfig:
    """The recall task. classes: K. frames: clip length T. tokens_per_frame: N.
    cue_frames: the cue appears in one of the first `cue_frames` frames. features: input size.
    cue_strength: amplitude of the class signal. noise: std of the Gaussian noise on every token."""
    classes: int = 8
    frames: int = 48
    tokens_per_frame: int = 4
    cue_frames: int = 4
    features: int = 16
    cue_strength: float = 3.0
    noise: float = 1.0

    @property
    def min_gap(self) -> int:
        return self.frames - self.cue_frames


def make_batch(cfg: RecallTaskConfig, batch: int, gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Returns x [B, T, N, F] and labels [B]. Channel layout of F: [0:K) class one-hot, K cue flag,
    K+1 query flag, the rest noise; every token carries Gaussian noise (std cfg.noise) everywhere."""
    K, T, N, Fdim = cfg.classes, cfg.frames, cfg.tokens_per_frame, cfg.features
    x = cfg.noise * torch.randn(batch, T, N, Fdim, generator=gen)
    labels = torch.randint(0, K, (batch,), generator=gen)
    cue_at = torch.randint(0, cfg.cue_frames, (batch,), generator=gen)
    b = torch.arange(batch)
    x[b, cue_at, :, labels] += cfg.cue_strength
    x[b, cue_at, :, K] += cfg.cue_strength
    x[:, -1, :, K + 1] += cfg.cue_strength
    return x, labels


class RecallModel(nn.Module):
    """Linear embed -> memory stack -> mean of the last frame's tokens -> class logits."""

    def __init__(self, task: RecallTaskConfig, mem: HybridMemoryConfig):
        super().__init__()
        self.embed = nn.Linear(task.features, mem.dim)
        self.memory = HybridMemory(mem)
        self.head = nn.Linear(mem.dim, task.classes)

    def forward(self, x):                       # x: [B, T, N, F] -> logits [B, K]
        h, _ = self.memory(self.embed(x))
        return self.head(h[:, -1].mean(1))


def local_reach(cfg: HybridMemoryConfig) -> int:
    """Frames back the stack's attention layers can see, composed (GDN excluded)."""
    reach = 0
    for p in cfg.pattern:
        if p == "swa":
            reach += cfg.swa_window
        elif p.startswith("dswa"):
            reach += (cfg.dswa_taps - 1) * int(p[4:])
        elif p == "full":
            return 10**9
    return reach


MODELS: Dict[str, Tuple[str, ...]] = {
    "swa_only": ("swa", "swa", "swa", "swa"),
    "hybrid": ("swa", "dswa6", "gdn", "gdn"),
}


def train_one(name: str, task: RecallTaskConfig, steps: int, batch: int, lr: float, seed: int,
              dim: int = 64, start_frames: int = 12) -> dict:
    torch.manual_seed(seed)
    mem = HybridMemoryConfig(dim=dim, heads=4, head_dim=16, pattern=MODELS[name], swa_window=4,
                             dswa_taps=4, gdn_backend="torch", gdn_max_half_life=4.0 * task.frames *
                             task.tokens_per_frame)
    if local_reach(mem) >= task.min_gap:
        raise ValueError(f"{name}: local layers reach {local_reach(mem)} frames, not less than the "
                         f"cue-to-query gap {task.min_gap}; the task would not test memory")
    model = RecallModel(task, mem)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    t0 = time.time()
    bar = tqdm(range(steps), desc=f"train {name}", leave=False)
    for step in bar:
        # Curriculum over the clip length (the same for every model): gaps grow from short to the
        # evaluated length over the first half, so the memory gets a gradient signal early on.
        frames = min(task.frames, start_frames + (task.frames - start_frames) * 2 * step // steps)
        x, y = make_batch(replace(task, frames=frames), batch, gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    acc = evaluate(model, task, seed=10_000 + seed)
    return {"name": name, "pattern": list(mem.pattern), "local_reach_frames": local_reach(mem),
            "accuracy": acc, "losses": losses, "train_seconds": time.time() - t0}


@torch.no_grad()
def evaluate(model: RecallModel, task: RecallTaskConfig, seed: int, n: int = 2048) -> float:
    """Accuracy on n held-out clips (a generator seed never used in training)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    for _ in range(n // 256):
        x, y = make_batch(task, 256, gen)
        correct += (model(x).argmax(-1) == y).sum().item()
    model.train()
    return correct / (n // 256 * 256)


def plot(results, task, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in results:
        l = torch.tensor(r["losses"])
        smooth = l.unfold(0, 20, 1).mean(1) if len(l) >= 20 else l
        a.plot(smooth.numpy(), label=r["name"])
    a.axhline(torch.log(torch.tensor(float(task.classes))).item(), ls="--", c="gray", label="chance (ln K)")
    a.set_xlabel("step"); a.set_ylabel("train cross-entropy"); a.legend(); a.set_title("training")
    names = [r["name"] for r in results]
    b.bar(names, [100 * r["accuracy"] for r in results], color=["tab:blue", "tab:orange"][:len(names)])
    b.axhline(100 / task.classes, ls="--", c="gray", label=f"chance {100 / task.classes:.1f}%")
    b.set_ylabel("held-out accuracy (%)"); b.set_ylim(0, 100); b.legend()
    b.set_title(f"recall after a gap of >= {task.min_gap} frames")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="kairos experiment recall", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=RecallTaskConfig.frames)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--out", default="runs/recall", help="folder for results.json and recall.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    task = RecallTaskConfig(frames=args.frames)
    results = [train_one(n, task, args.steps, args.batch, args.lr, args.seed) for n in args.models]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"task": asdict(task), "args": vars(args),
                   "results": [{k: v for k, v in r.items() if k != "losses"} for r in results]}, f, indent=2)
    plot(results, task, os.path.join(args.out, "recall.png"))
    print(f"recall of a cue >= {task.min_gap} frames back, {task.classes} classes "
          f"(chance {100 / task.classes:.1f}%), {args.steps} steps, seed {args.seed}:")
    for r in results:
        print(f"  {r['name']:9s} pattern {'+'.join(r['pattern']):28s} local reach {r['local_reach_frames']:3d} "
              f"frames  accuracy {100 * r['accuracy']:5.1f}%  ({r['train_seconds']:.0f} s)")
    print(f"wrote {args.out}/results.json and {args.out}/recall.png")
    return {r["name"]: r["accuracy"] for r in results}


if __name__ == "__main__":
    main()

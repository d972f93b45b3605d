"""Cost per generated frame of `kairos generate` as the video grows, hybrid memory vs full attention.

One long generation per model (the `tiny` world model; weights do not change the cost), frame
times recorded; the cost per frame at length N is the mean over the 32 frames before N. The
baseline is the same model with every temporal mixer replaced by full causal attention.

    python bench/generate_scaling.py                  # lengths 33 ... 1025 frames, one table
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from kairos_model.generate import GenerateConfig, WorldGenerator
from kairos_model.understanding import UnderstandingEncoder
from kairos_model.vae import VideoVAE
from kairos_model.world_model import KairosWorldModel, WorldModelConfig


def frame_times(cfg: WorldModelConfig, frames: int, steps: int, desc: str):
    torch.manual_seed(0)
    gen = WorldGenerator(KairosWorldModel(cfg), VideoVAE(cfg.vae_config), UnderstandingEncoder(cfg.und))
    s = cfg.vae_config.spatial_down
    image = torch.rand(3, cfg.latent_hw[0] * s, cfg.latent_hw[1] * s)
    stamps = [time.perf_counter()]
    for _ in tqdm(gen.stream(image, "a red ball falls", GenerateConfig(frames=frames, steps=steps)),
                  total=frames, desc=desc, leave=False):
        stamps.append(time.perf_counter())
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[33, 129, 513, 1025])
    ap.add_argument("--steps", type=int, default=4, help="sampler steps per chunk")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    n = max(args.lengths)
    hybrid = WorldModelConfig.preset("tiny")
    full = WorldModelConfig.preset("tiny", memory=full_attention_memory(hybrid))
    times = {"hybrid": frame_times(hybrid, n, args.steps, "hybrid"),
             "full": frame_times(full, n, args.steps, "full attention")}
    rows = []
    for L in args.lengths:
        row = {"frames": L}
        for k, ts in times.items():
            window = ts[max(1, L - 32):L]
            row[f"{k}_ms_per_frame"] = 1e3 * sum(window) / len(window)
        rows.append(row)
    t = Table(title=f"kairos generate, tiny preset, {args.steps} sampler steps per chunk: ms per frame "
                    "(mean over the 32 frames before N)")
    for c in ("video length N", "hybrid ms/frame", "full-attention ms/frame", "full / hybrid"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(str(r["frames"]), f"{r['hybrid_ms_per_frame']:.1f}", f"{r['full_ms_per_frame']:.1f}",
                  f"{r['full_ms_per_frame'] / r['hybrid_ms_per_frame']:.2f}x")
    c = Console()
    c.print(t)
    ratio_h = rows[-1]["hybrid_ms_per_frame"] / rows[0]["hybrid_ms_per_frame"]
    ratio_f = rows[-1]["full_ms_per_frame"] / rows[0]["full_ms_per_frame"]
    c.print(f"cost per frame at {rows[-1]['frames']} / at {rows[0]['frames']} frames: hybrid {ratio_h:.2f}x, "
            f"full attention {ratio_f:.2f}x")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "hybrid_ratio": ratio_h, "full_ratio": ratio_f, "steps": args.steps}, f,
                      indent=2)


def full_attention_memory(cfg: WorldModelConfig):
    from dataclasses import replace
    return replace(cfg.memory, pattern=("full",) * len(cfg.memory.pattern))


if __name__ == "__main__":
    main()

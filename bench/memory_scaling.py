"""Streaming step latency and resident memory of the hybrid memory vs full causal attention.

Both stacks are the same size (the `tiny` preset; the baseline replaces every mixer with full
causal attention and a growing KV cache). For each history length the stream is really run up to
that many frames (prefilled in chunks through the streaming form), then one-frame steps are timed
from that state, interleaved across history lengths so machine noise hits all of them alike.

    python bench/memory_scaling.py                 # 16 ... 4096 frames, prints one table
    python bench/memory_scaling.py --out runs/memory_scaling.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import asdict

import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from kairos_model.memory.hybrid import HybridMemory, HybridMemoryConfig


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def prefill(model, states_at, histories, tokens, chunk, desc):
    """Stream random frames through `model`, keeping the state reached at each history length."""
    state = model.init_state(1, tokens)
    done = 0
    with torch.no_grad(), tqdm(total=max(histories), desc=desc, unit="frame", leave=False) as bar:
        for h in sorted(histories):
            while done < h:
                n = min(chunk, h - done)
                _, state = model(torch.randn(1, n, tokens, model.cfg.dim), state)
                done += n
                bar.update(n)
            states_at[h] = state


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--histories", type=int, nargs="+", default=[16, 64, 256, 1024, 4096])
    ap.add_argument("--tokens-per-frame", type=int, default=16)
    ap.add_argument("--reps", type=int, default=30, help="timed steps per history length")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    N = args.tokens_per_frame
    hybrid_cfg = HybridMemoryConfig.preset(args.preset)
    full_cfg = HybridMemoryConfig.preset(args.preset, pattern=("full",) * len(hybrid_cfg.pattern))
    models = {"hybrid": HybridMemory(hybrid_cfg).eval(), "full": HybridMemory(full_cfg).eval()}
    states = {name: {} for name in models}
    mem = {}
    for name, m in models.items():
        before = rss_mb()
        prefill(m, states[name], args.histories, N, chunk=64, desc=f"prefill {name}")
        mem[name] = rss_mb() - before
    x = torch.randn(1, 1, N, hybrid_cfg.dim)
    times = {(name, h): [] for name in models for h in args.histories}
    with torch.no_grad():
        for name, m in models.items():           # warm-up
            for h in args.histories:
                m(x, states[name][h])
        order = list(times)
        rng = random.Random(0)
        for _ in tqdm(range(args.reps), desc="timing", leave=False):
            rng.shuffle(order)                   # no history length always runs after the largest one
            for name, h in order:
                t0 = time.perf_counter()
                models[name](x, states[name][h])
                times[(name, h)].append(time.perf_counter() - t0)
    rows = []
    for h in args.histories:
        row = {"history_frames": h}
        for name in models:
            row[f"{name}_ms"] = 1e3 * statistics.median(times[(name, h)])
            row[f"{name}_state_mb"] = states[name][h].nbytes() / 2**20
        rows.append(row)
    h0, h1 = min(args.histories), max(args.histories)
    first, last = rows[0], rows[-1]
    summary = {
        "hybrid_latency_ratio": last["hybrid_ms"] / first["hybrid_ms"],
        "full_latency_ratio": last["full_ms"] / first["full_ms"],
        "hybrid_state_ratio": last["hybrid_state_mb"] / first["hybrid_state_mb"],
        "full_state_ratio": last["full_state_mb"] / first["full_state_mb"],
        "rss_growth_mb_during_prefill": mem,
    }
    table = Table(title=f"Streaming one-frame step, preset '{args.preset}', {N} tokens/frame, "
                        f"median of {args.reps} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for col in ("history (frames)", "hybrid ms", "hybrid state MB", "full-attn ms", "full-attn state MB",
                "full / hybrid latency"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["history_frames"]), f"{r['hybrid_ms']:.2f}", f"{r['hybrid_state_mb']:.3f}",
                      f"{r['full_ms']:.2f}", f"{r['full_state_mb']:.2f}", f"{r['full_ms'] / r['hybrid_ms']:.2f}x")
    console = Console()
    console.print(table)
    goal = "met" if summary["hybrid_latency_ratio"] <= 1.1 else "NOT met"
    console.print(f"hybrid latency at {h1} / at {h0} frames: {summary['hybrid_latency_ratio']:.3f}x "
                  f"(goal <= 1.1x: {goal}); full attention: {summary['full_latency_ratio']:.2f}x")
    console.print(f"state size at {h1} / at {h0} frames: hybrid {summary['hybrid_state_ratio']:.2f}x, "
                  f"full attention {summary['full_state_ratio']:.1f}x")
    result = {"config": {"hybrid": asdict(hybrid_cfg), "full": asdict(full_cfg), "tokens_per_frame": N,
                         "reps": args.reps}, "rows": rows, "summary": summary}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2, default=str)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

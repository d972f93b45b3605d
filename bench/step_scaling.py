"""Why the 4-step speed-up over 40 steps is what it is: a sampling control step splits into a fixed
part (frame -> VAE latent, understanding tokens, memory update: the context pass, once per frame)
and a per-sampler-step part (one pass of the prediction tokens). The speed-up of S_fast over S_slow
steps is (fixed + S_slow * step) / (fixed + S_fast * step): at most S_slow / S_fast (10x for 40 vs 4),
and 8x needs the fixed part below (S_slow - 8 S_fast) / 7 sampler steps (~1.1 steps for 40 vs 4).

This bench measures both parts and the step latency at both step counts, per model preset, side by
side in one run (rounds interleaved over presets and step counts; this machine is noisy). Latency
does not depend on the weights' values (no data-dependent control flow), so a preset is measured
with untrained weights; `--artifact` adds a trained one (e.g. the committed tiny artifact).

    python bench/step_scaling.py                                   # presets tiny and small, 40 vs 4
    python bench/step_scaling.py --artifact artifacts/tiny_button_press --presets tiny small --rounds 20
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench_util import torch_threads  # noqa: E402  (bench/ is on sys.path: run as a script or by the tests)


def engines_for(steps_list, preset=None, artifact=None):
    """One torch engine per step count: of an untrained preset, or of a trained artifact."""
    from kairos_model.checkpoint import build_parts
    from kairos_model.engine import TorchEngine, load_engine
    from kairos_model.world_model import WorldModelConfig
    if artifact:
        return [load_engine(artifact, backend="torch", sampler_steps=s).engine for s in steps_list]
    torch.manual_seed(0)
    parts = build_parts(WorldModelConfig.preset(preset, action_dim=8, proprio_dim=8))
    return [TorchEngine(parts["world_model"], parts["vae"], parts["understanding"], sampler_steps=s)
            for s in steps_list]


def measure(engines, rounds: int, warmup: int = 2):
    """engines -> per engine {latency_ms, fixed_ms, sampler_ms}: medians of a sampling step, the
    engines interleaved round by round."""
    from kairos_model.engine import Observation
    rng = np.random.default_rng(0)
    lat = [[] for _ in engines]
    fixed = [[] for _ in engines]
    samp = [[] for _ in engines]
    from tqdm import tqdm
    for i in tqdm(range(warmup + rounds), desc="step scaling", unit="round"):
        for k, eng in enumerate(engines):
            h, w = eng.image_size
            obs = Observation(rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                              rng.normal(size=eng.cfg.proprio_dim) * 0.1, "press the button top down")
            t0 = time.perf_counter()
            p = eng.step(obs)
            dt = 1e3 * (time.perf_counter() - t0)
            if i >= warmup:
                lat[k].append(dt)
                fixed[k].append(sum(v for key, v in p.timings_ms.items() if key != "sampler"))
                samp[k].append(p.timings_ms["sampler"])
    return [{"latency_ms": float(np.median(a)), "fixed_ms": float(np.median(b)), "sampler_ms": float(np.median(c))}
            for a, b, c in zip(lat, fixed, samp)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="*", default=["tiny", "small"], help="untrained presets to measure")
    ap.add_argument("--artifact", help="also a trained artifact (torch backend)")
    ap.add_argument("--slow-steps", type=int, default=40)
    ap.add_argument("--fast-steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the table as JSON")
    a = ap.parse_args(argv)
    if a.fast_steps < 1 or a.slow_steps <= a.fast_steps:
        raise SystemExit("need 1 <= --fast-steps < --slow-steps")
    with torch_threads(a.threads):
        return _run(a)


def _run(a) -> int:
    from rich.console import Console
    from rich.table import Table
    steps = [a.slow_steps, a.fast_steps]
    models = [(f"{p} (untrained)", engines_for(steps, preset=p)) for p in a.presets]
    if a.artifact:
        models.append((a.artifact, engines_for(steps, artifact=a.artifact)))
    res = measure([e for _, engs in models for e in engs], a.rounds)   # per model: slow, fast
    table = Table(title=f"sampling control step, torch eager, {a.threads} threads, median of {a.rounds} rounds")
    for c in ("model", "image", "fixed part ms", "per sampler step ms", "fixed / step",
              f"step @{a.slow_steps} ms", f"step @{a.fast_steps} ms", "speed-up"):
        table.add_column(c, justify="right")
    out = []
    for m, (label, engs) in enumerate(models):
        slow, fast = res[2 * m], res[2 * m + 1]
        per_step = fast["sampler_ms"] / a.fast_steps
        r = {"model": label, "image": list(engs[0].image_size), "fixed_ms": fast["fixed_ms"],
             "per_step_ms": per_step, "fixed_over_step": fast["fixed_ms"] / per_step,
             "slow_ms": slow["latency_ms"], "fast_ms": fast["latency_ms"],
             "speedup": slow["latency_ms"] / fast["latency_ms"]}
        out.append(r)
        table.add_row(label, "x".join(map(str, r["image"])), f"{r['fixed_ms']:.1f}", f"{per_step:.2f}",
                      f"{r['fixed_over_step']:.2f}", f"{r['slow_ms']:.1f}", f"{r['fast_ms']:.1f}",
                      f"{r['speedup']:.2f}x")
    Console(width=160).print(table)
    need = (a.slow_steps - 8 * a.fast_steps) / 7
    if need > 0:
        print(f"8x at {a.slow_steps} vs {a.fast_steps} steps needs fixed / step <= {need:.2f}")
    else:
        print(f"8x is out of reach at {a.slow_steps} vs {a.fast_steps} steps (at most {a.slow_steps / a.fast_steps:.1f}x)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"slow_steps": a.slow_steps, "fast_steps": a.fast_steps, "threads": a.threads,
                       "rounds": a.rounds, "rows": out}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

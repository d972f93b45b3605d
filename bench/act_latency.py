"""Control-step latency of the act node's core (camera message bytes -> clamped trajectory), per
stage, as the streaming history grows, and the deadline-miss rate at 10 Hz.

What one tick costs on the robot, without DDS transport: image conversion (sensor_msgs/Image
bytes -> RGB) and resize, VAE encode, memory update, sampler steps, action post-processing, and
(when asked) the imagined-frame decode. The stream is really run up to each history length (memory
updates only, as on the ticks that need no new chunk), then `--ticks` full ticks are timed there;
history lengths are interleaved so machine noise hits them alike.

    python bench/act_latency.py                        # tiny preset (untrained weights: same cost)
    python bench/act_latency.py --artifact artifacts/tiny_button_press --histories 0 1000 10000
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm


def build(args):
    from kairos_model.checkpoint import build_parts
    from kairos_model.engine import TorchEngine, load_engine
    from kairos_model.world_model import WorldModelConfig
    if args.artifact:
        return [load_engine(args.artifact, sampler_steps=args.sampler_steps).engine for _ in args.histories]
    torch.manual_seed(0)
    cfg = WorldModelConfig.preset("tiny", action_dim=8, proprio_dim=8)
    parts = build_parts(cfg)
    return [TorchEngine(parts["world_model"], parts["vae"], parts["understanding"], sampler_steps=args.sampler_steps)
            for _ in args.histories]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", help="a model directory; default: an untrained tiny model (same cost)")
    ap.add_argument("--histories", type=int, nargs="+", default=[0, 1000, 10000])
    ap.add_argument("--ticks", type=int, default=40, help="timed full ticks per history length")
    ap.add_argument("--sampler-steps", type=int, default=4)
    ap.add_argument("--camera", type=int, nargs=2, default=[480, 640], help="camera H W of the incoming message")
    ap.add_argument("--decode-future", action="store_true", help="also decode the imagined frames each tick")
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args(argv)
    from kairos_model.engine import Observation
    from kairos_ros.core.image import image_to_rgb, resize_rgb
    engines = build(args)
    S = engines[0].image_size[0]
    J = engines[0].cfg.proprio_dim
    rng = np.random.default_rng(0)
    H, W = args.camera
    msg_bytes = rng.integers(0, 255, (H, W, 3), dtype=np.uint8).tobytes()
    small = rng.integers(0, 255, (S, S, 3), dtype=np.uint8)
    joints = np.zeros(J)
    instr = "press the button from the top"
    for eng, h in zip(engines, args.histories):                      # advance each stream to its history
        eng.reset()
        for _ in tqdm(range(h), desc=f"stream to {h} frames", leave=False):
            eng.step(Observation(small, joints, instr), sample=False)
    per = {h: {"total": [], "image": []} for h in args.histories}
    order = [(i, h) for i, h in enumerate(args.histories) for _ in range(args.ticks)]
    random.Random(0).shuffle(order)
    for i, h in tqdm(order, desc="timed ticks"):
        t0 = time.perf_counter()
        rgb = resize_rgb(image_to_rgb("rgb8", H, W, W * 3, msg_bytes), S)
        t1 = time.perf_counter()
        pred = engines[i].step(Observation(rgb, joints, instr), decode_future=args.decode_future)
        np.clip(pred.actions, -3, 3)
        t2 = time.perf_counter()
        per[h]["total"].append(1e3 * (t2 - t0))
        per[h]["image"].append(1e3 * (t1 - t0))
        for k, v in pred.timings_ms.items():
            per[h].setdefault(k, []).append(v)
    table = Table(title=f"act tick latency (ms), tiny preset, {args.sampler_steps} sampler steps, "
                        f"{torch.get_num_threads()} threads, camera {W}x{H} -> {S}x{S}")
    stages = [k for k in per[args.histories[0]] if k != "total"]
    for c in ["history (frames)", "p50", "p99", *[f"{k} p50" for k in stages], "miss @10Hz", "state MB"]:
        table.add_column(c, justify="right")
    res = {}
    for i, h in enumerate(args.histories):
        tot = np.array(per[h]["total"])
        miss = float((tot > 100.0).mean())
        res[h] = {"p50": float(np.percentile(tot, 50)), "p99": float(np.percentile(tot, 99)), "miss_10hz": miss,
                  **{k: float(np.median(per[h][k])) for k in stages}, "state_mb": engines[i].state_bytes() / 2**20}
        table.add_row(str(h), f"{res[h]['p50']:.1f}", f"{res[h]['p99']:.1f}",
                      *[f"{res[h][k]:.2f}" for k in stages], f"{100 * miss:.1f}%", f"{res[h]['state_mb']:.2f}")
    Console().print(table)
    first, last = res[args.histories[0]], res[args.histories[-1]]
    print(f"p50 at {args.histories[-1]} frames / at {args.histories[0]}: {last['p50'] / first['p50']:.2f}x "
          f"(flat = 1.0); state size {last['state_mb']:.2f} MB at both")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": res}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

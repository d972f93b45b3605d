"""Control-step latency of the act node's core (camera message bytes -> clamped trajectory), per
stage, as the streaming history grows, and the deadline-miss rate at 10 Hz.

What one tick costs on the robot, without DDS transport: image conversion (sensor_msgs/Image
bytes -> RGB) and resize, VAE encode, memory update, sampler steps, action post-processing, and
(when asked) the imagined-frame decode. The stream is really run up to each history length (memory
updates only, as on the ticks that need no new chunk), then `--ticks` full ticks are timed there;
history lengths are interleaved so machine noise hits them alike.

    python bench/act_latency.py                        # the committed tiny artifact, torch
    python bench/act_latency.py --backends torch onnx --histories 0 1000 10000
    python bench/act_latency.py --backends torch onnx onnx-int8      # int8: the artifact exported with --quantize int8
    python bench/act_latency.py --backends onnx onnx-spin --threads 1 2   # thread count and spinning, side by side
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

from bench_util import torch_threads


def build(args):
    """One engine per (backend, threads, history), so every stream really runs to its own history length.
    Keys are (label, threads, history); the label is the backend name as given on the command line."""
    from kairos_model.checkpoint import build_parts
    from kairos_model.engine import TorchEngine, load_engine
    from kairos_model.world_model import WorldModelConfig
    keys = [(b, t, h) for b in args.backends for t in args.threads for h in args.histories]
    if args.artifact:
        from training.export import ensure_exported
        exported = ensure_exported(args.artifact) if set(args.backends) - {"torch", "onnx-int8"} else None
        int8 = ensure_exported(args.artifact, quantize=("int8",)) if "onnx-int8" in args.backends else None
        where = {"torch": args.artifact, "onnx-int8": int8}
        from kairos_model.backends.onnx_engine import OnnxEngine
        engines = []
        for b, t, _ in keys:
            if b == "onnx-spin":            # onnxruntime's own default: worker threads spin between runs
                engines.append(OnnxEngine.from_artifact(exported, sampler_steps=args.sampler_steps, threads=t,
                                                        spinning=True))
                continue
            engines.append(load_engine(where.get(b, exported), backend=b.split("-")[0], threads=t,
                                       sampler_steps=args.sampler_steps, quantized=b == "onnx-int8").engine)
        return keys, engines
    if args.backends != ["torch"]:
        raise SystemExit("the onnx/tensorrt backends need --artifact (an untrained preset is torch only)")
    torch.manual_seed(0)
    cfg = WorldModelConfig.preset("tiny", action_dim=8, proprio_dim=8)
    parts = build_parts(cfg)
    return keys, [TorchEngine(parts["world_model"], parts["vae"], parts["understanding"],
                              sampler_steps=args.sampler_steps) for _ in keys]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", default="artifacts/tiny_button_press",
                    help="a checkpoint or exported artifact ('' : an untrained tiny model, torch only)")
    ap.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "onnx", "onnx-spin", "onnx-int8", "tensorrt"],
                    help="compared side by side, ticks interleaved (onnx-spin: onnx with onnxruntime's "
                         "spinning worker threads, its library default; the engine turns spinning off)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="intra-op threads per engine (the act node's inference_threads), compared side by side")
    ap.add_argument("--histories", type=int, nargs="+", default=[0, 1000, 10000])
    ap.add_argument("--ticks", type=int, default=40, help="timed full ticks per history length")
    ap.add_argument("--sampler-steps", type=int, default=4)
    ap.add_argument("--camera", type=int, nargs=2, default=[480, 640], help="camera H W of the incoming message")
    ap.add_argument("--decode-future", action="store_true", help="also decode the imagined frames each tick")
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args(argv)
    with torch_threads():          # run() sets the pool per variant; it is given back as found
        return run(args)


def run(args) -> int:
    from kairos_model.engine import Observation
    from kairos_ros.core.image import image_to_rgb, resize_rgb
    keys, engines = build(args)
    S = engines[0].image_size[0]
    J = engines[0].cfg.proprio_dim
    rng = np.random.default_rng(0)
    H, W = args.camera
    msg_bytes = rng.integers(0, 255, (H, W, 3), dtype=np.uint8).tobytes()
    small = rng.integers(0, 255, (S, S, 3), dtype=np.uint8)
    joints = np.zeros(J)
    instr = "press the button from the top"
    for eng, (b, t, h) in zip(engines, keys):                        # advance each stream to its history
        eng.reset()
        torch.set_num_threads(t)
        for _ in tqdm(range(h), desc=f"{b} {t}t: stream to {h} frames", leave=False):
            eng.step(Observation(small, joints, instr), sample=False)
    per = {k: {"total": [], "image": []} for k in keys}
    order = [(i, k) for i, k in enumerate(keys) for _ in range(args.ticks)]
    random.Random(0).shuffle(order)
    for i, k in tqdm(order, desc="timed ticks"):
        torch.set_num_threads(k[1])                                  # torch's pool is global; onnx's per session
        t0 = time.perf_counter()
        rgb = resize_rgb(image_to_rgb("rgb8", H, W, W * 3, msg_bytes), S)
        t1 = time.perf_counter()
        pred = engines[i].step(Observation(rgb, joints, instr), decode_future=args.decode_future)
        np.clip(pred.actions, -3, 3)
        t2 = time.perf_counter()
        per[k]["total"].append(1e3 * (t2 - t0))
        per[k]["image"].append(1e3 * (t1 - t0))
        for name, v in pred.timings_ms.items():
            per[k].setdefault(name, []).append(v)
    table = Table(title=f"act tick latency (ms), {args.sampler_steps} sampler steps, "
                        f"camera {W}x{H} -> {S}x{S}")
    stages = [k for k in per[keys[0]] if k != "total"]
    for c in ["backend", "threads", "history (frames)", "p50", "p99", *[f"{k} p50" for k in stages], "miss @10Hz", "state MB"]:
        table.add_column(c, justify="right")
    res = {}
    for i, (b, t, h) in enumerate(keys):
        tot = np.array(per[(b, t, h)]["total"])
        miss = float((tot > 100.0).mean())
        r = {"backend": b, "threads": t, "history": h, "p50": float(np.percentile(tot, 50)),
             "p99": float(np.percentile(tot, 99)), "miss_10hz": miss,
             **{k: float(np.median(per[(b, t, h)][k])) for k in stages}, "state_mb": engines[i].state_bytes() / 2**20}
        res[f"{b}/{t}t/{h}"] = r
        table.add_row(b, str(t), str(h), f"{r['p50']:.1f}", f"{r['p99']:.1f}", *[f"{r[k]:.2f}" for k in stages],
                      f"{100 * miss:.1f}%", f"{r['state_mb']:.2f}")
    Console(width=200).print(table)
    variants = [(b, t) for b in args.backends for t in args.threads]
    for b, t in variants:
        first, last = res[f"{b}/{t}t/{args.histories[0]}"], res[f"{b}/{t}t/{args.histories[-1]}"]
        print(f"{b} {t}t: p50 at {args.histories[-1]} frames / at {args.histories[0]}: {last['p50'] / first['p50']:.2f}x "
              f"(flat = 1.0); state size {last['state_mb']:.2f} MB at both")
    base = variants[0]
    for b, t in variants[1:]:
        ratio = np.mean([res[f"{base[0]}/{base[1]}t/{h}"]["p50"] / res[f"{b}/{t}t/{h}"]["p50"] for h in args.histories])
        print(f"{b} {t}t vs {base[0]} {base[1]}t: {ratio:.2f}x faster at p50 (mean over history lengths)")
    best = min(variants, key=lambda v: max(res[f"{v[0]}/{v[1]}t/{h}"]["p99"] for h in args.histories))
    worst_p99 = max(res[f"{best[0]}/{best[1]}t/{h}"]["p99"] for h in args.histories)
    print(f"fastest: {best[0]} with {best[1]} thread(s): p99 at most {worst_p99:.1f} ms over the history lengths "
          f"(goal: under 100 ms: {'met' if worst_p99 < 100 else 'not met'})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": res}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

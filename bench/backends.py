"""Backends side by side: per-control-step latency and peak memory of torch eager, onnxruntime
(float32 and int8) and TensorRT (where CUDA and tensorrt exist), for the tiny and small presets,
plus each backend's action difference from torch (the quality cost of quantization).

Every (preset, backend) runs in a fresh child process (peak RSS is then the process's own), and the
rounds are interleaved (torch, onnx, int8, torch, onnx, ...) so machine noise hits all alike; ratios
are taken within this one run.

    python bench/backends.py                                   # tiny (trained default) + small (untrained)
    python bench/backends.py --presets tiny --steps 100 --threads 1

One step = the camera frame through the VAE encoder, the memory update, and `--sampler-steps` sampler
steps (every step samples a chunk: the worst case of the act node's tick).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def observations(n, J, size, seed=0):
    from kairos_model.engine import Observation
    rng = np.random.default_rng(seed)
    q = np.cumsum(rng.normal(scale=0.02, size=(n, J)), 0)
    base = rng.integers(0, 256, (size, size, 3))
    for t in range(n):
        img = np.clip(base + rng.normal(scale=20, size=base.shape) + t, 0, 255).astype(np.uint8)
        yield Observation(img, q[t], "press the button top down")


def child(a) -> None:
    """Run one backend; print one JSON line (latencies, peak RSS, actions)."""
    import torch
    from kairos_model.engine import load_engine
    torch.set_num_threads(a.threads)
    import onnxruntime  # noqa: F401  (imported by every backend's child alike: the baseline includes it)
    rss0 = peak_rss_mb()
    backend, quantized = {"torch": ("torch", False), "onnx": ("onnx", False), "onnx-int8": ("onnx", True),
                          "tensorrt": ("tensorrt", False)}[a.child]
    eng = load_engine(a.artifact, backend=backend, quantized=quantized, threads=a.threads,
                      sampler_steps=a.sampler_steps).engine
    J, S = eng.cfg.proprio_dim, eng.image_size[0]
    lat, acts = [], []
    for i, obs in enumerate(observations(a.warmup + a.steps, J, S)):
        t0 = time.perf_counter()
        p = eng.step(obs)
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            lat.append(dt * 1e3)
            acts.append(p.actions.tolist())
    rss = peak_rss_mb()
    print(json.dumps({"lat": lat, "rss_mb": rss, "rss_model_mb": rss - rss0, "acts": acts}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: fresh after exec, unlike ru_maxrss which a child
    inherits from the parent that forked it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def artifact_for(preset: str, cache: str) -> str:
    """checkpoint_for(preset), exported once."""
    from training.export import ensure_exported
    return ensure_exported(checkpoint_for(preset, cache), cache_root=cache)


def checkpoint_for(preset: str, cache: str) -> str:
    """tiny: the committed trained checkpoint; others: an untrained preset (same cost), saved once."""
    if preset == "tiny":
        return os.path.join(ROOT, "artifacts/tiny_button_press")
    src = os.path.join(cache, f"{preset}-checkpoint")
    if not os.path.isdir(src):
        import torch
        from kairos_model.checkpoint import build_parts, save_checkpoint
        from kairos_model.world_model import WorldModelConfig
        torch.manual_seed(0)
        cfg = WorldModelConfig.preset(preset, action_dim=8, proprio_dim=8)
        save_checkpoint(src, cfg, build_parts(cfg), meta={})
    return src


def add_int8(path: str) -> None:
    """Add the int8/int4 graphs to an exported artifact (once)."""
    from training.export import write_manifest
    from training.quantize import quantize_graphs
    m = json.load(open(os.path.join(path, "manifest.json")))
    if m.get("quantized"):
        return
    m["quantized"] = quantize_graphs(path, m["graphs"], ["int8", "int4-text"])
    write_manifest(path, m)


def text_int4_cost(artifact: str) -> dict:
    """The int4 text encoder against the float one on the MT10 instructions: relative error of the
    text tokens, and the largest cosine distance of one token."""
    import onnxruntime as ort
    from kairos_model.backends import read_artifact
    from kairos_model.understanding import hash_tokenize
    from kairos_sim.metaworld_sim import INSTRUCTIONS
    m, cfg, _ = read_artifact(artifact)
    f32 = ort.InferenceSession(os.path.join(artifact, m["graphs"]["text_encoder"]["file"]))
    i4 = ort.InferenceSession(os.path.join(artifact, m["quantized"]["text_encoder"]["file"]))
    rel, cos = [], []
    for text in INSTRUCTIONS.values():
        ids, _ = hash_tokenize([text], cfg.und.vocab_buckets, cfg.und.max_words)
        a, b = (s.run(None, {"ids": ids.numpy()})[0][0] for s in (f32, i4))
        rel.append(np.linalg.norm(a - b) / np.linalg.norm(a))
        cos.append(1 - (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)))
    out = {"text_encoder_int4_rel_error": float(np.mean(rel)), "text_encoder_int4_max_cos_distance": float(np.max(cos)),
           "instructions": len(rel)}
    print(f"text encoder int4 vs float32 ({len(rel)} MT10 instructions): relative token error "
          f"{out['text_encoder_int4_rel_error']:.3f} (mean), largest per-token cosine distance "
          f"{out['text_encoder_int4_max_cos_distance']:.4f}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8", "tensorrt"])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sampler-steps", type=int, default=2)
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "bench-exported"))
    ap.add_argument("--out", help="write the results as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--artifact", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a)
        return 0
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm
    from kairos_model.backends.tensorrt_engine import tensorrt_available
    backends = list(a.backends)
    ok, why = tensorrt_available()
    if "tensorrt" in backends and not ok:
        backends.remove("tensorrt")
        print(f"tensorrt: skipped ({why})")
    arts = {}
    for p in a.presets:
        arts[p] = artifact_for(p, a.cache)
        if "onnx-int8" in backends:
            add_int8(arts[p])
    runs = {(p, b): [] for p in a.presets for b in backends}
    jobs = [(r, p, b) for r in range(a.rounds) for p in a.presets for b in backends]
    for r, p, b in tqdm(jobs, desc="bench", unit="run"):
        cmd = [sys.executable, __file__, "--child", b, "--artifact", arts[p], "--steps", str(a.steps),
               "--warmup", str(a.warmup), "--threads", str(a.threads), "--sampler-steps", str(a.sampler_steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if out.returncode:
            raise SystemExit(f"{p}/{b} failed:\n{out.stderr[-3000:]}")
        runs[(p, b)].append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = Table(title=f"per control step ({a.sampler_steps} sampler steps), {a.threads} threads, "
                        f"{a.steps} steps x {a.rounds} rounds")
    for col in ("preset", "backend", "p50 ms", "p99 ms", "x torch (p50)", "peak RSS MB", "model MB",
                "max |a-a_torch|", "mean |a-a_torch|"):
        table.add_column(col, justify="right")
    results = []
    for p in a.presets:
        ref_lat = np.concatenate([r["lat"] for r in runs[(p, "torch")]]) if "torch" in backends else None
        ref_act = np.array(runs[(p, "torch")][0]["acts"]) if "torch" in backends else None
        for b in backends:
            lat = np.concatenate([r["lat"] for r in runs[(p, b)]])
            acts = np.array(runs[(p, b)][0]["acts"])
            row = {"preset": p, "backend": b, "p50_ms": float(np.percentile(lat, 50)),
                   "p99_ms": float(np.percentile(lat, 99)), "peak_rss_mb": max(r["rss_mb"] for r in runs[(p, b)]),
                   "model_mb": max(r["rss_model_mb"] for r in runs[(p, b)])}
            diff = ("n/a", "n/a")
            if ref_lat is not None:
                row["speedup_p50"] = float(np.percentile(ref_lat, 50) / row["p50_ms"])
                if p == "tiny":    # untrained presets: the zero-initialised output layers return the noise itself
                    row["max_action_diff"] = float(np.abs(acts - ref_act).max())
                    row["mean_action_diff"] = float(np.abs(acts - ref_act).mean())
                    diff = (f"{row['max_action_diff']:.1e}", f"{row['mean_action_diff']:.1e}")
            results.append(row)
            table.add_row(p, b, f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}", f"{row.get('speedup_p50', 1):.2f}x",
                          f"{row['peak_rss_mb']:.0f}", f"{row['model_mb']:.0f}", *diff)
    Console().print(table)
    if "onnx-int8" in backends and "tiny" in arts:
        results.append(text_int4_cost(arts["tiny"]))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

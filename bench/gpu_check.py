"""What only a CUDA GPU can show, in one run: the fla Triton kernels against the pure-torch reference,
the committed model streaming on the GPU (fla) against the CPU (torch), the paper-scale `kairos_4b`
preset streaming and taking a training step, the trainer's bf16-autocast path, and how a control
step's latency splits into a fixed part and a per-sampler-step part up to the paper's shape
(`big_step_scaling`: issue 8's 40-vs-4 question where a CPU cannot time it; `bench/step_scaling.py`
is its CPU counterpart over the deployed engine).

    python bench/gpu_check.py --out runs/gpu_check.json               # on a machine with CUDA
    python bench/gpu_check.py --sections gdn tiny_stream --device cpu  # what runs without one (smoke)

Every section runs on its own (a failure is recorded with its traceback and the next one runs); timings
on the GPU are taken with torch.cuda.synchronize() around each measured call, medians of repeated calls
after warm-up, side by side in this one run. Nothing here is used by CI (which has no GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))   # the other benches


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device, reps=20, warmup=3):
    """Median and p99 milliseconds of fn() over `reps` calls after `warmup`."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(1e3 * (time.perf_counter() - t0))
    return {"p50_ms": statistics.median(ts), "p99_ms": float(np.percentile(ts, 99)), "reps": reps}


def env(device):
    e = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    if torch.cuda.is_available():
        e["gpu"] = torch.cuda.get_device_name()
        e["cuda"] = torch.version.cuda
    for pkg in ("triton", "fla", "onnxruntime", "tensorrt"):
        try:
            m = __import__(pkg)
            e[pkg] = getattr(m, "__version__", "?")
        except Exception as ex:   # noqa: BLE001 (recorded, not raised: this is an inventory)
            e[pkg] = f"missing ({type(ex).__name__})"
    try:
        import onnxruntime as ort
        e["onnxruntime_providers"] = ort.get_available_providers()
    except Exception:             # noqa: BLE001
        pass
    return e


def gdn(device, a):
    """fla chunk / fused-recurrent kernels vs the pure-torch chunked form, both on `device`, at the
    shapes the presets stream (one frame of tokens) and train (a clip), error against float64."""
    from kairos_model.ops.gated_delta_rule import gated_delta_rule, gated_delta_rule_chunked
    rows = []
    g = torch.Generator().manual_seed(0)
    for (B, T, H, D) in [(1, 17, 4, 32), (1, 881, 12, 128), (1, 5286, 12, 128), (4, 5286, 12, 128)]:
        q = torch.nn.functional.normalize(torch.randn(B, T, H, D, generator=g), dim=-1)
        k = torch.nn.functional.normalize(torch.randn(B, T, H, D, generator=g), dim=-1)
        v = torch.randn(B, T, H, D, generator=g)
        gg = -torch.rand(B, T, H, generator=g) * 0.1
        beta = torch.rand(B, T, H, generator=g)
        S0 = torch.randn(B, H, D, D, generator=g) * 0.1
        ins = [t.to(device) for t in (q, k, v, gg, beta)]
        s0 = S0.to(device)
        o_ref, s_ref = gated_delta_rule_chunked(*(t.double() for t in ins), initial_state=s0.double(), chunk_size=64)
        row = {"B": B, "T": T, "H": H, "D": D}
        backends = ["torch"] + (["fla"] if str(device).startswith("cuda") else [])
        for be in backends:
            for dt in (torch.float32, torch.bfloat16):
                x = [t.to(dt) for t in ins[:3]] + ins[3:]
                o, s = gated_delta_rule(*x, initial_state=s0, backend=be)
                err = max((o.double() - o_ref).abs().max().item(), (s.double() - s_ref).abs().max().item())
                name = f"{be}_{str(dt).split('.')[-1]}"
                row[name] = {"max_abs_err": err, **timed(lambda: gated_delta_rule(*x, initial_state=s0, backend=be),
                                                         device, reps=a.reps)}
        if "fla_float32" in row:
            row["fla_speedup_fp32"] = row["torch_float32"]["p50_ms"] / row["fla_float32"]["p50_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def tiny_stream(device, a):
    """The committed artifact, 200 streaming steps on `device` (fla on CUDA) and on the CPU (torch),
    same observations and noise seed: action difference per step, and the step latency on `device`;
    on CUDA the engine's default (CUDA graphs) and its eager path, one after the other."""
    from backends import observations     # bench/backends.py: the same synthetic camera + joint stream
    from kairos_model.engine import load_engine
    engines = {"cpu": load_engine(a.artifact, sampler_steps=4, device="cpu").engine}
    if str(device) != "cpu":     # the engine's default there (CUDA graphs on CUDA), and eager beside it
        engines[str(device)] = load_engine(a.artifact, sampler_steps=4, device=str(device)).engine
        if engines[str(device)].cuda_graphs:
            engines[f"{device}_eager"] = load_engine(a.artifact, sampler_steps=4, device=str(device),
                                                     cuda_graphs=False).engine
    cfg = engines["cpu"].cfg
    obs = list(observations(a.stream_steps, cfg.proprio_dim, engines["cpu"].image_size[0]))
    acts, lat, stages = {}, {}, {}
    for name, eng in engines.items():
        acts[name], lat[name], st = [], [], []
        for o in obs:
            sync(name)
            t0 = time.perf_counter()
            p = eng.step(o)
            sync(name)
            lat[name].append(1e3 * (time.perf_counter() - t0))
            acts[name].append(p.actions)
            st.append(p.timings_ms)
        stages[name] = {k: statistics.median(s[k] for s in st[5:]) for k in st[-1]}
    out = {"steps": len(obs), "latency": {}, "stages_p50_ms": stages}
    for name in engines:
        L = lat[name][5:]
        out["latency"][name] = {"p50_ms": statistics.median(L), "p99_ms": float(np.percentile(L, 99))}
    if str(device) != "cpu":
        d = np.abs(np.stack(acts[str(device)]) - np.stack(acts["cpu"])).max(axis=(1, 2))   # per step
        out["action_diff_vs_cpu"] = {"max": float(d.max()), "first_50_max": float(d[:50].max()),
                                     "last_50_max": float(d[-50:].max())}
        out["speedup_vs_cpu_p50"] = out["latency"]["cpu"]["p50_ms"] / out["latency"][str(device)]["p50_ms"]
    if f"{device}_eager" in engines:
        d = np.abs(np.stack(acts[str(device)]) - np.stack(acts[f"{device}_eager"])).max()
        out["graphs_vs_eager"] = {"max_action_diff": float(d), "speedup_p50": out["latency"][f"{device}_eager"]
                                  ["p50_ms"] / out["latency"][str(device)]["p50_ms"]}
    print(json.dumps(out), flush=True)
    return out


def _build(preset, device, dtype):
    from kairos_model.checkpoint import build_parts
    from kairos_model.world_model import WorldModelConfig, count_parameters
    cfg = WorldModelConfig.preset(preset)
    with torch.device(device):
        parts = build_parts(cfg)
    for m in parts.values():
        m.to(dtype)
    return cfg, parts, {k: count_parameters(m) for k, m in parts.items()}


def big_stream(device, a):
    """The paper-scale preset (random weights, bf16 on the GPU): one streaming control step at its
    camera size (camera frame -> VAE encode -> memory update -> 4 sampler steps), timed per stage."""
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    cfg, parts, n = _build(a.preset, device, dtype)
    wm, vae, und = (parts[k].eval() for k in ("world_model", "vae", "understanding"))
    s = vae.cfg.spatial_down
    H, W = cfg.latent_hw[0] * s, cfg.latent_hw[1] * s
    state = wm.init_state(1, device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    text = None
    stage_t = []

    @torch.no_grad()
    def step():
        nonlocal state, text
        t = [time.perf_counter()]
        img = torch.rand(1, 3, H, W, device=device, dtype=dtype)
        z, _ = vae.encode(img.unsqueeze(1))
        sync(device); t.append(time.perf_counter())
        if text is None:
            text = und.encode_text(["pick up the cup"])
        u = torch.cat([text, und.encode_image(img)], 1).unsqueeze(1)
        proprio = torch.zeros(1, 1, cfg.proprio_dim, device=device, dtype=dtype)
        ctx, state = wm.encode_context(z, proprio, u, state)
        sync(device); t.append(time.perf_counter())
        fut, act = wm.sample(ctx, torch.tensor([0]), steps=4, generator=gen)
        sync(device); t.append(time.perf_counter())
        stage_t.append([1e3 * (b - x) for x, b in zip(t[:-1], t[1:])])
        return act

    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    lat = timed(step, device, reps=a.big_reps, warmup=2)
    st = stage_t[2:]
    out = {"preset": a.preset, "params": n, "params_total": sum(n.values()), "dtype": str(dtype),
           "camera": [H, W], "tokens_per_frame": cfg.obs_tokens, "step": lat,
           "stages_p50_ms": {k: statistics.median(r[i] for r in st)
                             for i, k in enumerate(("vae_encode", "memory_update", "sampler_4_steps"))},
           "state_mib": state.nbytes() / 2 ** 20, "frames_streamed": a.big_reps + 2}
    if str(device).startswith("cuda"):
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(out), flush=True)
    del parts, wm, vae, und, state
    return out


def big_train_step(device, a):
    """One optimiser step of the paper-scale world model on a clip of latents (fp32 master weights,
    bf16 autocast, AdamW): the training form with the chunked GDN kernels forward and backward."""
    from kairos_model.world_model import KairosWorldModel, WorldModelConfig, count_parameters
    cfg = WorldModelConfig.preset(a.preset)
    with torch.device(device):
        wm = KairosWorldModel(cfg)
    wm.train()
    opt = torch.optim.AdamW(wm.parameters(), lr=1e-4, fused=str(device).startswith("cuda"))
    T = cfg.future_frames + 1
    h, w = cfg.latent_hw
    M = cfg.und.tokens
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(1, T, cfg.latent_channels, h, w, generator=g).to(device)
    prop = torch.randn(1, T, cfg.proprio_dim, generator=g).to(device)
    und = torch.randn(1, T, M, cfg.dim, generator=g).to(device)
    act = torch.randn(1, T, cfg.action_horizon, cfg.action_dim, generator=g).to(device)
    cuda = str(device).startswith("cuda")
    losses = []

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss, _ = wm.loss(lat, prop, und, act, generator=torch.Generator().manual_seed(1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wm.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = timed(step, device, reps=a.train_reps, warmup=1)
    out = {"preset": a.preset, "params": count_parameters(wm), "clip_frames": T,
           "tokens_per_clip": T * (cfg.obs_tokens + M), "step": t, "losses": losses,
           "finite": bool(np.all(np.isfinite(losses)))}
    if cuda:
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(out), flush=True)
    del wm, opt
    return out


def _scaling_summary(rows, fast, slow, rounds):
    """rows {steps: [(fixed_ms, sampler_ms), ...]} -> the section's figures for one way of running."""
    med = {k: (statistics.median(x for x, _ in v), statistics.median(y for _, y in v)) for k, v in rows.items()}
    fixed = statistics.median([x for v in rows.values() for x, _ in v])
    per_step = (med[slow][1] - med[fast][1]) / (slow - fast)
    lat = {k: statistics.median(x + y for x, y in v) for k, v in rows.items()}
    return {"fixed_ms": fixed, "per_step_ms": per_step,
            "fixed_over_step": fixed / per_step if per_step > 0 else None,
            "latency_ms": {str(k): v for k, v in lat.items()}, "speedup": lat[slow] / lat[fast], "rounds": rounds}


def big_step_scaling(device, a):
    """Issue 8's 40-vs-4 question at the model shapes a CPU cannot time: per preset (a.scaling_presets,
    random weights, bf16 on the GPU), a streaming control step split into its fixed part (VAE encode +
    understanding tokens + memory update) and its sampler part at S_fast and S_slow steps, the two step
    counts interleaved round by round. per-step = (sampler_slow - sampler_fast) / (S_slow - S_fast);
    speed-up = (fixed + sampler_slow) / (fixed + sampler_fast), the step latency ratio measured here.

    On CUDA (unless --no-graphs) the same rounds also run the step as the engine runs it there: the
    fixed part as one CUDA graph and each sampler step's network as another (kairos_model/cuda_graph.py),
    interleaved with the eager rounds; reported under "cuda_graphs", with the largest action difference
    between the two ways over the rounds (same inputs, same noise)."""
    from kairos_model import cuda_graph
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    fast, slow = a.fast_steps, a.slow_steps
    graphs = cuda_graph.graphs_supported(device) and not a.no_graphs
    out = {"dtype": str(dtype), "fast_steps": fast, "slow_steps": slow, "presets": {}}
    for preset in a.scaling_presets:
        cfg, parts, n = _build(preset, device, dtype)
        wm, vae, und = (parts[k].eval() for k in ("world_model", "vae", "understanding"))
        s = vae.cfg.spatial_down
        H, W = cfg.latent_hw[0] * s, cfg.latent_hw[1] * s
        modes = {"eager": {"state": wm.init_state(1, device=device, dtype=dtype)}}
        text = und.encode_text(["pick up the cup"])
        proprio = torch.zeros(1, 1, cfg.proprio_dim, device=device, dtype=dtype)
        anchors = torch.tensor([0])
        img0 = torch.rand(1, 3, H, W, device=device, dtype=dtype)
        with torch.no_grad():
            if graphs:
                st = wm.init_state(1, device=device, dtype=dtype)
                t0 = time.perf_counter()
                fixed_g = cuda_graph.GraphedFixedPart(wm, vae, und, img0, proprio, text, st)
                vel_g = cuda_graph.GraphedVelocity(wm, fixed_g.ctx)
                modes["cuda_graphs"] = {"fixed": fixed_g, "velocity": vel_g,
                                        "capture_s": time.perf_counter() - t0}   # velocity: on first use
            for m in modes.values():
                m["rows"] = {fast: [], slow: []}
            act_diff = 0.0
            for r in range(2 + a.big_reps):
                for steps in (fast, slow):
                    img = torch.rand(1, 3, H, W, device=device, dtype=dtype)
                    acts = {}
                    for name, m in modes.items():
                        gen = torch.Generator().manual_seed(r)
                        sync(device)
                        t0 = time.perf_counter()
                        if name == "eager":
                            ctx, m["state"] = cuda_graph.fixed_part(wm, vae, und, img, proprio, text, m["state"])
                            vfn = None
                        else:
                            ctx, vfn = m["fixed"](img, proprio, text), m["velocity"]
                        sync(device)
                        t1 = time.perf_counter()
                        _, acts[name] = wm.sample(ctx, anchors, steps=steps, generator=gen, velocity_fn=vfn)
                        sync(device)
                        t2 = time.perf_counter()
                        if r >= 2:
                            m["rows"][steps].append((1e3 * (t1 - t0), 1e3 * (t2 - t1)))
                    if len(acts) == 2:
                        act_diff = max(act_diff, (acts["eager"].float() - acts["cuda_graphs"].float()).abs().max().item())
        res = {"params_total": sum(n.values()), "camera": [H, W],
               **_scaling_summary(modes["eager"]["rows"], fast, slow, a.big_reps)}
        if graphs:
            res["cuda_graphs"] = {**_scaling_summary(modes["cuda_graphs"]["rows"], fast, slow, a.big_reps),
                                  "max_action_diff_vs_eager": act_diff,
                                  "fixed_capture_s": modes["cuda_graphs"]["capture_s"]}
            for k in ("fixed_ms", "per_step_ms"):
                res["cuda_graphs"][k.replace("_ms", "_eager_over_graphs")] = res[k] / res["cuda_graphs"][k]
        out["presets"][preset] = res
        print(json.dumps({preset: res}), flush=True)
        del parts, wm, vae, und, modes
        if str(device).startswith("cuda"):
            torch.cuda.empty_cache()
    return out


SECTIONS = {"gdn": gdn, "tiny_stream": tiny_stream, "big_stream": big_stream, "big_train_step": big_train_step,
            "big_step_scaling": big_step_scaling}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--artifact", default=os.path.join(ROOT, "artifacts", "tiny_button_press"))
    ap.add_argument("--preset", default="kairos_4b", help="the big preset for big_stream / big_train_step")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--stream-steps", type=int, default=200)
    ap.add_argument("--big-reps", type=int, default=10)
    ap.add_argument("--train-reps", type=int, default=3)
    ap.add_argument("--scaling-presets", nargs="+", default=["tiny", "small", "kairos_4b"],
                    help="presets for big_step_scaling")
    ap.add_argument("--fast-steps", type=int, default=4)
    ap.add_argument("--slow-steps", type=int, default=40)
    ap.add_argument("--no-graphs", action="store_true", help="big_step_scaling: eager only, also on CUDA")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    res = {"env": env(a.device)}
    print(json.dumps(res["env"]), flush=True)
    for name in a.sections:
        t0 = time.perf_counter()
        try:
            res[name] = SECTIONS[name](a.device, a)
        except Exception:  # noqa: BLE001 (recorded; the next section still runs)
            res[name] = {"error": traceback.format_exc()}
            print(res[name]["error"], flush=True)
        res[name + "_wall_s"] = time.perf_counter() - t0
        if str(a.device).startswith("cuda"):
            torch.cuda.empty_cache()
        if a.out:
            with open(a.out, "w") as f:
                json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()

"""Where a control step's time goes, torch eager beside onnxruntime, and which ONNX operators take
the time inside one exported graph.

    python bench/onnx_profile.py                                   # the small preset, as bench/backends.py exports it
    python bench/onnx_profile.py --preset tiny --graph context_step
    python bench/onnx_profile.py --artifact EXPORTED                # any exported artifact (kairos export)

Part 1: both engines step the same synthetic stream (bench/backends.py's observations), rounds
interleaved (torch, onnx, torch, onnx, ...), and print the median of each stage's time from the
engines' own `timings_ms` (frame encoder, memory update, sampler). Part 2: onnxruntime's profiler
over `--profile-runs` runs of one graph fed random inputs of its manifest shapes, summed per
operator type (kernel time only).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from backends import artifact_for, observations  # noqa: E402  (bench/backends.py: the same exports and stream)


def stage_medians(artifact: str, backends: list, rounds: int, steps: int, warmup: int, threads: int,
                  sampler_steps: int) -> dict:
    """{backend: [per round {stage: median ms}]}."""
    import torch
    from kairos_model.engine import load_engine
    torch.set_num_threads(threads)
    out = {b: [] for b in backends}
    for _ in range(rounds):
        for b in backends:
            eng = load_engine(artifact, backend=b, threads=threads, sampler_steps=sampler_steps).engine
            acc = collections.defaultdict(list)
            for i, obs in enumerate(observations(warmup + steps, eng.cfg.proprio_dim, eng.image_size[0])):
                p = eng.step(obs)
                if i >= warmup:
                    for k, v in p.timings_ms.items():
                        acc[k].append(v)
            out[b].append({k: float(np.median(v)) for k, v in acc.items()})
    return out


def op_profile(artifact: str, graph: str, runs: int, threads: int) -> dict:
    """{op type: (ms per run, nodes per run)} from onnxruntime's profiler, kernel time only."""
    import shutil
    import tempfile
    import onnxruntime as ort
    m = json.load(open(os.path.join(artifact, "manifest.json")))
    spec = m["graphs"][graph]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")   # as the engine runs it
    so.enable_profiling = True
    tmp = tempfile.mkdtemp()
    so.profile_file_prefix = os.path.join(tmp, "ort")
    sess = ort.InferenceSession(os.path.join(artifact, spec["file"]), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for i in spec["inputs"]:
        shape = [d if isinstance(d, int) else 1 for d in i["shape"]]
        if i["dtype"].startswith("float"):
            feeds[i["name"]] = rng.standard_normal(shape).astype(np.float32)
        elif i["dtype"] == "bool":
            feeds[i["name"]] = np.ones(shape, np.bool_)
        else:
            feeds[i["name"]] = np.zeros(shape, np.dtype(i["dtype"]))
    for _ in range(runs):
        sess.run(None, feeds)
    try:
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ms, nodes = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            ms[e["args"]["op_name"]] += e["dur"] / 1e3 / runs
            nodes[e["args"]["op_name"]] += 1
    return {op: (t, nodes[op] // runs) for op, t in ms.most_common()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", help="tiny = the committed teacher; others untrained (bench/backends.py)")
    ap.add_argument("--artifact", help="an exported artifact (kairos export) instead of --preset")
    ap.add_argument("--graph", default="denoise_step", help="the exported graph to profile per operator")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sampler-steps", type=int, default=2)
    ap.add_argument("--profile-runs", type=int, default=30)
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "bench-exported"))
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args(argv)
    art = a.artifact or artifact_for(a.preset, a.cache)
    name = a.artifact or a.preset
    import torch
    threads = torch.get_num_threads()
    try:
        stages = stage_medians(art, ["torch", "onnx"], a.rounds, a.steps, a.warmup, a.threads, a.sampler_steps)
    finally:
        torch.set_num_threads(threads)      # give torch's global pool back as found
    print(f"{name}: median stage times per control step ({a.sampler_steps} sampler steps, {a.threads} threads), "
          f"ms, one line per round")
    for b, rows in stages.items():
        for r in rows:
            print(f"  {b:6s} " + "  ".join(f"{k} {v:6.1f}" for k, v in r.items()) + f"  total {sum(r.values()):6.1f}")
    ops = op_profile(art, a.graph, a.profile_runs, a.threads)
    total = sum(t for t, _ in ops.values())
    print(f"{name} {a.graph}: onnxruntime kernel time per run {total:.2f} ms, by operator")
    for op, (t, n) in list(ops.items())[:15]:
        print(f"  {op:26s} {t:7.2f} ms  {100 * t / total:5.1f}%  {n:5d} nodes")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": name, "graph": a.graph, "stages_ms": stages,
                       "ops_ms_nodes": ops, "kernel_ms": total}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The exported RMS norms: torch's own ONNX form of nn.RMSNorm against the form onnxruntime fuses
(training/export.py FusableRMSNorm, the default since export revision 2), side by side in one run.

    python bench/onnx_norms.py                                   # tiny (the committed teacher) and small (untrained)
    python bench/onnx_norms.py --presets small --threads 1 --rounds 5 --out bench/results/X/onnx_norms.json

Each preset's checkpoint is exported twice (cached under --cache): rms_norms="torch" and
rms_norms="fusable". For each, the nodes of the context and denoise graphs after onnxruntime's own
graph optimisation are counted. Then both onnx engines step the same synthetic stream (bench/
backends.py's observations), every round running every (preset, threads, form) in turn, and the
median of each stage's time (the engines' own `timings_ms`) and of the whole control step is
printed per round, with the speed-up of the fusable form over torch's (ratio of the two medians of
one round) and the largest action difference between the two forms on the same stream.
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

from backends import checkpoint_for, observations  # noqa: E402  (the same checkpoints and stream as bench/backends.py)

FORMS = ("torch", "fusable")


def export_form(checkpoint: str, preset: str, form: str, cache: str) -> str:
    """The checkpoint exported with `form` RMS norms, once (re-exported when the export code changed)."""
    from training.export import EXPORT_REVISION, export_artifact
    out = os.path.join(cache, f"{preset}-norms-{form}")
    mpath = os.path.join(out, "manifest.json")
    if os.path.isfile(mpath):
        with open(mpath) as f:
            m = json.load(f)
        if m.get("export_revision") == EXPORT_REVISION and m.get("rms_norms") == form:
            return out
    os.makedirs(cache, exist_ok=True)
    export_artifact(checkpoint, out, "onnx", force=True, rms_norms=form)
    return out


def optimized_ops(artifact: str, graph: str) -> collections.Counter:
    """Operator counts of `graph` after onnxruntime's graph optimisation (as the engine loads it)."""
    import tempfile
    import onnx
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(os.path.join(artifact, f"{graph}.onnx"), so, providers=["CPUExecutionProvider"])
        return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath,
                                                                 load_external_data=False).graph.node)


def run_stream(artifact: str, threads: int, steps: int, warmup: int, sampler_steps: int):
    """({stage: median ms, "total": median ms, "total_p99": ms}, actions [steps, H, A])."""
    from kairos_model.engine import load_engine
    eng = load_engine(artifact, backend="onnx", threads=threads, sampler_steps=sampler_steps).engine
    acc, actions = collections.defaultdict(list), []
    for i, obs in enumerate(observations(warmup + steps, eng.cfg.proprio_dim, eng.image_size[0])):
        p = eng.step(obs)
        if i >= warmup:
            for k, v in p.timings_ms.items():
                acc[k].append(v)
            acc["total"].append(sum(p.timings_ms.values()))
            actions.append(p.actions)
    row = {k: float(np.median(v)) for k, v in acc.items()}
    row["total_p99"] = float(np.percentile(acc["total"], 99))
    return row, np.stack(actions)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--sampler-steps", type=int, default=4)
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "bench-exported"))
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    arts, nodes = {}, {}
    for p in a.presets:
        ck = checkpoint_for(p, a.cache)
        for form in FORMS:
            arts[(p, form)] = export_form(ck, p, form, a.cache)
            nodes[f"{p}/{form}"] = {g: sum(optimized_ops(arts[(p, form)], g).values())
                                    for g in ("context_step", "denoise_step")}
    rows = collections.defaultdict(list)          # (preset, threads, form) -> per-round rows
    diffs = collections.defaultdict(list)         # (preset, threads) -> max |a_torch - a_fusable| per round
    jobs = [(r, p, t) for r in range(a.rounds) for p in a.presets for t in a.threads]
    for r, p, t in tqdm(jobs, desc="bench", unit="pair"):
        acts = {}
        for form in FORMS:
            row, acts[form] = run_stream(arts[(p, form)], t, a.steps, a.warmup, a.sampler_steps)
            rows[(p, t, form)].append(row)
        diffs[(p, t)].append(float(np.abs(acts["torch"] - acts["fusable"]).max()))

    table = Table(title=f"onnxruntime, per control step ({a.sampler_steps} sampler steps), medians of "
                        f"{a.steps} steps, {a.rounds} rounds (min-max over rounds)")
    for col in ("preset", "threads", "RMS norms", "nodes (context / denoise)", "memory update ms",
                "sampler ms", "step p50 ms", "step p99 ms", "speed-up (p50)", "max |a diff|"):
        table.add_column(col, justify="right")

    def span(vals, fmt="{:.1f}"):
        return fmt.format(min(vals)) + ("" if len(vals) == 1 else "-" + fmt.format(max(vals)))
    summary = {}
    for p in a.presets:
        for t in a.threads:
            ratios = [o["total"] / n["total"] for o, n in zip(rows[(p, t, "torch")], rows[(p, t, "fusable")])]
            summary[f"{p}/{t}"] = {"speedup_p50": ratios, "max_action_diff": max(diffs[(p, t)])}
            for form in FORMS:
                rs = rows[(p, t, form)]
                nd = nodes[f"{p}/{form}"]
                table.add_row(p, str(t), form, f"{nd['context_step']} / {nd['denoise_step']}",
                              span([x["memory_update"] for x in rs]), span([x["sampler"] for x in rs]),
                              span([x["total"] for x in rs]), span([x["total_p99"] for x in rs]),
                              span(ratios, "{:.2f}x") if form == "fusable" else "",
                              f"{max(diffs[(p, t)]):.1e}" if form == "fusable" else "")
    Console(width=200).print(table)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"sampler_steps": a.sampler_steps, "steps": a.steps, "rounds": a.rounds,
                       "optimized_nodes": nodes, "summary": summary,
                       "rows": {f"{p}/{t}/{form}": v for (p, t, form), v in rows.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

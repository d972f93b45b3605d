"""Which task's keypoint readings does a world model with `und.keypoint_select` hand itself for each
instruction? Prints the gate's weights (UnderstandingEncoder.keypoint_weights) per keypoint task's
instruction: the task it picks most, that weight, and the weight on the instruction's own task.

    python -m training.experiments.keypoint_gate --artifact runs/mt10_cpu_ws_kp_select/artifact \\
        --out docs/figures/mt10/keypoint_gate_select_cpu.json
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict

import torch


def gate_table(artifact: str) -> Dict[str, dict]:
    """{task: {"top": task, "top_weight": w, "own_weight": w, "weights": {task: w}}} for each keypoint
    task's instruction (kairos_sim INSTRUCTIONS)."""
    from kairos_model.checkpoint import load_checkpoint
    from kairos_sim.metaworld_sim import INSTRUCTIONS
    cfg, parts = load_checkpoint(artifact)
    if not (cfg.und.keypoint_tasks and cfg.und.keypoint_select):
        raise ValueError(f"{artifact} has no per-task keypoint tokens (und.keypoint_select)")
    und = parts["understanding"].eval()
    tasks = list(cfg.und.keypoint_tasks)
    with torch.no_grad():
        w = und.keypoint_weights(und.encode_text([INSTRUCTIONS.get(t, t) for t in tasks])).float()   # [K, K]
    return {t: {"top": tasks[int(row.argmax())], "top_weight": float(row.max()), "own_weight": float(row[i]),
                "weights": {u: round(float(x), 4) for u, x in zip(tasks, row)}}
            for i, (t, row) in enumerate(zip(tasks, w))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    table = gate_table(a.artifact)
    for t, r in table.items():
        print(f"{t:26s} picks {r['top']:26s} {r['top_weight']:.3f}   own task {r['own_weight']:.3f}")
    own = sum(r["top"] == t for t, r in table.items())
    print(f"the instruction's own task is picked for {own} of {len(table)}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"artifact": a.artifact, "gate": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's two MT10 summary tables, printed from the committed evaluation reports
(docs/figures/mt10/), so every figure in them can be traced to the episodes behind it:

    python bench/mt10_summary.py

1. The issue's measure: 20 held-out scenes per task (variations 10000-10019), the full
   demonstrations. The scripted expert acting through the same joint-target interface as the models,
   the best world model (two training seeds) and BC on the same 200 demonstrations per task.
2. At most 10 demonstrations per task: 50 held-out scenes per task (10000-10049), three training
   seeds per model, pooled (1500 episodes each), each world model paired with BC scene by scene and
   seed by seed (exact McNemar test, `bench/paired_evals.py`).

How each report was made is in docs/results/mt10.md (the section named in the table's last column).
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import section_link  # noqa: E402
from paired_evals import compare, load, per_task  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "figures", "mt10")
TASKS = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
         "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"]
SHORT = ["reach", "push", "pick-place", "door-open", "drawer-open", "drawer-close", "button-press-topdown",
         "peg", "window-open", "window-close"]

FULL = [  # (label, report, where it is described)
    ("world model, keypoint token per task, 200 demos/task, 27600 steps, seed 0",
     "eval_world_model_ws_kp_select_200_cont27600steps_cpu.json", "Continued to 27600 steps"),
    ("the same, seed 1", "eval_world_model_ws_kp_select_200_27600steps_seed1_cpu.json",
     "Seed 1 continued to 27600 steps"),
    ("BC (CNN + MLP), 200 demos/task, 10 min", "eval_bc_noshift_ws_200.json", "How many demonstrations"),
]
TEN = [  # (label, reports of seeds 0, 1, 2, where it is described)
    ("world model, 10 demos + 200 action-free videos/task",
     ["world_model_videos200.json", "world_model_videos200_s1.json", "world_model_videos200_s2.json"],
     "Ten demonstrations with the keypoint net"),
    ("world model, 10 demos + 40 action-free videos/task",
     ["world_model_videos.json", "world_model_videos_s1.json", "world_model_videos_s2.json"],
     "Ten demonstrations with the keypoint net"),
    ("BC with the position head (same labels), 10 demos/task",
     ["bc_noshift_aux.json", "bc_noshift_aux_s1.json", "bc_noshift_aux_s2.json"], "Ten demonstrations with the keypoint net"),
    ("BC, 10 demos/task", ["bc_noshift.json", "bc_noshift_s1.json", "bc_noshift_s2.json"],
     "Ten demonstrations with the keypoint net"),
]


def expert_row() -> list:
    with open(os.path.join(ROOT, "interface", "expert_joint_control_mt10.json")) as f:
        doc = json.load(f)
    return [(doc["tasks"][t]["expert_joint_control"], doc["tasks"][t]["episodes"]) for t in TASKS]


def group(paths: list) -> dict:
    """Seeds' reports pooled, keyed (seed, task, variation) so that two groups pair seed by seed."""
    return {(i,) + k: v for i, p in enumerate(paths) for k, v in load(p).items()}


def link(section: str) -> str:
    return section_link("docs/results/mt10.md", section)


def row(label: str, cells: list, section: str) -> str:
    s, n = sum(c[0] for c in cells), sum(c[1] for c in cells)
    return (f"| {label} | " + " | ".join(str(c[0]) for c in cells)
            + f" | **{100 * s / n:.1f}%** ({s}/{n}) | {link(section)} |")


def main() -> int:
    head = "| model | " + " | ".join(SHORT) + " | mean | see |"
    rule = "|---|" + "---:|" * (len(SHORT) + 1) + "---|"
    print("MT10 by instruction, 20 held-out scenes per task (successes of 20), full demonstrations:\n")
    print(head + "\n" + rule)
    print(row("scripted expert through the joint-target interface", expert_row(), "What the joint-target interface costs"))
    for label, path, note in FULL:
        pt = per_task(load(os.path.join(ROOT, path)))
        print(row(label, [pt[t] for t in TASKS], note))
    print("\nAt most 10 demonstrations per task, 50 held-out scenes per task, three training seeds "
          "(successes of 150):\n")
    print(head + "\n" + rule)
    groups = {}
    for label, paths, note in TEN:
        groups[label] = group([os.path.join(ROOT, "ten_demos_500", p) for p in paths])
        pt = per_task(groups[label])
        print(row(label, [pt[t] for t in TASKS], note))
    print("\nPaired, scene by scene and seed by seed (1500 pairs each; exact McNemar test):\n")
    labels = [t[0] for t in TEN]
    for a in labels[:2]:
        for b in labels[1:]:
            if a == b:
                continue
            c = compare(groups[a], groups[b])
            print(f"- {a} vs {b}: {c['success'][0]} vs {c['success'][1]} of {c['scenes']} "
                  f"(solved by only one: {c['only_a']} vs {c['only_b']}, p = {c['mcnemar_p']:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

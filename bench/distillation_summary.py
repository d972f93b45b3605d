"""The README's two distillation tables, printed from the committed bench JSON and evaluation
reports (docs/figures/distill/), so every figure in them can be traced to the runs behind it:

    python bench/distillation_summary.py

1. The main job's student: `bench/distillation.py`'s table for the committed teacher
   (artifacts/tiny_button_press) and its one-step student (artifacts/tiny_button_press_student),
   from docs/figures/distill/tiny_1step_bench.json, as that bench printed it.
2. The issue's three goals, comparison by comparison: the student against the 40-step teacher
   (success), against the undistilled teacher at the same sampler step count (success; paired
   scene by scene where both ran the same seeded scenes: exact McNemar test, `bench/paired_evals.py`),
   and its speed-up over the 40-step teacher (latency of a control step that samples, measured
   side by side in the same bench run).

How each run was made is in docs/results/distillation.md (the section named in the last column).
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import section_link  # noqa: E402
from paired_evals import compare, load  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "figures", "distill")
WALL = "two ways round a wall"

# (what is compared, bench JSON or None, (student label, steps), paired reports (student, teacher same
#  steps, teacher@40) or None, section of docs/results/distillation.md)
GOALS = [
    ("button press, distilled for 1 step, run at 1", "tiny_1step_bench.json", ("student (1-step)", 1), None,
     "The rebuilt teacher and its student"),
    ("the same, 100 paired scenes", None, None, ("tiny_1step_100/s1.json", "tiny_1step_100/t1.json", None),
     "The rebuilt teacher and its student"),
    (f"{WALL}, distilled for 4 steps, run at 4", "wall_around_bench.json", ("student", 4), None,
     "A teacher that needs its steps"),
    (f"{WALL}, distilled for 1 step (1200 it), run at 1", "wall_around_1step_long_bench.json",
     ("student (1-step, 1200 it)", 1), None, "Distilled to one step"),
    ("the same, 150 paired scenes", None, None,
     ("wall_around_150/s1.json", "wall_around_150/t1.json", "wall_around_150/t40.json"), "On 150 held-out scenes"),
    (f"{WALL}, distilled for 1 step (1200 it), run at 4", "wall_around_1step_long_bench.json",
     ("student (1-step, 1200 it)", 4), None, "Distilled to one step"),
    ("the same, 150 paired scenes", None, None,
     ("wall_around_150/s4.json", "wall_around_150/t4.json", "wall_around_150/t40.json"), "On 150 held-out scenes"),
    ("the same, 500 paired scenes", None, None, ("wall_around_500/s4.json", "wall_around_500/t4.json", None),
     "On 150 held-out scenes"),
    ("MT10, 10 demos/task, distilled for 1 step, run at 1, 500 paired scenes", None, None,
     ("mt10_kp10_500/s1.json", "mt10_kp10_500/t1.json", None), "On MT10 at one step"),
]


def link(section: str) -> str:
    return section_link("docs/results/distillation.md", section)


def bench(name: str) -> list:
    with open(os.path.join(ROOT, name)) as f:
        return json.load(f)["rows"]


def bench_table(rows: list) -> list:
    """bench/distillation.py's table as markdown (the student's first row in bold)."""
    ref = rows[0]
    out = ["| model | sampler steps | action error (rad) | future-frame PSNR (dB) | closed-loop success "
           "| mean episode | latency / sampling step | speed-up vs teacher@40 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    bold = next(i for i, r in enumerate(rows) if r["model"] != "teacher")
    for i, r in enumerate(rows):
        name = r["model"] if r["model"] != "teacher" or r["steps"] == ref["steps"] else "teacher (not distilled)"
        out.append(f"| {f'**{name}**' if i == bold else name} | {r['steps']} | {r['action_mae_rad']:.4f} "
                   f"| {r['future_psnr_db']:.2f} | {r['success']}/{r['episodes']} | {r['mean_episode']:.1f} "
                   f"| {r['latency_ms']:.1f} ms | {ref['latency_ms'] / r['latency_ms']:.1f}x |")
    return out


def goal_row(what, bench_file, student, paired, section) -> str:
    if bench_file:
        rows = bench(bench_file)
        t40 = next(r for r in rows if r["model"] == "teacher" and r["steps"] == 40)
        s = next(r for r in rows if (r["model"], r["steps"]) == student)
        t = next(r for r in rows if r["model"] == "teacher" and r["steps"] == student[1])
        frac = lambda r: f"{r['success']}/{r['episodes']}"       # noqa: E731
        cells = [frac(t40), frac(s), frac(t), "—", f"{t40['latency_ms'] / s['latency_ms']:.1f}x"]
    else:
        s_rep, t_rep, t40_rep = (load(os.path.join(ROOT, p)) if p else None for p in paired)
        c = compare(s_rep, t_rep)
        n = c["scenes"]
        t40_cell = "—"
        if t40_rep is not None:
            t40_cell = f"{compare(s_rep, t40_rep)['success'][1]}/{n}"
        cells = [t40_cell, f"{c['success'][0]}/{n}", f"{c['success'][1]}/{n}",
                 f"{c['only_a']} / {c['only_b']} (p = {c['mcnemar_p']:.2g})", "—"]
    return f"| {what} | " + " | ".join(cells) + f" | {link(section)} |"


def main() -> int:
    print("The main job's student (docs/figures/distill/tiny_1step_bench.json; 10 held-out episodes "
          "teacher-forced, 20 held-out scenes closed loop, torch eager, 2 threads):\n")
    print("\n".join(bench_table(bench("tiny_1step_bench.json"))))
    print("\nThe issue's goals, comparison by comparison:\n")
    print("| compared | teacher@40 | student | teacher not distilled, same steps | solved by only the student "
          "/ only the teacher | speed-up vs teacher@40 | see |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for g in GOALS:
        print(goal_row(*g))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Imagined next frame of trained artifacts on held-out robot episodes: PSNR (dB) of the first
imagined frame at every step of each episode against the real next frame (`distillation.py`'s
`future_psnr`, the same held-out scenes: variations from TEST_VARIATIONS of the task).

    .venv/bin/python bench/future_psnr.py artifacts/tiny_button_press runs/tiny_shortcut/artifact --out fp.json

Several tasks (`--tasks MT10` for all ten): per artifact, the dB of each task and their mean:

    .venv/bin/python bench/future_psnr.py runs/mt10_10_new/artifact --tasks MT10 --episodes 5

Quoted in docs/results/curriculum.md ("imagined next frame on the 10 held-out robot episodes").
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distillation import future_psnr, load_model  # noqa: E402  (bench/ is on sys.path)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--tasks", "--task", nargs="+", default=["button-press-topdown-v3"],
                    help="Meta-World tasks, or MT10; one task: {artifact: dB}, several: {artifact: {task: dB, mean: dB}}")
    ap.add_argument("--episodes", type=int, default=10, help="held-out episodes (scenes) of each task")
    ap.add_argument("--steps", type=int, default=4, help="sampler steps")
    ap.add_argument("--data-root", default="runs/future_psnr", help="where the held-out episodes are collected once")
    ap.add_argument("--out", help="write the result as JSON ({artifact: dB}, or {artifact: {task: dB, mean: dB}} for several tasks)")
    a = ap.parse_args(argv)
    import kairos_sim  # noqa: F401  (before mujoco)
    from kairos_sim.metaworld_sim import MT10, TEST_VARIATIONS
    from training.recipe import SourceConfig
    from training.trainer import Dist, load_episodes
    tasks = [t for name in a.tasks for t in (MT10 if name == "MT10" else [name])]
    out = {}
    for path in a.artifacts:
        tr, norm, meta = load_model(path)
        per_task = {}
        for task in tasks:
            held = load_episodes(SourceConfig(kind="sim_expert", tasks=[task], episodes=a.episodes,
                                              first_variation=TEST_VARIATIONS, actions=True),
                                 a.data_root, meta.get("joint_names") or [], Dist(), sync=False)
            per_task[task] = future_psnr(tr, held, norm, a.steps)
            print(f"{path}: imagined next frame {per_task[task]:.2f} dB ({a.episodes} held-out episodes of "
                  f"{task}, {a.steps} sampler steps)")
        if len(tasks) == 1:
            out[path] = per_task[tasks[0]]
        else:
            out[path] = {**per_task, "mean": sum(per_task.values()) / len(per_task)}
            print(f"{path}: mean over {len(tasks)} tasks {out[path]['mean']:.2f} dB")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()

"""Compare closed-loop evaluations of the same held-out scenes, pair by pair (`kairos evaluate
--report DIR` writes DIR/report.json with every episode's scene, success and length):

    python bench/paired_evals.py runs/eval150/s1/report.json runs/eval150/t1/report.json ...

Per report: success and mean episode length (control steps; a failure counts the episode's limit).
Then every report against the first one, on the scenes both ran: the exact McNemar test on success
(a binomial test on the scenes where exactly one of the two succeeded) and the Wilcoxon signed-rank
test on episode length. Paired tests, because both ran the same scenes: a scene that is hard for one
model is usually hard for the other, and pairing removes that variance.

Two seeds of each side: give each side as a comma-separated list of the same length, and the i-th
report of one side is paired with the i-th of the other (seed 0 with seed 0, seed 1 with seed 1), so
both seeds' scenes go into one test:

    python bench/paired_evals.py wm_s0/report.json,wm_s1/report.json bc_s0/report.json,bc_s1/report.json

A scene then counts once per seed; the seeds are independent draws of the training, not of the scene,
so the pooled p is a little optimistic where a scene is hard for every model. `--per-task` adds each
report's successes per task.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def load(path: str) -> dict:
    """{(task, variation): (success, steps)} from a kairos evaluate report.json."""
    with open(path) as f:
        doc = json.load(f)
    return {(task, e["variation"]): (bool(e["success"]), int(e["steps"]))
            for task, eps in doc["episodes"].items() for e in eps}


def load_group(spec: str) -> dict:
    """One report (`path`): keys (task, variation). Several (`path,path,...`): keys (i, task,
    variation), the i-th report's scenes, so two groups pair report by report."""
    paths = [p for p in spec.split(",") if p]
    if len(paths) == 1:
        return load(paths[0])
    return {(i,) + k: v for i, p in enumerate(paths) for k, v in load(p).items()}


def per_task(r: dict) -> dict:
    """{task: (successes, episodes)} of a loaded report or group."""
    out: dict = {}
    for k, (ok, _) in r.items():
        s, n = out.get(k[-2], (0, 0))
        out[k[-2]] = (s + int(ok), n + 1)
    return dict(sorted(out.items()))


def compare(a: dict, b: dict) -> dict:
    """a against b on their common scenes: success counts, scenes only a / only b solved with the exact
    McNemar p, mean steps and the Wilcoxon signed-rank p (1.0 where every pair is tied)."""
    from scipy.stats import binomtest, wilcoxon
    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError("the two reports share no scene: evaluate both with the same --tasks and --first-variation "
                         "(and give groups of reports the same number of reports)")
    oa = np.array([a[k][0] for k in keys]); ob = np.array([b[k][0] for k in keys])
    sa = np.array([a[k][1] for k in keys]); sb = np.array([b[k][1] for k in keys])
    only_a, only_b = int((oa & ~ob).sum()), int((~oa & ob).sum())
    return {"scenes": len(keys), "success": (int(oa.sum()), int(ob.sum())), "only_a": only_a, "only_b": only_b,
            "mcnemar_p": float(binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0,
            "mean_steps": (float(sa.mean()), float(sb.mean())),
            "wilcoxon_p": float(wilcoxon(sa, sb).pvalue) if np.any(sa != sb) else 1.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+",
                    help="report.json files, or comma-separated lists of them (pooled seeds); the first is the reference")
    ap.add_argument("--per-task", action="store_true", help="also print each report's successes per task")
    a = ap.parse_args(argv)
    runs = [load_group(p) for p in a.reports]
    for p, r in zip(a.reports, runs):
        ok = sum(s for s, _ in r.values())
        print(f"{p}: success {ok}/{len(r)}, mean episode {np.mean([n for _, n in r.values()]):.2f} control steps")
        if a.per_task:
            print("    " + ", ".join(f"{t} {s}/{n}" for t, (s, n) in per_task(r).items()))
    for p, r in zip(a.reports[1:], runs[1:]):
        c = compare(runs[0], r)
        print(f"{a.reports[0]} vs {p} on {c['scenes']} scenes: success {c['success'][0]} vs {c['success'][1]} "
              f"(solved by only one: {c['only_a']} vs {c['only_b']}, exact McNemar p = {c['mcnemar_p']:.2g}); "
              f"mean episode {c['mean_steps'][0]:.2f} vs {c['mean_steps'][1]:.2f} (Wilcoxon p = {c['wilcoxon_p']:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

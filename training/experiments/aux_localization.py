"""Does a BC policy's auxiliary head find the objects and the goal in scenes it never saw? For each
policy trained with `kairos train-bc --aux-weight` the head's predicted positions are compared with
the simulator's (observation.environment_state) on the training demonstrations and on held-out
scenes, as the mean distance in cm; beside them, the error of predicting each task's mean training
position (what a head that found nothing would do).

    kairos collect --tasks reach-v3 push-v3 pick-place-v3 peg-insert-side-v3 --episodes 10 \\
        --first-variation 10000 --camera workspace --out runs/aux/heldoutw
    python -m training.experiments.aux_localization --train runs/aux/dataw --heldout runs/aux/heldoutw \\
        --policies runs/aux/bc_waux runs/aux/bc_wx --out docs/figures/mt10/perception/aux_localization.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List

import numpy as np
import torch


def _errors_cm(pred: np.ndarray, true: np.ndarray) -> List[float]:
    """[T, 6] positions (object xyz, goal xyz) -> [object, goal] mean distance in cm."""
    return [100 * float(np.linalg.norm(pred[:, s] - true[:, s], axis=1).mean()) for s in (slice(0, 3), slice(3, 6))]


def localization(policy_dir: str, train, held) -> Dict[str, Dict[str, List[float]]]:
    from training.baselines.bc import BCEngine
    eng = BCEngine(policy_dir)
    out = {}
    for split, ds in (("train", train), ("heldout", held)):
        per_task: Dict[str, list] = {}
        for e in ds:
            pred = eng.positions(e.frames[ds.camera_key], e.task)
            per_task.setdefault(e.task, []).append(_errors_cm(pred, e.env_state))
        out[split] = {t: np.mean(v, 0).round(2).tolist() for t, v in per_task.items()}
    return out


def main(argv=None) -> int:
    from training.data.lerobot import LeRobotDataset
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="the demonstrations the policies were trained on")
    ap.add_argument("--heldout", required=True, help="held-out scenes (kairos collect --first-variation 10000)")
    ap.add_argument("--policies", nargs="+", required=True)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    train, held = LeRobotDataset(a.train), LeRobotDataset(a.heldout)
    ref: Dict[str, list] = {}
    for e in held:
        m = np.concatenate([x.env_state for x in train if x.task == e.task]).mean(0)
        ref.setdefault(e.task, []).append(_errors_cm(np.tile(m, (len(e.env_state), 1)), e.env_state))
    res = {"mean_position_baseline": {t: np.mean(v, 0).round(2).tolist() for t, v in ref.items()},
           "policies": {p: localization(p, train, held) for p in a.policies}}
    print("held-out error in cm [object, goal] per task:")
    print(f"  predicting the training mean: {json.dumps(res['mean_position_baseline'])}")
    for p, r in res["policies"].items():
        print(f"  {p}: {json.dumps(r['heldout'])}   (training scenes: {json.dumps(r['train'])})")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a world model with a keypoint token (recipe `keypoints_from`) use it? The same artifact is run
closed loop (as `kairos evaluate` runs it) with the keypoint net's readings replaced by zeros, so
the token carries nothing about the frame; the rest of the model sees the frames as before.

    python -m training.experiments.keypoint_token_zeroed --artifact runs/mt10_cpu_ws_keypoints/artifact \\
        --tasks reach-v3 push-v3 pick-place-v3 peg-insert-side-v3 --episodes 20
"""
from __future__ import annotations

import argparse
import json
import sys

import torch


def main(argv=None) -> int:
    from kairos_model.understanding import ImageEncoder
    from training.evaluate import evaluate
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--tasks", nargs="+", required=True)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    read = ImageEncoder.keypoint_readings
    ImageEncoder.keypoint_readings = lambda self, img: torch.zeros_like(read(self, img))
    try:
        per_task, *_ = evaluate(a.artifact, a.tasks, a.episodes, progress=True)
    finally:
        ImageEncoder.keypoint_readings = read
    res = {t: sum(bool(r["success"]) for r in rows) for t, rows in per_task.items()}
    for t, n in res.items():
        print(f"{t:26s} {n}/{a.episodes} with the keypoint readings zeroed")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"artifact": a.artifact, "episodes": a.episodes, "successes_zeroed": res}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

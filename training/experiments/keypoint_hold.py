"""Does holding the goal reading survive the arm covering the goal? Runs a keypoint artifact
(training.perception) over whole labelled episodes, frame by frame in order, and measures per task the
3D error of each frame's own reading and of the held one (KeypointEstimator(hold_goals=True): each
episode keeps the goal reading of the frame whose heatmap peak was surest), over all frames and over
the frames after the first second, when the arm is over the scene (none in episodes that end
sooner: reported as null).

    kairos collect --tasks MT10 --episodes 10 --first-variation 10000 --camera workspace \\
        --out runs/est/heldout_eps
    python -m training.experiments.keypoint_hold --estimator runs/keypoints_ws \\
        --episodes runs/est/heldout_eps --report docs/figures/mt10/perception/keypoint_hold.json
"""
from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from typing import Dict

import numpy as np


def measure(est_path: str, root: str, late_from: int = 10) -> Dict[str, Dict[str, float]]:
    """Per task: mean 3D error (cm) of the object and of the goal, per frame and held, over all frames
    and over frames index >= late_from; the goal's mean peak confidence then; and the episode count."""
    from training.data.lerobot import LeRobotDataset
    from training.perception import POINTS, KeypointEstimator, task_of
    per_frame, held = KeypointEstimator(est_path), KeypointEstimator(est_path, hold_goals=True)
    ds = LeRobotDataset(root)
    if ds.env_state_names is None:
        raise ValueError(f"{root} records no observation.environment_state: its frames have no labels")
    rows = defaultdict(lambda: defaultdict(list))
    g = POINTS.index("goal")
    for e in ds:
        t = task_of(e.task)
        frames = e.frames[ds.camera_key]
        true = np.asarray(e.env_state, np.float64).reshape(len(frames), len(POINTS), 3)
        raw = per_frame.positions(frames, t).reshape(len(frames), len(POINTS), 3)
        held.reset()
        kept = held.positions(frames, t).reshape(len(frames), len(POINTS), 3)
        _, _, conf = per_frame.read(frames, t)
        late = np.arange(len(frames)) >= late_from
        r = rows[t]
        r["episodes"].append(1)
        for name, pos in (("per_frame", raw), ("held", kept)):
            err = 100 * np.linalg.norm(pos - true, axis=2)                          # [T, P] cm
            for k, p in enumerate(POINTS):
                r[f"{p}_{name}_cm"] += err[:, k].tolist()
                r[f"{p}_{name}_late_cm"] += err[late, k].tolist()
        r["goal_conf_first"].append(float(conf[0, g]))
        r["goal_conf_late"] += conf[late, g].tolist()
    def mean(v):
        return round(float(np.mean(v)), 3) if v else None       # None: no frame that late (short episodes)
    return {t: {k: (len(v) if k == "episodes" else mean(v)) for k, v in r.items()} for t, r in sorted(rows.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--estimator", required=True, help="a keypoint artifact (training.experiments.goal_pixels)")
    ap.add_argument("--episodes", required=True, help="a labelled LeRobot dataset of whole episodes")
    ap.add_argument("--late-from", type=int, default=10, help="first frame counted as late (10 = 1 s at 10 Hz)")
    ap.add_argument("--report", help="write the table as JSON here")
    a = ap.parse_args(argv)
    res = measure(a.estimator, a.episodes, a.late_from)
    print(f"{'task':26s} {'goal, per frame':>16s} {'goal, held':>11s} {'late: per frame':>16s} {'late: held':>11s} "
          f"{'object, late':>13s} {'goal conf first/late':>21s}   (cm)")
    def cell(x, w):
        return f"{'-':>{w}s}" if x is None else f"{x:{w}.2f}"
    for t, r in res.items():
        print(f"{t:26s} {cell(r['goal_per_frame_cm'], 16)} {cell(r['goal_held_cm'], 11)} "
              f"{cell(r['goal_per_frame_late_cm'], 16)} {cell(r['goal_held_late_cm'], 11)} "
              f"{cell(r['object_per_frame_late_cm'], 13)} {cell(r['goal_conf_first'], 10)} / "
              f"{cell(r['goal_conf_late'], 4).strip()}")
    if a.report:
        os.makedirs(os.path.dirname(os.path.abspath(a.report)), exist_ok=True)
        with open(a.report, "w") as f:
            json.dump({"estimator": a.estimator, "episodes": a.episodes, "late_from": a.late_from, "tasks": res},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

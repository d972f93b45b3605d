"""How many pixels of a camera frame does a task's goal marker cover? For each camera and task, the
frame is rendered twice per held-out scene, with the goal site shown and hidden, and the pixels that
differ are counted (mean over scenes). A policy that acts from pixels cannot use a goal it cannot see.

    python -m training.experiments.camera_footprint --out docs/figures/mt10/perception/camera_footprint.json

Tasks without a goal site (button-press-topdown) are left out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def goal_pixels(task: str, camera: str, image_size: int = 64, scenes: int = 10, first: int = 10000,
                threshold: int = 20) -> float:
    """Mean number of pixels (summed |RGB difference| > threshold) the goal marker changes."""
    from kairos_sim.metaworld_sim import MetaWorldSim, SimConfig
    with MetaWorldSim(SimConfig(task=task, camera=camera, image_size=image_size)) as sim:
        m = sim.model
        goal = [i for i in range(m.nsite) if m.site(i).name == "goal"]
        if not goal:
            raise ValueError(f"{task} has no goal site")
        g = goal[0]
        counts = []
        for v in range(first, first + scenes):
            sim.reset(v)
            shown = sim.render().astype(int)
            rgba = m.site_rgba[g].copy()
            m.site_rgba[g, 3] = 0
            hidden = sim.render().astype(int)
            m.site_rgba[g] = rgba
            counts.append(int((np.abs(shown - hidden).sum(-1) > threshold).sum()))
    return float(np.mean(counts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["reach-v3", "push-v3", "pick-place-v3", "door-open-v3",
                                                   "drawer-open-v3", "window-close-v3"])
    ap.add_argument("--cameras", nargs="+", default=["corner", "corner2", "corner3", "topview", "behindGripper",
                                                     "workspace"])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    res = {cam: {t: goal_pixels(t, cam, a.image_size, a.scenes) for t in a.tasks} for cam in a.cameras}
    print(f"goal marker pixels at {a.image_size} px (mean of {a.scenes} held-out scenes):")
    print(f"{'camera':16s}" + "".join(f"{t[:-3]:>16s}" for t in a.tasks))
    for cam, row in res.items():
        print(f"{cam:16s}" + "".join(f"{row[t]:16.1f}" for t in a.tasks))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump({"image_size": a.image_size, "scenes": a.scenes, "goal_pixels": res}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

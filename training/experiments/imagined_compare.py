"""Real vs imagined frames of two (or more) world models side by side: for each task, the first held-out
episode closed loop (`training.evaluate.evaluate`, the same pairs its report's imagined.png shows), the
first few inference ticks, the camera frame that came above the frame the model imagined for it.

    python -m training.experiments.imagined_compare --artifacts runs/mt10_cpu/artifact \\
        runs/mt10_sharp/artifact --out docs/figures/mt10/imagined_vae_compare.png
"""
from __future__ import annotations

import argparse
import os


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", nargs="+", required=True)
    ap.add_argument("--tasks", nargs="+", default=["MT10"], help="tasks, or MT10")
    ap.add_argument("--ticks", type=int, default=3, help="inference ticks shown per task")
    ap.add_argument("--out", required=True, help="PNG path")
    a = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kairos_sim.metaworld_sim import MT10
    from training.evaluate import evaluate
    tasks = MT10 if a.tasks == ["MT10"] else a.tasks
    pairs = {art: evaluate(art, tasks, 1, progress=False)[3] for art in a.artifacts}   # task -> [(real, imagined)]
    n, T = len(a.artifacts), a.ticks
    fig, axes = plt.subplots(2 * len(tasks), n * T, figsize=(1.1 * n * T + 0.3 * n, 2.3 * len(tasks)), squeeze=False)
    for i, art in enumerate(a.artifacts):
        for r, task in enumerate(tasks):
            for t in range(T):
                for k in range(2):
                    ax = axes[2 * r + k, i * T + t]
                    ax.axis("off")
                    if t < len(pairs[art][task]) and pairs[art][task][t][k].size:
                        ax.imshow(pairs[art][task][t][k], interpolation="nearest")
                    if t == 0:
                        ax.set_title(f"{task.replace('-v3', '')}: " + ("real" if k == 0 else "imagined"),
                                     fontsize=6, loc="left")
    fig.suptitle("first held-out episode per task, real next frame above the imagined one; left to right: "
                 + ", ".join(a.artifacts), fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.99))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out, dpi=70)
    plt.close(fig)
    from PIL import Image                      # a 128-colour palette keeps the committed figure small
    Image.open(a.out).convert("RGB").quantize(128).save(a.out, optimize=True)
    return pairs


if __name__ == "__main__":
    main()

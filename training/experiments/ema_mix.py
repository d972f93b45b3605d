"""What a share of the starting weights costs an exported model (README, "MT10 on an H100").

A plain EMA with decay d keeps d^N of the weights a stage started from after N steps (0.999^1468 = 23%).
This mixes that share of the starting artifact's world model and understanding encoder into a
trained artifact's, w * start + (1 - w) * trained, and prints the held-out action error (teacher-forced,
as the trainer's end-of-training metric) for each share w:

    python -m training.experiments.ema_mix --artifact runs/mt10_cpu_relative/artifact \
        --start artifacts/tiny_button_press_v1 --shares 0 0.05 0.23

The held-out episodes are the trainer's (2 per task from variation 10000 on, collected by the
simulator into --data-root when missing).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch


def mixed_action_errors(artifact: str, start: str, shares, data_root: str, tasks, episodes: int = 2) -> dict:
    """{share: eval_actions result} for each share of the starting weights."""
    from kairos_model.checkpoint import load_checkpoint
    from kairos_sim.metaworld_sim import TEST_VARIATIONS
    from training.data.sources import Normalization
    from training.recipe import SourceConfig
    from training.trainer import Dist, WorldModelTrainable, eval_actions, load_episodes
    _, parts = load_checkpoint(artifact)
    _, init = load_checkpoint(start)
    with open(os.path.join(artifact, "config.json")) as f:
        meta = json.load(f)["meta"]
    norm = Normalization.from_meta(meta)
    held = load_episodes(SourceConfig(kind="sim_expert", tasks=list(tasks), episodes=episodes,
                                      first_variation=TEST_VARIATIONS, actions=True),
                         data_root, meta["joint_names"], Dist(), sync=False)
    trained = {n: {k: v.clone() for k, v in parts[n].state_dict().items()} for n in ("world_model", "understanding")}
    out = {}
    for w in shares:
        for n, sd in trained.items():
            isd = init[n].state_dict()
            parts[n].load_state_dict({k: (1 - w) * v + w * isd[k]
                                      if v.is_floating_point() and k in isd and isd[k].shape == v.shape else v
                                      for k, v in sd.items()})
        tr = WorldModelTrainable(parts, parts["vae"], meta["latent_scale"]).eval()
        out[w] = eval_actions(tr, held, norm, 64)
    return out


def main(argv=None) -> int:
    from kairos_sim.metaworld_sim import MT10
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", required=True, help="the trained artifact")
    ap.add_argument("--start", default="artifacts/tiny_button_press_v1", help="the weights its training started from")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.05, 0.23])
    ap.add_argument("--tasks", nargs="+", default=list(MT10))
    ap.add_argument("--data-root", default="runs/mt10_cpu_relative", help="where the held-out episodes are (data/)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    for w, m in mixed_action_errors(args.artifact, args.start, args.shares, args.data_root, args.tasks).items():
        print(f"share of starting weights {w:.2f}: held-out action error {m['action_mae_rad']:.4f} rad "
              f"(mean-action baseline {m['mean_action_mae_rad']:.4f}, {m['heldout_episodes']} episodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The distillation table: teacher at 40 steps, teacher at 4 steps (not distilled), student at 4 steps
(kairos distill), on the same held-out data, in one run:

- action error: teacher-forced along held-out expert episodes (scenes never demonstrated), mean |a - a*| rad;
- future-frame PSNR: the first imagined frame of every anchor, decoded, vs the real next frame;
- closed-loop success in the simulator (held-out scenes, offline clock) and mean episode length;
- latency of a control step that samples a chunk (torch eager, 2 threads; p50 over `--latency-steps`,
  measured after the evaluations with the rows interleaved round by round).

    python bench/distillation.py --student runs/distill_tiny/artifact
    python bench/distillation.py --student runs/distill_tiny/artifact --extra-steps 1 2   # also 1- and 2-step rows
    python bench/distillation.py --teacher runs/mt10_cpu/artifact --student runs/distill_mt10/artifact --tasks MT10

On reach-wall-around-v3 (two ways round a wall) each row also counts which way its episodes went, and
each closed-loop episode seeds the sampling noise with its scene number (independent draws of the way).
There it also measures each row's samples open loop, where replanning cannot hide a bad draw: from the
first frame of `--chunk-scenes` held-out scenes it draws `--chunk-samples` first action chunks and
takes where each would put the hand sideways (forward kinematics of the chunk's last joint target).
The expert goes ~10 cm left or right there; a sample within BETWEEN_M of the start is "between the
ways" (it heads for the wall), and the 1-D Wasserstein distance to the 40-step teacher's samples says
how far a row's distribution is from the one it should copy (`--chunk-plot` draws the histograms).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench_util import torch_threads  # noqa: E402  (bench/ is on sys.path: run as a script or by the tests)


WALL_TASK = "reach-wall-around-v3"      # kairos_sim.experts.AroundWallPolicy: two ways round a wall
BETWEEN_M = 0.03    # a first chunk moving the hand less than this sideways is between the ways (the expert: ~0.10)


def load_model(path):
    from kairos_model.checkpoint import load_checkpoint
    from training.data.sources import Normalization
    from training.trainer import WorldModelTrainable
    cfg, parts = load_checkpoint(path)
    with open(os.path.join(path, "config.json")) as f:
        m = json.load(f)["meta"]
    norm = Normalization.from_meta(m)
    tr = WorldModelTrainable(parts, parts["vae"], m.get("latent_scale", 1.0)).eval()
    return tr, norm, m


@torch.no_grad()
def future_psnr(tr, episodes, norm, steps: int) -> float:
    """PSNR (dB) of the first imagined frame at every anchor of each held-out episode vs the real next frame."""
    from kairos_model.vae import psnr
    from training.data.sources import EpisodeSource
    src = EpisodeSource(episodes, 64, tr.wm.cfg.action_horizon, norm, True)
    preds, trues = [], []
    for i, ep in enumerate(episodes):
        T = len(ep.state)
        x, st, _, _, task = src.clip(i, T)
        frames = torch.from_numpy(x).unsqueeze(0)
        lat, und = tr.latents(frames), tr.und_tokens(frames, [task])
        ctx, _ = tr.wm.encode_context(lat, torch.from_numpy(st).float().unsqueeze(0), und)
        anchors = torch.arange(T - 1)
        fut, _ = tr.wm.sample(ctx, anchors, steps=steps, generator=torch.Generator().manual_seed(i))
        preds.append(tr.vae[0].decode(fut[0, :, :1] / tr.latent_scale)[:, 0].clamp(0, 1))
        trues.append(frames[0, 1:T])
    return psnr(torch.cat(preds), torch.cat(trues))


@torch.no_grad()
def first_chunk_offsets(tr, episodes, norm, steps: int, samples: int, sim):
    """Open loop: from the first frame of each episode, `samples` first action chunks (one batch, its
    noise seeded by the episode's index), each taken to the hand's sideways offset (m, x) at its last
    joint target relative to the hand's start, by the sim's forward kinematics. Returns
    (offsets_m [E, samples], expert_offsets_m [E]: the demonstrated chunk's)."""
    from training.data.sources import EpisodeSource
    src = EpisodeSource(episodes, 64, tr.wm.cfg.action_horizon, norm, True)
    out, expert = [], []
    for i, ep in enumerate(episodes):
        x, st, ch, _, task = src.clip(i, 1)
        frames = torch.from_numpy(x).unsqueeze(0)
        lat, und = tr.latents(frames), tr.und_tokens(frames, [task])
        ctx, _ = tr.wm.encode_context(lat, torch.from_numpy(st).float().unsqueeze(0), und)
        # anchor 0 repeated: every prediction group is independent (its own noise, the same context)
        _, act = tr.wm.sample(ctx, torch.zeros(samples, dtype=torch.long), steps=steps,
                              generator=torch.Generator().manual_seed(1000 + i))
        last = act[0, :, -1].double().numpy() * norm.action_std + norm.action_mean      # [samples, A]
        last_true = ch[0, -1] * norm.action_std + norm.action_mean
        if norm.relative:
            last, last_true = last + ep.state[0], last_true + ep.state[0]
        x0 = sim.forward_hand(ep.state[0])[0]
        out.append([sim.forward_hand(q)[0] - x0 for q in last])
        expert.append(sim.forward_hand(last_true)[0] - x0)
    return np.asarray(out), np.asarray(expert)


def chunk_stats(offsets_m, reference_m) -> dict:
    """Left / between / right counts of first-chunk offsets (BETWEEN_M) and the Wasserstein-1 distance
    (cm) of their distribution to the reference row's (the 40-step teacher's)."""
    from scipy.stats import wasserstein_distance
    o = np.asarray(offsets_m).ravel()
    return {"left": int((o <= -BETWEEN_M).sum()), "between": int((np.abs(o) < BETWEEN_M).sum()),
            "right": int((o >= BETWEEN_M).sum()),
            "w1_to_teacher_cm": 100 * float(wasserstein_distance(o, np.asarray(reference_m).ravel()))}


def plot_chunk_offsets(rows, expert_m, path: str) -> None:
    """One histogram per row of the first chunk's sideways offsets (cm), the expert's in grey behind."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    bins = np.linspace(-20, 20, 41)
    fig, axes = plt.subplots(1, len(rows), figsize=(2.4 * len(rows), 2.4), sharex=True, sharey=True)
    for ax, (title, o) in zip(np.atleast_1d(axes), rows):
        o = 100 * np.asarray(o).ravel()
        ax.hist(100 * np.asarray(expert_m), bins=bins, color="0.8", density=True, label="expert")
        ax.hist(o, bins=bins, color="tab:blue", alpha=0.7, density=True, label="samples")
        ax.axvspan(-100 * BETWEEN_M, 100 * BETWEEN_M, color="tab:red", alpha=0.1)
        ax.set_title(f"{title}: {int((np.abs(o) < 100 * BETWEEN_M).sum())}/{o.size} between", fontsize=8)
        ax.set_xlabel("sideways (cm)")
        ax.set_yticks([])
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    save_small(fig, path)
    plt.close(fig)


def step_latencies(rows, n: int) -> list:
    """p50 latency (ms) of a control step that samples, for every (artifact, steps) in rows, measured
    after all the evaluations and interleaved round by round (this machine is noisy)."""
    from kairos_model.engine import Observation, load_engine
    engines = [load_engine(path, backend="torch", sampler_steps=steps).engine for path, steps in rows]
    rng = np.random.default_rng(0)
    lat = [[] for _ in rows]
    for i in range(n + 3):
        for k, eng in enumerate(engines):
            obs = Observation(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                              rng.normal(size=eng.cfg.proprio_dim) * 0.1, "press the button top down")
            t0 = time.perf_counter()
            eng.step(obs)
            if i >= 3:
                lat[k].append(1e3 * (time.perf_counter() - t0))
    return [float(np.median(x)) for x in lat]


def save_small(fig, path: str) -> None:
    """Write a figure as the committed ones are: 80 dpi, scaled to 3/4 and reduced to 32 colours (a
    third to a fifth of the plain PNG's bytes, the lines still readable)."""
    import io
    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    im = Image.open(buf).convert("RGB")
    im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS)
    im.quantize(32).save(path, optimize=True)


def plot_paths(rows, path: str) -> None:
    """One panel per row: the hand's path (x, y; m) of every closed-loop episode seen from above, the
    wall as a grey bar, successes in blue and failures in red."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kairos_sim.experts import WALL_X, WALL_Y
    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 3.0), sharex=True, sharey=True)
    for ax, (title, paths) in zip(np.atleast_1d(axes), rows):
        ax.fill_between(WALL_X, WALL_Y - 0.01, WALL_Y + 0.01, color="0.5")
        for p, ok in paths:
            ax.plot(p[:, 0], p[:, 1], color="tab:blue" if ok else "tab:red", lw=0.8, alpha=0.6)
        ax.set_title(f"{title}: {sum(ok for _, ok in paths)}/{len(paths)}", fontsize=9)
        ax.set_xlabel("hand x (m)")
        ax.set_aspect("equal")
    np.atleast_1d(axes)[0].set_ylabel("hand y (m)")
    fig.tight_layout()
    save_small(fig, path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="artifacts/tiny_button_press")
    ap.add_argument("--student", default="runs/distill_tiny/artifact")
    ap.add_argument("--teacher-steps", type=int, default=40)
    ap.add_argument("--student-steps", type=int, default=4)
    ap.add_argument("--extra-steps", type=int, nargs="*", default=[], help="also compare teacher and student here")
    ap.add_argument("--tasks", nargs="+", default=["button-press-topdown-v3"], help="tasks, or MT10")
    ap.add_argument("--heldout-episodes", type=int, default=10,
                    help="teacher-forced episodes per task (action error, PSNR)")
    ap.add_argument("--sim-episodes", type=int, default=20, help="closed-loop held-out scenes per task")
    ap.add_argument("--latency-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root", default="runs/distill_tiny", help="where held-out episodes are collected once")
    ap.add_argument("--out", help="write the table as JSON")
    ap.add_argument("--plot", help=f"on {WALL_TASK}: draw every row's hand paths seen from above (PNG)")
    ap.add_argument("--chunk-scenes", type=int, default=25,
                    help=f"on {WALL_TASK}: held-out scenes whose first chunk is sampled open loop")
    ap.add_argument("--chunk-samples", type=int, default=16, help="first chunks drawn per scene and row")
    ap.add_argument("--chunk-plot", help="histograms of the first chunks' sideways offsets (PNG)")
    ap.add_argument("--student-label", default="student",
                    help="the student's name in the table (e.g. 'student (1-step)')")
    a = ap.parse_args(argv)
    with torch_threads(a.threads):
        return _run(a)


def _run(a) -> int:
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm
    from kairos_sim.experts import way_round
    from kairos_sim.metaworld_sim import MT10, TEST_VARIATIONS
    from training.evaluate import evaluate
    from training.recipe import SourceConfig
    from training.trainer import Dist, eval_actions, load_episodes
    tasks = MT10 if a.tasks == ["MT10"] else a.tasks
    teacher, norm, meta = load_model(a.teacher)
    student, s_norm, s_meta = load_model(a.student)
    held = load_episodes(SourceConfig(kind="sim_expert", tasks=tasks, episodes=a.heldout_episodes,
                                      first_variation=TEST_VARIATIONS, actions=True),
                         a.data_root, meta.get("joint_names") or [], Dist(), sync=False)
    sl = a.student_label
    rows = [("teacher", a.teacher, teacher, a.teacher_steps), ("teacher", a.teacher, teacher, a.student_steps),
            (sl, a.student, student, a.student_steps)]
    for k in a.extra_steps:
        rows += [("teacher", a.teacher, teacher, k), (sl, a.student, student, k)]
    results, hand_paths, chunk_rows = [], [], []
    if WALL_TASK in tasks and a.chunk_scenes:
        from kairos_sim.metaworld_sim import MetaWorldSim, SimConfig
        chunk_eps = load_episodes(SourceConfig(kind="sim_expert", tasks=[WALL_TASK], episodes=a.chunk_scenes,
                                               first_variation=TEST_VARIATIONS, actions=True),
                                  a.data_root, meta.get("joint_names") or [], Dist(), sync=False)
        fk_sim = MetaWorldSim(SimConfig(task=WALL_TASK))
    for name, path, tr, steps in tqdm(rows, desc="distillation bench", unit="row"):
        act = eval_actions(tr, held, norm, 64, steps=steps)["action_mae_rad"]
        ps = future_psnr(tr, held, norm, steps)
        per_task, _, _, _ = evaluate(path, tasks, a.sim_episodes, sampler_steps=steps, progress=False,
                                     record_hand=WALL_TASK in tasks, seed_per_scene=WALL_TASK in tasks)
        res = [r for t in tasks for r in per_task[t]]
        succ = sum(r["success"] for r in res)
        if WALL_TASK in tasks and a.chunk_scenes:     # open loop: the first chunk's way, sampled many times
            offs, expert_offs = first_chunk_offsets(tr, chunk_eps, norm, steps, a.chunk_samples, fk_sim)
            chunk_rows.append((f"{name} @{steps}", offs))
        if WALL_TASK in tasks:       # the bimodal task: which way round each episode went (or blocked)
            paths = [(np.asarray(r.pop("hand_path")), r["success"]) for r in per_task[WALL_TASK]]
            ways = [way_round(p) for p, _ in paths]
            extra = {"ways_round": {w: ways.count(w) for w in ("left", "right", "over", "blocked")}}
            hand_paths.append((f"{name} @{steps}", paths))
        else:
            extra = {}
        results.append({**extra, "model": name, "steps": steps, "action_mae_rad": act, "future_psnr_db": ps,
                        "success": succ, "episodes": len(res), "mean_episode": float(np.mean([r["steps"] for r in res])),
                        "success_per_task": {t: sum(r["success"] for r in per_task[t]) for t in tasks}})
    for r, (_, offs) in zip(results, chunk_rows):
        r["first_chunk"] = chunk_stats(offs, chunk_rows[0][1])
    for r, ms in zip(results, step_latencies([(path, steps) for _, path, _, steps in rows], a.latency_steps)):
        r["latency_ms"] = ms
    ref = results[0]
    what = "MT10" if tasks == MT10 else ", ".join(tasks)
    table = Table(title=f"{what}: {a.heldout_episodes} held-out episodes per task (teacher-forced), {a.sim_episodes} "
                        f"held-out scenes per task closed loop, torch eager {a.threads} threads")
    for c in ("model", "sampler steps", "action error rad", "future PSNR dB", "success", "mean episode",
              "latency / sampling step ms", "speed-up vs teacher@%d" % a.teacher_steps) + (
              ("left / right / over / blocked",) if WALL_TASK in tasks else ()) + (
              ("first chunks left / between / right", "W1 to teacher cm") if chunk_rows else ()):
        table.add_column(c, justify="right")
    for r in results:
        table.add_row(r["model"], str(r["steps"]), f"{r['action_mae_rad']:.4f}", f"{r['future_psnr_db']:.2f}",
                      f"{r['success']}/{r['episodes']}", f"{r['mean_episode']:.1f}", f"{r['latency_ms']:.1f}",
                      f"{ref['latency_ms'] / r['latency_ms']:.1f}x",
                      *(["/".join(str(v) for v in r["ways_round"].values())] if "ways_round" in r else []),
                      *([f"{c['left']}/{c['between']}/{c['right']}", f"{c['w1_to_teacher_cm']:.2f}"]
                        if (c := r.get("first_chunk")) else []))
    Console().print(table)
    if a.plot and hand_paths:
        plot_paths(hand_paths, a.plot)
    if a.chunk_plot and chunk_rows:
        plot_chunk_offsets(chunk_rows, expert_offs, a.chunk_plot)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"distilled": s_meta.get("distilled"), "rows": results,
                       **({"first_chunk_expert_offsets_m": np.round(expert_offs, 6).tolist(),     # 1 µm
                           "first_chunk_offsets_m": {t: np.round(o, 6).tolist() for t, o in chunk_rows}}
                          if chunk_rows else {})},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

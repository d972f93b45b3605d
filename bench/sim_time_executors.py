"""The act node under a simulator's /clock, executor by executor: what a fast /clock costs its ticks.

A simulator (Gazebo, Isaac Sim, MuJoCo bridges) publishes /clock at 100-1000 Hz and every node runs
with use_sim_time. This bench replays the main job's recorded episodes through the act node
(`kairos replay --sim-time --clock-hz R`, the bag player in its own process publishing /clock) with
each rclpy executor the CLIs offer (kairos_ros.node_util.make_executor), and, as the reference, on the
system clock without /clock. Rows are interleaved per round so machine noise hits all alike; ratios
are against the same executor on the system clock, within this one run.

    python bench/sim_time_executors.py                                    # runs/replay_bags, 3 episodes
    python bench/sim_time_executors.py --bags data/bags/episode_* --clock-hz 100 1000 --rounds 2

Without --bags and without runs/replay_bags, it first records 3 episodes of the main job
(`kairos record` beside `kairos sim-act --episodes 3`, as the README's replay section does).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def record_main_job(out: str, episodes: int) -> list:
    """Record `episodes` episodes of the main job (closed loop on the simulated robot) into `out`."""
    rec = subprocess.Popen([os.path.join(BIN, "kairos"), "record", "--output-dir", out], cwd=ROOT)
    try:
        time.sleep(3.0)                                  # the recorder subscribes before the sim starts
        subprocess.run([os.path.join(BIN, "kairos"), "sim-act", "--episodes", str(episodes),
                        "--report", os.path.join(out, "sim_act")], check=True, cwd=ROOT)
        time.sleep(1.0)
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=30)
    return sorted(glob.glob(os.path.join(out, "episode_*")))


def replay(bags, executor: str, clock_hz: float, report: str, config: str, artifact) -> dict:
    cmd = [os.path.join(BIN, "kairos"), "replay", *bags, "--config", config, "--executor", executor,
           "--report", report]
    if clock_hz > 0:
        cmd += ["--sim-time", "--clock-hz", str(clock_hz)]
    if artifact:
        cmd += ["--artifact", artifact]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    with open(os.path.join(report, "report.json")) as f:
        return json.load(f)["summary"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bags", nargs="*", help="episodes to replay (default: the first 3 of runs/replay_bags)")
    ap.add_argument("--episodes", type=int, default=3, help="episodes taken from runs/replay_bags (or recorded)")
    ap.add_argument("--executors", nargs="+", default=["single", "events", "multi"])
    ap.add_argument("--clock-hz", nargs="+", type=float, default=[100.0, 1000.0],
                    help="/clock rates to run under (the system clock without /clock always runs too)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--config", default="config/sim_act.yaml")
    ap.add_argument("--artifact")
    ap.add_argument("--work", default="runs/sim_time_executors")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args(argv)
    bags = [os.path.abspath(b) for b in args.bags or []]
    if not bags:
        default = os.path.join(ROOT, "runs", "replay_bags")
        bags = sorted(glob.glob(os.path.join(default, "episode_*")))[:args.episodes]
        if not bags:
            print(f"recording {args.episodes} episodes of the main job into {default} ...")
            bags = record_main_job(default, args.episodes)[:args.episodes]
    work = os.path.abspath(args.work)
    clocks = [0.0] + [c for c in args.clock_hz if c > 0]
    runs = {}
    combos = [(e, c) for e in args.executors for c in clocks]
    for r in range(args.rounds):
        for i, (ex, hz) in enumerate(combos):
            label = f"{ex}, {'system clock' if hz == 0 else f'/clock {hz:g} Hz'}"
            print(f"round {r + 1}/{args.rounds}, {i + 1}/{len(combos)}: {label}", flush=True)
            s = replay(bags, ex, hz, os.path.join(work, f"{ex}_{hz:g}_{r}"), args.config, args.artifact)
            runs.setdefault((ex, hz), []).append(s)

    def mean(key, rs):
        vals = [s[key] for s in rs if s.get(key) is not None]
        return float(np.mean(vals)) if vals else float("nan")
    rows = []
    for (ex, hz), rs in runs.items():
        rows.append({"executor": ex, "clock_hz": hz, "runs": len(rs), "commands": mean("commands", rs),
                     "action_mae_rad": mean("action_mae_rad", rs), "hold_mae_rad": mean("hold_baseline_mae_rad", rs),
                     "latency_p50_ms": mean("latency_p50_ms", rs), "latency_p99_ms": mean("latency_p99_ms", rs)})
    ref = {r["executor"]: r for r in rows if r["clock_hz"] == 0}
    print(f"\n{len(bags)} episode(s), {args.rounds} round(s); means over rounds; ratios against the same executor "
          f"on the system clock\n")
    print("| executor | clock | commands | action error (rad) | holding still | tick p50 | tick p99 | p99 / system clock |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        clock = "system (no /clock)" if r["clock_hz"] == 0 else f"/clock {r['clock_hz']:g} Hz"
        base = ref.get(r["executor"])
        ratio = r["latency_p99_ms"] / base["latency_p99_ms"] if base else float("nan")
        r["p99_vs_system"] = ratio
        print(f"| {r['executor']} | {clock} | {r['commands']:.0f} | {r['action_mae_rad']:.4f} | {r['hold_mae_rad']:.4f} "
              f"| {r['latency_p50_ms']:.1f} ms | {r['latency_p99_ms']:.1f} ms | {ratio:.1f}x |")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"bags": bags, "rounds": args.rounds, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

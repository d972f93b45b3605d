"""`kairos replay BAG... [--artifact DIR] [--rate 1]`: the act node run on recorded episodes, over
real topics, and scored against what the robot really did next.

The `bag_player` node plays each episode's camera frames, joint states and task text onto their
topics at the recorded spacing, in its own process (as a robot driver would publish them; a player
sharing this process's interpreter lock sent messages up to a third of a second late), with /clock
the recorded time; the act node runs here with use_sim_time, its memory reset at each episode start,
and commands the trajectories it would command on the robot. Each command is scored against the
recorded joint states: |target at point k - the joint state recorded at the time point k is for|,
beside holding the joints recorded when the command was sent; the ticks where the node held (stale,
malformed or non-finite input, a frame without its joint state, ...) are counted by cause; the first
frame of each ImaginedFuture the node publishes is compared (PSNR) with the frame recorded at the time
it is predicted for. Writes report.json, commands.png, strips of recorded vs imagined frames and
report.html to --report. Where `kairos eval-bag` scores the
engine alone, faster than real time, this runs everything between the topics and the engine as
deployed: image decoding, joint mapping by name, staleness checks, tick timing, chunk execution,
safety limits. `--rate 0.5` gives a backend too slow for real time on this machine twice the wall time.

    kairos replay data/bags/episode_* --report runs/replay            # config/sim_act.yaml's node
    kairos replay data/bags/episode_000003 --config config/act.yaml --artifact artifacts/my_robot --rate 0.5
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

import numpy as np

from kairos_ros.node_util import add_executor_argument


def _ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def score_episode(bag: str, joint_topic: str, camera_topic: str, commands, imagined, timing: dict,
                  step_s: float) -> dict:
    """commands: [(clock_ns, [(time_from_start_ns, {joint: target})])] the act node sent while this
    episode played; imagined: [(clock_ns the frame is predicted for, uint8 [H, W, 3])], the first frame
    of each ImaginedFuture; timing: the episode's start event (offset_ns)."""
    from kairos_ros.core.bag_player import recorded_for_scoring, score_commands
    from kairos_ros.core.image import psnr_u8, resize_rgb
    from kairos_ros.core.recorder import BagSource
    off = timing["offset_ns"]
    states, frames = recorded_for_scoring(BagSource(bag), joint_topic, camera_topic, [t - off for t, _ in imagined],
                                          max_gap_ns=int(step_s * 0.5e9))
    if not states:
        raise ValueError(f"{bag}: no joint states on {joint_topic} to score against")
    scores = score_commands([(c - off, pts) for c, pts in commands], states, max_gap_ns=int(step_s * 1.5e9))
    out = {"bag": bag, "task": timing.get("task", ""), "commands": len(commands), "scored_commands": len(scores),
           "recorded_s": (states[-1][0] - states[0][0]) / 1e9}
    if scores:
        H = max(len(s.error) for s in scores)
        err = np.full((len(scores), H), np.nan)
        hold = np.full((len(scores), H), np.nan)
        for i, s in enumerate(scores):
            err[i, :len(s.error)] = np.mean(s.error, axis=1)
            hold[i, :len(s.hold)] = np.mean(s.hold, axis=1)
        out.update(action_mae_rad=float(np.nanmean(err)), hold_baseline_mae_rad=float(np.nanmean(hold)),
                   action_mae_per_step=np.nanmean(err, axis=0).tolist(),
                   hold_mae_per_step=np.nanmean(hold, axis=0).tolist())
    pairs = []
    for t, img in imagined:
        rec = frames.get(t - off)
        if rec is not None:
            pairs.append((resize_rgb(rec, img.shape[0]) if rec.shape != img.shape else rec, img))
    out["imagined_frames_scored"] = len(pairs)
    if pairs:
        out["imagined_psnr_db"] = float(np.mean([psnr_u8(a, b) for a, b in pairs]))
    out["_pairs"] = pairs[:8]
    return out


def write_report(out: str, results: list, summary: dict) -> None:
    """report.json, commands.png (error per trajectory point), per episode a strip of recorded
    (top) vs imagined (bottom) next frames, and report.html showing them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    rows = []
    for i, r in enumerate(results):
        pairs = r.pop("_pairs", [])
        strip = ""
        if pairs:
            Image.fromarray(np.concatenate([np.concatenate([a, b], axis=0) for a, b in pairs], axis=1)).save(
                os.path.join(out, f"imagined_{i:02d}.png"))
            strip = f"<img src='imagined_{i:02d}.png' height=160>"
        err = (f"{r['action_mae_rad']:.4f} ({r['hold_baseline_mae_rad']:.4f})" if "action_mae_rad" in r else "-")
        psnr = f"{r['imagined_psnr_db']:.1f}" if "imagined_psnr_db" in r else "-"
        held = ", ".join(f"{k} x{n}" for k, n in r.get("holds", {}).items())
        rows.append(f"<tr><td>{os.path.basename(r['bag'].rstrip('/'))}</td><td>{r['commands']}</td><td>{err}</td>"
                    f"<td>{psnr}</td><td>{held}</td><td>{strip}</td></tr>")
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"summary": summary, "episodes": results}, f, indent=2)
    scored = [r for r in results if "action_mae_per_step" in r]
    if scored:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for r in scored:
            k = range(1, len(r["action_mae_per_step"]) + 1)
            line, = ax.plot(k, r["action_mae_per_step"], marker="o", label=os.path.basename(r["bag"].rstrip("/")))
            ax.plot(k, r["hold_mae_per_step"], ls=":", color=line.get_color())
        ax.set(xlabel="trajectory point", ylabel="|target - recorded| (rad)",
               title="act node commands vs recorded motion (dotted: holding still)")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "commands.png"), dpi=110)
        plt.close(fig)
    s = summary
    head = (f"{s['episodes']} episodes at {s['rate']:g}x ({'/clock' if s['sim_time'] else 'system clock'}), artifact "
            f"{s['artifact']} on {s['backend']}: {s['commands']} commands, action error "
            f"{s['action_mae_rad'] if s['action_mae_rad'] is not None else float('nan'):.4f} rad (holding still "
            f"{s['hold_baseline_mae_rad'] if s['hold_baseline_mae_rad'] is not None else float('nan'):.4f}), "
            f"imagined next frame {s['imagined_psnr_db'] if s['imagined_psnr_db'] is not None else float('nan'):.1f} dB")
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write(f"<html><body><h2>kairos replay</h2><p>{head}</p><img src='commands.png'><table border=1><tr>"
                "<th>episode</th><th>commands</th><th>action error, rad (holding still)</th><th>imagined next "
                "frame, dB</th><th>held</th><th>recorded (top) vs imagined (bottom)</th></tr>" + "".join(rows)
                + "</table></body></html>")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bags", nargs="+", help="recorder episode directories or rosbag2 bag directories, in order")
    ap.add_argument("--config", default="config/sim_act.yaml", help="the act node's parameters (kairos_act section)")
    ap.add_argument("--artifact", help="overrides the config's artifact")
    ap.add_argument("--backend", choices=("auto", "torch", "onnx", "tensorrt"))
    ap.add_argument("--sampler-steps", type=int)
    ap.add_argument("--tick-on", choices=("timer", "frame"))
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed (0.5: half; the ROS clock slows to match)")
    ap.add_argument("--sim-time", action="store_true",
                    help="run the act node on the played /clock also at rate 1 (at other rates it always does)")
    ap.add_argument("--clock-hz", type=float, default=40.0, help="/clock messages per wall second (sim time)")
    add_executor_argument(ap)
    ap.add_argument("--report", default="runs/replay")
    ap.add_argument("--timeout", type=float, default=0.0, help="seconds before giving up (0: from the bags' length)")
    args, ros_args = ap.parse_known_args(argv)
    from kairos_ros.act_cli import load_params
    from kairos_ros.core.bag_player import PlaybackConfig, PlaybackPlan
    from kairos_ros.core.recorder import BagSource, RecorderError
    act_p = load_params(args.config)
    for key, val in (("artifact", args.artifact), ("backend", args.backend), ("sampler_steps", args.sampler_steps),
                     ("tick_on", args.tick_on)):
        if val is not None:
            act_p[key] = val
    if act_p.get("artifact") and not os.path.isdir(act_p["artifact"]):
        print(f"kairos replay: artifact {act_p['artifact']!r} not found", file=sys.stderr)
        return 2
    cam = "/" + act_p.get("camera_topic", "camera/image_raw").lstrip("/")
    joints_topic = "/" + act_p.get("joint_states_topic", "joint_states").lstrip("/")
    compressed = act_p.get("camera_transport", "raw") == "compressed"     # play the camera topic the node reads
    topics = [cam + "/compressed" if compressed else cam, joints_topic]
    bags = [os.path.abspath(b) for b in args.bags]
    try:
        sources = [BagSource(b) for b in bags]
        PlaybackPlan(sources, PlaybackConfig(rate=args.rate, topics=topics))     # checks before starting anything
    except (RecorderError, ValueError) as e:
        print(f"kairos replay: {e}", file=sys.stderr)
        return 2
    length_s = sum(s.record["ended"] - s.record["started"] if s.record.get("ended") and s.record.get("started")
                   else 60.0 for s in sources)
    timeout = args.timeout or 60.0 + (length_s + len(bags) * 1.5) / args.rate

    import rclpy
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from kairos_msgs.msg import ImaginedFuture
    from kairos_ros.core.image import image_to_rgb
    from kairos_ros.node_util import make_executor, spawn_node, start_act_node, stop_act_node, stop_child

    rclpy.init(args=["kairos_replay", *ros_args])
    # At rate 1 the act node runs on the system clock, as on the robot; at other rates it must follow
    # the played clock (under a 100-1000 Hz /clock tick p99 stays 26-57 ms with the single-threaded or
    # events executor; a multi-threaded one made it over 200 ms: bench/sim_time_executors.py).
    sim_time = args.sim_time or args.rate != 1.0
    act = start_act_node({**act_p, "use_sim_time": sim_time}, "kairos replay")
    if act is None:
        return 1
    params = {"bags": bags, "rate": args.rate, "topics": topics, "publish_clock": sim_time, "clock_hz": args.clock_hz,
              "reset_service": "/kairos_act/reset_memory", "instruction_topic": act_p.get("instruction_topic", "instruction"),
              "wait_for_subscribers_s": 30.0, "wait_for_event_subscribers": 1}
    events, commands = [], []
    mon = rclpy.create_node("kairos_replay_monitor")
    mon.create_subscription(String, "/bag_player/events", lambda m: events.append(json.loads(m.data)), 10)

    def on_traj(m):
        commands.append((_ns(m.header.stamp), [(_ns(pt.time_from_start), dict(zip(m.joint_names, pt.positions)))
                                               for pt in m.points]))
    mon.create_subscription(JointTrajectory, act_p.get("trajectory_topic", "joint_trajectory_controller/joint_trajectory"),
                            on_traj, 10)
    imagined = []

    def on_future(m):
        if m.frames:
            f = m.frames[0]
            imagined.append((_ns(m.stamps[0]), image_to_rgb(f.encoding, f.height, f.width, f.step, f.data)))
    mon.create_subscription(ImaginedFuture, "/kairos_act/imagined_future", on_future, 10)
    ex = make_executor(args.executor)
    for n in (act, mon):
        ex.add_node(n)
    player, params_file = spawn_node("bag_player", "bag_player", params, ros_args)
    print(f"kairos replay: {len(bags)} episode(s) at {args.rate:g}x through the act node, artifact {act.artifact_id}")
    t0, done = time.time(), None
    try:
        while rclpy.ok() and time.time() - t0 < timeout and done is None:
            ex.spin_once(timeout_sec=0.05)
            for e in events:
                if e["event"] in ("done", "failed"):
                    done = e
            if player.poll() is not None and done is None:
                for _ in range(20):                  # the last events may still be in flight
                    ex.spin_once(timeout_sec=0.02)
                done = next((e for e in events if e["event"] in ("done", "failed")), {"event": "failed",
                            "error": f"bag_player exited with {player.returncode}"})
        for _ in range(10):                          # the last commands
            ex.spin_once(timeout_sec=0.02)
    except KeyboardInterrupt:
        pass
    finally:
        lat = [1e3 * x for x in act.latencies]
        holds = list(act.holds)
        backend = act.core.engine.backend
        stop_child(player, params_file, timeout=10)
        stop_act_node(act, ex, [mon])
    if done is None or done["event"] != "done":
        print(f"kairos replay: playback did not finish ({(done or {}).get('error', 'timed out')})", file=sys.stderr)
        return 1
    starts = {e["episode"]: e for e in events if e["event"] == "start"}
    ends = {e["episode"]: e for e in events if e["event"] == "end"}
    step_s = 1.0 / float(act_p.get("control_rate_hz", 10.0))
    results = []
    for i, bag in enumerate(bags):
        if i not in starts or i not in ends:
            print(f"kairos replay: no start/end event for episode {i} ({bag})", file=sys.stderr)
            return 1
        st = starts[i]
        to_clock = ((lambda t: t) if sim_time else              # system-time stamps -> the playback clock
                    (lambda t: st["clock_ns"] + int((t - st["wall_ns"]) * args.rate)))
        lo, hi = st["first_clock_ns"], ends[i]["clock_ns"] + int(step_s * 1e9)   # its first message to a tick past its last
        mine = [(c, pts) for c, pts in ((to_clock(c), pts) for c, pts in commands) if lo <= c <= hi]
        seen = [(c, img) for c, img in ((to_clock(c), img) for c, img in imagined) if lo <= c <= hi]
        r = score_episode(bag, joints_topic, cam, mine, seen, st, step_s)
        r["holds"] = dict(collections.Counter(kind for t, kind in holds if lo <= to_clock(t) <= hi))
        results.append(r)
        err = (f"action error {r['action_mae_rad']:.4f} rad (holding still {r['hold_baseline_mae_rad']:.4f})"
               if "action_mae_rad" in r else "no command could be scored")
        if "imagined_psnr_db" in r:
            err += f", imagined next frame {r['imagined_psnr_db']:.1f} dB"
        held = "; held: " + ", ".join(f"{k} x{n}" for k, n in r["holds"].items()) if r["holds"] else ""
        print(f"  {os.path.basename(bag.rstrip('/'))}: {r['commands']} commands over {r['recorded_s']:.1f} s, {err}{held}")
    scored = [r for r in results if "action_mae_rad" in r]
    summary = {"episodes": len(results), "rate": args.rate, "sim_time": sim_time, "artifact": act_p.get("artifact") or "untrained",
               "backend": backend,
               "commands": sum(r["commands"] for r in results),
               "holds": dict(sum((collections.Counter(r["holds"]) for r in results), collections.Counter())),
               "action_mae_rad": float(np.mean([r["action_mae_rad"] for r in scored])) if scored else None,
               "hold_baseline_mae_rad": float(np.mean([r["hold_baseline_mae_rad"] for r in scored])) if scored else None,
               "imagined_psnr_db": (float(np.mean([r["imagined_psnr_db"] for r in results if "imagined_psnr_db" in r]))
                                    if any("imagined_psnr_db" in r for r in results) else None),
               "latency_p50_ms": float(np.percentile(lat, 50)) if lat else None,
               "latency_p99_ms": float(np.percentile(lat, 99)) if lat else None,
               "latency_first_tick_ms": lat[0] if lat else None,
               "player_late_ms_p99": done.get("late_ms_p99")}
    write_report(args.report, results, summary)
    print(f"{summary['commands']} commands; action error {summary['action_mae_rad'] or float('nan'):.4f} rad against "
          f"{summary['hold_baseline_mae_rad'] or float('nan'):.4f} for holding still; imagined next frame "
          f"{summary['imagined_psnr_db'] or float('nan'):.1f} dB; control latency p50 "
          f"{summary['latency_p50_ms'] or float('nan'):.1f} ms; report in {args.report}")
    return 0 if scored else 1

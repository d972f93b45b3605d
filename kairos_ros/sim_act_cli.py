"""`kairos sim-act`: the main job. The act node controls the simulated robot through real ROS 2 topics
(the graph of `ros2 launch kairos_ros sim_act.launch.py`): the act node runs in this process, the
`sim_robot` node in a child process, as a robot driver would. A few held-out episodes; prints
success rate, episode length and control latency, writes a report (frames from the camera topic).

    kairos sim-act                                  # config/sim_act.yaml, 5 episodes
    kairos sim-act --episodes 20 --task drawer-open-v3 --artifact runs/mt10/artifact
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import yaml

from kairos_ros.node_util import add_executor_argument


def _section(doc: dict, node: str, known: dict, path: str) -> dict:
    params = (doc.get(node) or {}).get("ros__parameters")
    if params is None:
        raise ValueError(f"{path}: expected '{node}: ros__parameters: {{...}}'")
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown {node} parameters {unknown}; known: {sorted(known)}")
    return dict(params)


def write_report(out: str, results, frames_per_episode, latencies_ms, summary: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    for i, frames in enumerate(frames_per_episode):
        imgs = [Image.fromarray(f).resize((128, 128), Image.NEAREST) for f in frames]
        if imgs:
            imgs[0].save(os.path.join(out, f"episode_{i:02d}.gif"), save_all=True, append_images=imgs[1:],
                         duration=100, loop=0)
    n = len(frames_per_episode)
    if n:
        cols = 8
        fig, ax = plt.subplots(n, cols, figsize=(cols * 1.2, n * 1.35), squeeze=False)
        for r, (frames, res) in enumerate(zip(frames_per_episode, results)):
            idx = np.linspace(0, len(frames) - 1, cols).round().astype(int)
            for c, k in enumerate(idx):
                ax[r, c].imshow(frames[k])
                ax[r, c].axis("off")
                ax[r, c].set_title(f"t={k}", fontsize=6)
            ax[r, 0].text(-8, 32, f"ep {r}\n{'OK' if res['success'] else 'fail'}", fontsize=7, ha="right", va="center")
        fig.suptitle(f"{summary['task']}: {summary['successes']}/{summary['episodes']} successes "
                     f"(camera frames the act node saw)", fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "episodes.png"), dpi=110)
        plt.close(fig)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({**summary, "results": results, "latency_ms": latencies_ms}, f, indent=2)
    rows = "".join(f"<tr><td>{r['episode']}</td><td>{r['variation']}</td><td>{'success' if r['success'] else 'failure'}"
                   f"</td><td>{r['steps']}</td><td><img src='episode_{i:02d}.gif' width=128></td></tr>"
                   for i, r in enumerate(results))
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write(f"<html><body><h2>kairos sim-act: {summary['task']}</h2><p>{summary['successes']}/"
                f"{summary['episodes']} successes; latency p50 {summary['latency_p50_ms']:.1f} ms, p99 "
                f"{summary['latency_p99_ms']:.1f} ms; artifact {summary['artifact']}</p><img src='episodes.png'>"
                f"<table border=1><tr><th>episode</th><th>variation</th><th>result</th><th>steps</th><th>video</th>"
                f"</tr>{rows}</table></body></html>")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos sim-act", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/sim_act.yaml")
    ap.add_argument("--artifact", help="overrides the config's artifact")
    ap.add_argument("--task", help="overrides the sim's task")
    ap.add_argument("--backend", choices=("auto", "torch", "onnx", "tensorrt"), help="overrides the config's backend")
    ap.add_argument("--sampler-steps", type=int, help="overrides the config's flow-matching steps per control step")
    ap.add_argument("--tick-on", choices=("timer", "frame"), help="overrides the act node's tick_on (when it ticks)")
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--first-variation", type=int, help="overrides the first held-out scene")
    add_executor_argument(ap)
    ap.add_argument("--report", default="runs/sim_act", help="report directory")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args, ros_args = ap.parse_known_args(argv)

    from kairos_ros.act_node import PARAMETERS as ACT_PARAMS
    from kairos_ros.sim_robot_node import PARAMETERS as SIM_PARAMS
    with open(args.config) as f:
        doc = yaml.safe_load(f) or {}
    act_p = _section(doc, "kairos_act", ACT_PARAMS, args.config)
    sim_p = _section(doc, "sim_robot", SIM_PARAMS, args.config)
    if args.artifact:
        act_p["artifact"] = args.artifact
    if args.backend:
        act_p["backend"] = args.backend
    if args.tick_on:
        act_p["tick_on"] = args.tick_on
    if args.sampler_steps is not None:
        if args.sampler_steps < 1:
            ap.error("--sampler-steps must be at least 1")
        act_p["sampler_steps"] = args.sampler_steps
    if args.task:
        sim_p["task"] = args.task
    if args.first_variation is not None:
        sim_p["first_variation"] = args.first_variation
    sim_p["episodes"] = args.episodes
    if act_p.get("artifact") and not os.path.isdir(act_p["artifact"]):
        print(f"kairos sim-act: artifact {act_p['artifact']!r} not found (run from the repository root, or "
              f"build one: kairos train training/recipes/tiny.yaml)", file=sys.stderr)
        return 2

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from kairos_ros.node_util import make_executor, spawn_node, start_act_node, stop_act_node, stop_child

    rclpy.init(args=["kairos_sim_act", *ros_args])
    act = start_act_node(act_p, "kairos sim-act")
    if act is None:
        return 1
    steps = act.core.engine.sampler_steps          # what the node resolved (sampler_steps 0: the artifact's own)
    # The simulated robot runs in its own process, as a robot driver would (and its physics and
    # software rendering then never wait for this process's interpreter lock).
    sim, params_file = spawn_node("sim_robot", "sim_robot", sim_p, ros_args)
    events, frames_now = [], []
    listener = rclpy.create_node("kairos_sim_act_monitor")
    listener.create_subscription(String, "/sim_robot/episode", lambda m: events.append(json.loads(m.data)), 10)

    def on_image(m):
        frames_now.append(np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, 3).copy())
    listener.create_subscription(Image, act_p.get("camera_topic", "camera/image_raw"), on_image,
                                 qos_profile_sensor_data)
    ex = make_executor(args.executor)
    for n in (act, listener):
        ex.add_node(n)
    frames, results = [], []
    t0 = time.time()
    print(f"kairos sim-act: {sim_p['task']}, {args.episodes} held-out episodes, artifact {act.artifact_id}")
    try:
        while rclpy.ok() and time.time() - t0 < args.timeout and sim.poll() is None:
            ex.spin_once(timeout_sec=0.05)
            while events:
                e = events.pop(0)
                if e["event"] == "start":
                    frames_now.clear()
                elif e["event"] == "end":
                    results.append(e)
                    frames.append(list(frames_now))
                    print(f"  episode {e['episode']} (scene {e['variation']}): "
                          f"{'success' if e['success'] else 'failure'} after {e['steps']} steps")
            if len(results) >= args.episodes:
                break
    except KeyboardInterrupt:
        pass
    finally:
        lat = [1e3 * x for x in act.latencies]
        ages = [1e3 * x for x in act.frame_ages]
        misses = act.deadline_misses
        stop_child(sim, params_file)
        stop_act_node(act, ex, [listener])
    ok = sum(r["success"] for r in results)
    summary = {"task": sim_p["task"], "episodes": len(results), "successes": ok,
               "success_rate": ok / max(1, len(results)),
               "mean_episode_steps": float(np.mean([r["steps"] for r in results])) if results else 0.0,
               "latency_p50_ms": float(np.percentile(lat, 50)) if lat else float("nan"),
               "latency_p99_ms": float(np.percentile(lat, 99)) if lat else float("nan"),
               "frame_age_p50_ms": float(np.percentile(ages, 50)) if ages else float("nan"),
               "frame_age_p99_ms": float(np.percentile(ages, 99)) if ages else float("nan"),
               "tick_on": act.p("tick_on"),
               "deadline_misses": misses, "control_ticks": len(lat), "artifact": act_p.get("artifact") or "untrained",
               "sampler_steps": steps, "backend": act_p.get("backend")}
    write_report(args.report, results, frames, lat, summary)
    print(f"success {ok}/{len(results)} ({100 * summary['success_rate']:.0f}%), mean episode "
          f"{summary['mean_episode_steps']:.1f} steps, control latency p50 {summary['latency_p50_ms']:.1f} ms "
          f"p99 {summary['latency_p99_ms']:.1f} ms, {misses} deadline misses of {len(lat)} ticks; frame age at "
          f"command p50 {summary['frame_age_p50_ms']:.1f} ms p99 {summary['frame_age_p99_ms']:.1f} ms "
          f"(tick on {summary['tick_on']})")
    print(f"report: {args.report}/report.html")
    return 0 if len(results) >= args.episodes else 1


if __name__ == "__main__":
    sys.exit(main())

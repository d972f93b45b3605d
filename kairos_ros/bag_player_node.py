"""bag_player: recorded episodes back onto their topics, at their recorded spacing, for running the
act node (or anything else) on recorded data (the plan: kairos_ros/core/bag_player.py).

    ros2 run kairos_ros bag_player --ros-args -p "bags:=[data/bags/episode_000000]" -p rate:=0.5
    ros2 launch kairos_ros replay.launch.py bags:="[data/bags/episode_000000, data/bags/episode_000001]"

Publishes  every played topic as recorded (serialized bytes, no decoding; by default the act node's
           inputs: camera, joint states, instruction), /clock (rosgraph_msgs/Clock, the recorded
           time, slowed by `rate`; nodes under test run with use_sim_time), the episode's task text on
           `instruction_topic` at each episode start (transient local), ~/events (std_msgs/String
           JSON: start / end per episode with its clock offset, its playback clock and the system
           time then, so stamps of either clock map back onto the recording; then done).
Calls      `reset_service` (kairos_msgs/ResetMemory) at each episode start, so the act node's memory
           begins with the episode, as the sim robot does.

Unlike `ros2 bag play` it reads this project's segmented episodes (a crash-truncated one plays what
was kept), places many episodes on one clock, and resets the model between them; it needs no ROS
install beyond rclpy (bags are read with `rosbags`).
"""
from __future__ import annotations

import importlib
import json
import sys
import threading
import time

import numpy as np
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String

from kairos_msgs.srv import ResetMemory
from kairos_ros.core.bag_player import ACT_INPUT_TOPICS, PlaybackConfig, PlaybackPlan
from kairos_ros.core.recorder import BagSource
from kairos_ros.node_util import declare_parameters, spin_until_shutdown

PARAMETERS = {
    "rate": (1.0, "playback speed: 1 = as recorded, 0.5 = half (the /clock slows to match)"),
    "publish_clock": (True, "publish /clock (the recorded time); run the nodes under test with use_sim_time"),
    "clock_hz": (40.0, "/clock messages per wall second (as ros2 bag play; each costs every use_sim_time "
                       "rclpy node a callback)"),
    "gap_s": (1.0, "clock seconds between one episode's end and the next one's start"),
    "lead_s": (0.2, "wall seconds between an episode's start (memory reset, instruction) and its first message"),
    "topics": (list(ACT_INPUT_TOPICS), "absolute names of the topics to play ('*': every recorded topic); "
                                       "the recorded commands are left out by default"),
    "instruction_topic": ("instruction", "std_msgs/String: each episode's recorded task text at its start ('' = off)"),
    "reset_service": ("kairos_act/reset_memory", "ResetMemory service called at each episode start ('' = none)"),
    "wait_for_subscribers_s": (5.0, "before playing, wait up to this long for a subscriber on every played topic"),
    "wait_for_event_subscribers": (0, "also wait (as long) until this many subscribers (a monitor) match ~/events, "
                                      "so none misses the first start event"),
    "exit_when_done": (True, "the bag_player executable exits when the last episode has played"),
}


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image; a type not installed here is a clear error."""
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"recorded type {msgtype} is not installed here ({e}); install its message "
                         f"package or leave its topic out of `topics`") from e


class BagPlayerNode(Node):
    def __init__(self, name: str = "bag_player", **kwargs):
        super().__init__(name, **kwargs)
        self.stop, self.done, self.thread = threading.Event(), threading.Event(), None
        self.declare_parameter("bags", Parameter.Type.STRING_ARRAY,
                               ParameterDescriptor(description="recorder episode or rosbag2 directories, played in order"))
        declare_parameters(self, PARAMETERS)
        p = lambda k: self.get_parameter(k).value  # noqa: E731
        bags = self.get_parameter_or("bags", Parameter("bags", value=[])).value or []
        if not bags:
            raise ValueError("bag_player needs bags: -p \"bags:=[data/bags/episode_000000, ...]\"")
        topics = [t if t.startswith("/") else "/" + t for t in p("topics") if t != "*"]
        self.cfg = PlaybackConfig(rate=p("rate"), clock_hz=p("clock_hz") if p("publish_clock") else 0.0,
                                  gap_s=p("gap_s"), lead_s=p("lead_s"), topics=() if "*" in p("topics") else topics)
        sources = [BagSource(b) for b in bags]
        for src in sources:
            if src.record.get("status") not in ("complete", None):
                self.get_logger().warning(f"{src.path}: episode is {src.record['status']!r} "
                                          f"({src.record.get('lost_segments', 0)} segment(s) lost); playing what was kept")
        self.plan = PlaybackPlan(sources, self.cfg)
        self.pubs = {topic: self.create_publisher(message_class(msgtype), topic, 10)
                     for topic, msgtype in self.plan.publishers()}
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.instr_pub = (self.create_publisher(String, p("instruction_topic"), latched)
                          if p("instruction_topic") else None)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if p("publish_clock") else None
        self.event_pub = self.create_publisher(String, "~/events", 10)
        self.reset_cli = self.create_client(ResetMemory, p("reset_service")) if p("reset_service") else None
        self.lateness_ms = []
        self.thread = threading.Thread(target=self._run, name="bag_player", daemon=True)
        self.thread.start()
        self.get_logger().info(f"playing {len(bags)} bag(s) at {self.cfg.rate:g}x: {[t for t, _ in self.plan.publishers()]}")

    def _event(self, d: dict):
        self.event_pub.publish(String(data=json.dumps(d)))

    def _wait_for_subscribers(self):
        deadline = time.monotonic() + self.get_parameter("wait_for_subscribers_s").value
        pubs = dict(self.pubs)
        if self.instr_pub is not None:
            pubs["instruction"] = self.instr_pub
        want_events = self.get_parameter("wait_for_event_subscribers").value
        while not self.stop.is_set() and time.monotonic() < deadline:
            if (all(pub.get_subscription_count() > 0 for pub in pubs.values())
                    and self.event_pub.get_subscription_count() >= want_events):
                return
            self.stop.wait(0.05)
        lonely = sorted(t for t, pub in pubs.items() if pub.get_subscription_count() == 0)
        if lonely:
            self.get_logger().warning(f"playing without subscribers on {lonely}")
        if self.event_pub.get_subscription_count() < want_events:
            self.get_logger().warning(f"playing with {self.event_pub.get_subscription_count()} of {want_events} "
                                      "subscribers on ~/events")

    def _reset(self, episode: int):
        if self.reset_cli is None:
            return
        if not self.reset_cli.wait_for_service(timeout_sec=2.0):
            self.get_logger().warning(f"{self.reset_cli.srv_name} is not available: episode {episode} starts "
                                      "without a memory reset", throttle_duration_sec=60.0)
            return
        fut = self.reset_cli.call_async(ResetMemory.Request())
        deadline = time.monotonic() + 2.0
        while not fut.done() and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.002)              # the executor spinning this node completes the future
        if not fut.done():
            self.get_logger().warning(f"{self.reset_cli.srv_name} did not answer in 2 s (episode {episode})")

    def _run(self):
        try:
            self._wait_for_subscribers()
            start = time.monotonic()
            for ev in self.plan.events():
                if self.stop.is_set():
                    return
                late = time.monotonic() - (start + ev.wall_s)
                if late < 0:
                    self.stop.wait(-late)
                if ev.kind == "message":
                    self.lateness_ms.append(max(0.0, late) * 1e3)
                    self.pubs[ev.topic].publish(ev.raw)
                elif ev.kind == "clock":
                    self.clock_pub.publish(Clock(clock=Time(sec=ev.clock_ns // 10**9, nanosec=ev.clock_ns % 10**9)))
                elif ev.kind == "episode_start":
                    timing = self.plan.timings[ev.episode]
                    self._reset(ev.episode)
                    if self.instr_pub is not None and timing.task:
                        self.instr_pub.publish(String(data=timing.task))
                    self._event({"event": "start", "episode": ev.episode, "bag": timing.path, "task": timing.task,
                                 "offset_ns": timing.offset_ns, "clock_ns": ev.clock_ns, "wall_ns": time.time_ns(),
                                 "first_clock_ns": timing.first_clock_ns})
                elif ev.kind == "episode_end":
                    timing = self.plan.timings[ev.episode]
                    self._event({"event": "end", "episode": ev.episode, "bag": timing.path,
                                 "messages": timing.messages, "clock_ns": ev.clock_ns, "wall_ns": time.time_ns()})
            late = np.asarray(self.lateness_ms or [0.0])
            self._event({"event": "done", "episodes": len(self.plan.timings),
                         "late_ms_p50": float(np.percentile(late, 50)), "late_ms_p99": float(np.percentile(late, 99))})
            self.get_logger().info(f"played {len(self.plan.timings)} episode(s); messages went out "
                                   f"{np.percentile(late, 99):.1f} ms late at p99")
        except Exception as e:  # noqa: BLE001 (a playback thread must not die silently)
            self.get_logger().error(f"playback failed: {type(e).__name__}: {e}")
            self._event({"event": "failed", "error": f"{type(e).__name__}: {e}"})
        finally:
            self.done.set()

    def destroy_node(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=2.0)
        return super().destroy_node()


def main(args=None) -> int:
    """ros2 run kairos_ros bag_player --ros-args -p "bags:=[...]"; a missing or unreadable bag, or
    one without the played topics, is a one-line error and exit status 2."""
    import rclpy
    from kairos_ros.core.recorder import RecorderError

    def make():
        node = BagPlayerNode()
        if node.get_parameter("exit_when_done").value:
            def check():
                if node.done.is_set():
                    rclpy.try_shutdown()
            node.create_timer(0.2, check)
        return node
    try:
        spin_until_shutdown(make, args)
    except (ValueError, RecorderError) as e:
        print(f"bag_player: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""recorder: records stage-III data (camera, joint states, commanded trajectories, instruction and
episode events) into rosbag2 (mcap) episodes, one closed segment per second (kairos_ros/core/recorder.py).

Episodes start and end by events:
  ~/label (std_msgs/String)       an operator: "start [task text]", "success", "failure", "stop"
  episode_topic (std_msgs/String) JSON events as the sim robot publishes them ({"event": "start", ...},
                                  {"event": "end", "success": ...}); "" to ignore
Messages are recorded as they arrive on the wire (serialized, no decoding), stamped with the
receive time. On SIGINT/SIGTERM a running episode is closed as "interrupted"; after a crash the
episode keeps every closed segment and reads back as "incomplete".
"""
from __future__ import annotations

import json

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from kairos_ros.node_util import declare_parameters, spin_until_shutdown
from kairos_ros.core.recorder import EpisodeRecorder, RecorderConfig, RecorderError

PARAMETERS = {
    "output_dir": ("data/bags", "where episodes are written"),
    "segment_s": (1.0, "seconds per closed bag segment (the most a crash can lose)"),
    "min_free_mb": (500.0, "stop recording below this much free disk space"),
    "storage": ("mcap", "mcap | sqlite3"),
    "camera_topic": ("camera/image_raw", "sensor_msgs/Image to record"),
    "joint_states_topic": ("joint_states", "sensor_msgs/JointState to record"),
    "trajectory_topic": ("joint_trajectory_controller/joint_trajectory", "commanded trajectories to record"),
    "instruction_topic": ("instruction", "std_msgs/String task text to record"),
    "episode_topic": ("/sim_robot/episode", "JSON episode events (start/end/success) that drive episodes; '' = off"),
}

TYPES = {"camera_topic": (Image, "sensor_msgs/msg/Image", True),
         "joint_states_topic": (JointState, "sensor_msgs/msg/JointState", True),
         "trajectory_topic": (JointTrajectory, "trajectory_msgs/msg/JointTrajectory", False),
         "instruction_topic": (String, "std_msgs/msg/String", False)}


class RecorderNode(Node):
    def __init__(self, name: str = "recorder", **kwargs):
        super().__init__(name, **kwargs)
        declare_parameters(self, PARAMETERS)
        p = lambda k: self.get_parameter(k).value  # noqa: E731
        self.rec = EpisodeRecorder(RecorderConfig(output_dir=p("output_dir"), segment_s=p("segment_s"),
                                                  min_free_mb=p("min_free_mb"), storage=p("storage")),
                                   warn=lambda m: self.get_logger().warning(m))
        self.task = ""
        for key, (cls, msgtype, sensor) in TYPES.items():
            topic = self.resolve_topic_name(p(key))
            self.create_subscription(cls, topic, self._writer(topic, msgtype),
                                     qos_profile_sensor_data if sensor else 10, raw=True)
        self.create_subscription(String, "~/label", self.on_label, 10)
        if p("episode_topic"):
            self.create_subscription(String, p("episode_topic"), self.on_episode_event, 10)
        self.get_logger().info(f"recording episodes into {p('output_dir')} ({p('storage')}, "
                               f"{p('segment_s')} s segments)")

    def _writer(self, topic, msgtype):
        def cb(raw: bytes):
            if topic.endswith("instruction"):
                try:
                    from rclpy.serialization import deserialize_message
                    self.task = deserialize_message(raw, String).data
                except Exception:  # a malformed instruction is still recorded as it came
                    pass
            self.rec.write(topic, msgtype, self.get_clock().now().nanoseconds, raw)
        return cb

    def _start(self, task: str, **meta):
        if self.rec.recording:
            self.rec.end_episode(status="superseded")
        try:
            name = self.rec.start_episode(task=task or self.task, **meta)
            self.get_logger().info(f"recording {name}: {task or self.task!r}")
        except RecorderError as e:
            self.get_logger().error(str(e))

    def _end(self, success, label=""):
        ep = self.rec.end_episode(success=success, label=label)
        if ep:
            self.get_logger().info(f"{ep['name']} ended: success={success}, {len(ep['segments'])} segments, "
                                   f"{ep['messages']} messages")

    def on_label(self, msg: String):
        word, _, rest = msg.data.strip().partition(" ")
        if word == "start":
            self._start(rest.strip())
        elif word in ("success", "failure"):
            self._end(word == "success", label=word)
        elif word == "stop":
            self._end(None, label="stopped by operator")
        else:
            self.get_logger().warning(f"unknown label {msg.data!r}: use start [task] | success | failure | stop")

    def on_episode_event(self, msg: String):
        try:
            e = json.loads(msg.data)
        except json.JSONDecodeError:
            self.get_logger().warning(f"episode event is not JSON: {msg.data[:80]!r}")
            return
        if e.get("event") == "start":
            self._start(e.get("instruction", ""), variation=e.get("variation"), sim_task=e.get("task"))
        elif e.get("event") == "end":
            self._end(bool(e.get("success")), label="sim")

    def destroy_node(self):
        self.rec.close()
        return super().destroy_node()


def main(args=None):
    spin_until_shutdown(RecorderNode, args)


if __name__ == "__main__":
    main()

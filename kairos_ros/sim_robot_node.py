"""sim_robot: a simulated Sawyer arm (Meta-World on MuJoCo) that speaks a real robot driver's topics.

Publishes  camera/image_raw (sensor_msgs/Image, rgb8), joint_states (sensor_msgs/JointState),
           instruction (std_msgs/String, the task text at each episode start, transient local),
           ~/episode (std_msgs/String, JSON events: start / end with success and steps).
Follows    joint_trajectory_controller/joint_trajectory (trajectory_msgs/JointTrajectory) the way a
           joint_trajectory_controller does (interpolated in time, the newest trajectory wins).
Calls      kairos_act/reset_memory (kairos_msgs/ResetMemory) at each episode start, so the act
           node's streaming memory begins with the episode (parameter reset_service; "" to skip).

The physics advances one control step (SimEpisodesConfig.substeps x 12.5 ms) per timer tick on the
node's clock; the behaviour lives in kairos_ros/core/sim_episodes.py.
"""
from __future__ import annotations

import json

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from kairos_ros.node_util import declare_parameters, spin_until_shutdown
from kairos_msgs.srv import ResetMemory
from kairos_ros.core.sim_episodes import SimEpisodes, SimEpisodesConfig

PARAMETERS = {
    "task": ("button-press-topdown-v3", "Meta-World v3 task"),
    "first_variation": (10_000, "scene of the first episode (>= 10000: held out from demonstrations)"),
    "episodes": (0, "episodes to run (0: forever)"),
    "max_steps": (40, "control steps before an episode ends as failed"),
    "image_size": (64, "camera frame side in pixels"),
    "camera": ("corner2", "camera: one of the scene's (corner2, corner3, topview, ...) or workspace "
                          "(kairos_sim.metaworld_sim.FREE_CAMERAS)"),
    "substeps": (8, "physics steps (12.5 ms) per control step"),
    "camera_topic": ("camera/image_raw", "sensor_msgs/Image output"),
    "joint_states_topic": ("joint_states", "sensor_msgs/JointState output"),
    "trajectory_topic": ("joint_trajectory_controller/joint_trajectory", "trajectory_msgs/JointTrajectory input"),
    "instruction_topic": ("instruction", "std_msgs/String output (task text per episode)"),
    "reset_service": ("kairos_act/reset_memory", "ResetMemory service called at each episode start ('' = none)"),
    "wait_for_event_subscribers": (0, "before the first episode, wait until this many subscribers (a recorder, "
                                      "a monitor) match ~/episode, so none misses the first start event"),
}


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class SimRobotNode(Node):
    def __init__(self, name: str = "sim_robot", **kwargs):
        super().__init__(name, **kwargs)
        declare_parameters(self, PARAMETERS)
        p = lambda k: self.get_parameter(k).value  # noqa: E731
        self.core = SimEpisodes(SimEpisodesConfig(task=p("task"), first_variation=p("first_variation"),
                                                  episodes=p("episodes"), max_steps=p("max_steps"),
                                                  image_size=p("image_size"), camera=p("camera"),
                                                  substeps=p("substeps")))
        self.img_pub = self.create_publisher(Image, p("camera_topic"), qos_profile_sensor_data)
        self.js_pub = self.create_publisher(JointState, p("joint_states_topic"), qos_profile_sensor_data)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.instr_pub = self.create_publisher(String, p("instruction_topic"), latched)
        self.event_pub = self.create_publisher(String, "~/episode", 10)
        self.create_subscription(JointTrajectory, p("trajectory_topic"), self.on_trajectory, 10)
        self.reset_cli = self.create_client(ResetMemory, p("reset_service")) if p("reset_service") else None
        self.pending_reset = None
        self.starting = True
        self.timer = self.create_timer(self.core.dt, self.on_timer)
        self.get_logger().info(f"sim robot: {self.core.cfg.task}, {1 / self.core.dt:.0f} Hz, "
                               f"joints {self.core.joint_names}")

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_trajectory(self, msg: JointTrajectory):
        if self.starting or self.core.obs is None:
            return                       # a command from before this episode's reset: ignore it
        try:
            tfs = [pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9 for pt in msg.points]
            pos = np.array([list(pt.positions) for pt in msg.points], np.float64)
            self.core.command(msg.joint_names, tfs, pos, _stamp_s(msg.header.stamp), self.now_s())
        except ValueError as e:
            self.get_logger().error(f"rejected trajectory (holding the previous one): {e}", throttle_duration_sec=5.0)

    def publish_obs(self, obs):
        stamp = self.get_clock().now().to_msg()
        img = Image(height=obs.image.shape[0], width=obs.image.shape[1], encoding="rgb8", is_bigendian=0,
                    step=obs.image.shape[1] * 3, data=obs.image.tobytes())
        img.header.stamp, img.header.frame_id = stamp, "camera"
        self.img_pub.publish(img)
        js = JointState(name=self.core.joint_names, position=[float(x) for x in obs.joints])
        js.header.stamp = stamp
        self.js_pub.publish(js)

    def _event(self, d: dict):
        self.event_pub.publish(String(data=json.dumps(d)))

    def on_timer(self):
        if self.pending_reset is not None and not self.pending_reset.done():
            return                                        # wait for the act node to clear its memory
        if self.starting:
            want = self.get_parameter("wait_for_event_subscribers").value
            if self.core.episode < 0 and self.event_pub.get_subscription_count() < want:
                self.get_logger().info(f"waiting for {want} subscribers of ~/episode", once=True)
                return
            if self.pending_reset is None and self.reset_cli is not None:
                if not self.reset_cli.service_is_ready():
                    self.get_logger().info("waiting for the act node's reset_memory service", once=True)
                    return
                obs = self.core.start()
                self.pending_reset = self.reset_cli.call_async(ResetMemory.Request())
                self._obs0 = obs
                return
            obs = self.core.start() if self.reset_cli is None else self._obs0
            self.pending_reset = None
            self.starting = False
            self.instr_pub.publish(String(data=self.core.instruction))
            self._event({"event": "start", "episode": self.core.episode, "task": self.core.cfg.task,
                         "variation": self.core.cfg.first_variation + self.core.episode,
                         "instruction": self.core.instruction})
            self.publish_obs(obs)
            return
        obs, end = self.core.tick(self.now_s())
        self.publish_obs(obs)
        if end is not None:
            self._event(end)
            self.get_logger().info(f"episode {end['episode']}: {'success' if end['success'] else 'failure'} "
                                   f"after {end['steps']} steps")
            if self.core.finished:
                self.timer.cancel()
                self._event({"event": "done", "results": self.core.results})
            else:
                self.starting = True

    def destroy_node(self):
        self.core.close()
        return super().destroy_node()


def main(args=None):
    spin_until_shutdown(SimRobotNode, args)


if __name__ == "__main__":
    main()

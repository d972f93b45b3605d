"""The main job's graph end to end with real rclpy and DDS, each node in its own process as on a
robot: `sim_robot` (the simulated Sawyer) and `act_node` (configured and activated by `kairos act`)
with the committed artifact on the onnx backend (config/sim_act.yaml); this test listens to the sim's episode events. The arm must move
toward the button (distance falls), nothing crashes, and both processes shut down cleanly.
The recorder node (a third process, sqlite3 storage) records the episode off the live graph, and the
bag converts into a stage-III dataset whose actions are the commands the act node sent."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]
BIN = os.path.dirname(sys.executable)


@pytest.mark.timeout(480)
def test_act_node_drives_the_sim_robot_toward_the_button(ros_context, tmp_path, exported_default):
    import rclpy
    from std_msgs.msg import String
    _, cache = exported_default        # config/sim_act.yaml runs the onnx backend: the export is done already
    env = {**os.environ, "ROS_DOMAIN_ID": str(ros_context.get_domain_id()), "PYTHONUNBUFFERED": "1",
           "KAIROS_EXPORT_CACHE": cache}
    act = subprocess.Popen([os.path.join(BIN, "kairos"), "act", "--config", "config/sim_act.yaml"],
                           stdout=open(tmp_path / "act.log", "w"), stderr=subprocess.STDOUT, env=env)
    rec = subprocess.Popen([os.path.join(BIN, "recorder"), "--ros-args", "--params-file", "config/record.yaml",
                            "-p", f"output_dir:={tmp_path / 'bags'}", "-p", "storage:=sqlite3"],
                           stdout=open(tmp_path / "rec.log", "w"), stderr=subprocess.STDOUT, env=env)
    node = rclpy.create_node("e2e_listener", context=ros_context)
    events = []
    node.create_subscription(String, "/sim_robot/episode", lambda m: events.append(json.loads(m.data)), 10)
    ex = rclpy.executors.SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    t_wait = time.time()               # the recorder must hear the episode's start event: wait for it to subscribe
    while node.count_subscribers("/sim_robot/episode") < 2 and time.time() - t_wait < 60:
        ex.spin_once(timeout_sec=0.1)
        assert rec.poll() is None, (tmp_path / "rec.log").read_text()[-3000:]
    sim = subprocess.Popen([os.path.join(BIN, "sim_robot"), "--ros-args", "--params-file", "config/sim_act.yaml",
                            "-p", "episodes:=1", "-p", "max_steps:=25", "-p", "wait_for_event_subscribers:=2"],
                           stdout=open(tmp_path / "sim.log", "w"), stderr=subprocess.STDOUT, env=env)
    try:
        t0 = time.time()
        while time.time() - t0 < 240 and not any(e["event"] == "end" for e in events):
            ex.spin_once(timeout_sec=0.1)
            assert act.poll() is None, (tmp_path / "act.log").read_text()[-3000:]
            assert sim.poll() is None, (tmp_path / "sim.log").read_text()[-3000:]
        end = [e for e in events if e["event"] == "end"]
        assert end, "no episode ended: " + (tmp_path / "sim.log").read_text()[-2000:]
        e = end[0]
        assert e["min_distance"] < 0.6 * e["start_distance"], e
        time.sleep(1.5)                # the recorder closes the episode on the end event
    finally:
        for p in (act, sim, rec):
            p.send_signal(signal.SIGINT)
        rc = [p.wait(timeout=30) for p in (act, sim, rec)]
        ex.shutdown()
        node.destroy_node()
    logs = (tmp_path / "act.log").read_text() + (tmp_path / "sim.log").read_text() + (tmp_path / "rec.log").read_text()
    assert "Traceback" not in logs, logs[-3000:]
    assert "configured: backend onnx" in logs, logs[-3000:]
    assert rc == [0, 0, 0], (rc, logs[-3000:])
    # the recorded episode becomes stage-III data
    import numpy as np
    from kairos_ros.core.recorder import iter_episodes
    from kairos_sim.metaworld_sim import JOINT_NAMES
    from training.data.bags import bags_to_dataset
    from training.data.lerobot import JointMapping, LeRobotDataset
    eps = list(iter_episodes(str(tmp_path / "bags")))
    assert len(eps) == 1, eps
    assert any(f.endswith(".db3") for _, _, fs in os.walk(eps[0]) for f in fs), "sqlite3 storage was asked for"
    n, left = bags_to_dataset(eps, str(tmp_path / "ds"), JOINT_NAMES)
    assert n == 1, left
    ep = LeRobotDataset(str(tmp_path / "ds"), mapping=JointMapping(JOINT_NAMES)).episode(0)
    T = len(ep.state)
    assert T >= 5 and next(iter(ep.frames.values())).shape == (T, 64, 64, 3)
    assert np.isfinite(ep.action).all() and np.abs(ep.action - ep.state).max() > 1e-3   # commands were recorded
    assert "button" in ep.task


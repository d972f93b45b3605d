"""The recorder node over real DDS, in its own process: operator labels start and end an episode,
camera and joint messages land in the bag, SIGINT exits cleanly."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kairos_ros.core.recorder import read_episode

pytestmark = pytest.mark.ros


@pytest.mark.timeout(180)
@pytest.mark.parametrize("launcher", ["recorder", "kairos record"])
def test_recorder_records_a_labelled_episode(ros_context, tmp_path, launcher):
    """The same node from its console script (with ROS arguments) and from `kairos record` (the params
    file config/record.yaml, --output-dir, further ROS arguments passed through)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    env = {**os.environ, "ROS_DOMAIN_ID": str(ros_context.get_domain_id())}
    bin_dir = os.path.dirname(sys.executable)
    if launcher == "recorder":
        cmd = [os.path.join(bin_dir, "recorder"), "--ros-args", "-p", f"output_dir:={tmp_path}", "-p", "min_free_mb:=0.0"]
    else:
        cmd = [os.path.join(bin_dir, "kairos"), "record", "--output-dir", str(tmp_path),
               "--ros-args", "-p", "min_free_mb:=0.0"]
    proc = subprocess.Popen(cmd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    node = rclpy.create_node("recorder_test", context=ros_context)
    ex = rclpy.executors.SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    label = node.create_publisher(String, "/recorder/label", 10)
    img_pub = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
    js_pub = node.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
    try:
        end = time.monotonic() + 60
        matched = (lambda: label.get_subscription_count() > 0 and img_pub.get_subscription_count() > 0
                   and js_pub.get_subscription_count() > 0)   # every endpoint discovered, not just the first:
        while not matched() and time.monotonic() < end:         # best-effort samples before a match are lost
            ex.spin_once(timeout_sec=0.1)
            assert proc.poll() is None, proc.stdout.read()
        assert matched(), "recorder never subscribed to the label, camera and joint topics"
        time.sleep(0.5)
        label.publish(String(data="start press the button"))
        time.sleep(0.5)
        img = np.full((8, 8, 3), 7, np.uint8)
        for i in range(15):                                 # 1.5 s of data
            img_pub.publish(Image(height=8, width=8, encoding="rgb8", step=24, data=img.tobytes()))
            js_pub.publish(JointState(name=["a"], position=[float(i)]))
            ex.spin_once(timeout_sec=0.1)
        time.sleep(0.5)
        label.publish(String(data="success"))
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        ex.shutdown()
        node.destroy_node()
    out = proc.stdout.read()
    assert rc == 0 and "Traceback" not in out, out[-2000:]
    rec, msgs = read_episode(str(tmp_path / "episode_000000"))
    assert rec["status"] == "complete" and rec["success"] is True and rec["task"] == "press the button"
    topics = {m[0] for m in msgs}
    assert {"/camera/image_raw", "/joint_states"} <= topics
    js = [m[3] for m in msgs if m[0] == "/joint_states"]
    assert len(js) >= 12 and js[0].name == ["a"]
    assert len(rec["segments"]) >= 2                            # 1.5 s of data: closed one-second segments


def test_kairos_record_refuses_a_params_file_with_unknown_names(tmp_path, capsys):
    from training.cli import main
    bad = tmp_path / "record.yaml"
    bad.write_text("recorder:\n  ros__parameters:\n    output_dir: x\n    segment_seconds: 2.0\n")
    assert main(["record", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown parameters ['segment_seconds']" in err and "segment_s" in err


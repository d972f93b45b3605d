"""Stage-III recording: episodes as rosbag2 (mcap) in one-second closed segments; a kill -9 loses at
most the open segment; low disk space stops cleanly."""
import json
import os
import signal
import subprocess
import sys

import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from kairos_ros.core.recorder import EpisodeRecorder, RecorderConfig, RecorderError, read_episode

S = 1_000_000_000


def js(i):
    return serialize_message(JointState(name=["a", "b"], position=[0.1 * i, -0.1 * i]))


def test_episodes_roll_segments_and_read_back(tmp_path):
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(tmp_path), min_free_mb=0))
    rec.start_episode(task="press the button")
    for i in range(25):                                   # 2.5 s of joint states at 10 Hz
        rec.write("/joint_states", "sensor_msgs/msg/JointState", 100 * S + i * S // 10, js(i))
    rec.write("/instruction", "std_msgs/msg/String", 100 * S, serialize_message(String(data="press")))
    ep = rec.end_episode(success=True)
    assert ep["status"] == "complete" and len(ep["segments"]) == 3
    rec2, msgs = read_episode(os.path.join(str(tmp_path), ep["name"]))
    assert rec2["status"] == "complete" and rec2["success"] is True and rec2["lost_segments"] == 0
    joints = [m for m in msgs if m[0] == "/joint_states"]
    assert len(joints) == 25 and joints[7][3].position[0] == pytest.approx(0.7)
    index = json.load(open(tmp_path / "index.json"))
    assert index["episodes"][0]["status"] == "complete" and index["episodes"][0]["task"] == "press the button"
    with pytest.raises(RecorderError, match="still recording"):
        rec.start_episode()
        rec.start_episode()


CRASHER = r"""
import sys, time
from rclpy.serialization import serialize_message
from sensor_msgs.msg import JointState
from kairos_ros.core.recorder import EpisodeRecorder, RecorderConfig
rec = EpisodeRecorder(RecorderConfig(output_dir=sys.argv[1], min_free_mb=0))
rec.start_episode(task="t")
for i in range(35):                                   # 3.5 s of messages
    rec.write("/joint_states", "sensor_msgs/msg/JointState", i * 100_000_000,
              serialize_message(JointState(name=["a"], position=[float(i)])))
print("written", flush=True)
time.sleep(60)
"""


def test_kill_9_loses_at_most_the_open_segment(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", CRASHER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "written"
    p.send_signal(signal.SIGKILL)
    p.wait()
    rec, msgs = read_episode(str(tmp_path / "episode_000000"))
    assert rec["status"] == "incomplete"
    assert rec["lost_segments"] == 1                       # the segment that was open
    assert len(msgs) == 30                                 # 3 closed seconds of 3.5 kept
    assert [m[3].position[0] for m in msgs] == [float(i) for i in range(30)]


def test_low_disk_space_stops_cleanly(tmp_path):
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(tmp_path), min_free_mb=0), warn=lambda m: None)
    rec.start_episode()
    rec.write("/joint_states", "sensor_msgs/msg/JointState", 0, js(0))
    rec.cfg.min_free_mb = 1e12                             # the disk "fills up" during the episode
    rec.write("/joint_states", "sensor_msgs/msg/JointState", 2 * S, js(1))
    assert not rec.recording and rec.low_disk
    index = json.load(open(tmp_path / "index.json"))
    assert index["episodes"][0]["status"] == "stopped_low_disk"
    rec2, msgs = read_episode(str(tmp_path / "episode_000000"))
    assert len(msgs) == 1
    with pytest.raises(RecorderError, match="free"):
        rec.start_episode()

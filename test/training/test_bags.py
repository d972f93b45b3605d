"""Recorded episodes -> LeRobot dataset: resampled to the control rate, joints mapped by name,
actions = the next joint state; bad bags give errors that list what the bag holds."""
import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState

from kairos_ros.core.recorder import EpisodeRecorder, RecorderConfig
from training.data.bags import bags_to_dataset
from training.data.lerobot import DatasetError, JointMapping, LeRobotDataset

S = 1_000_000_000


def record(root, with_camera=True, complete=True):
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(root), min_free_mb=0))
    name = rec.start_episode(task="press the button")
    for i in range(40):                                     # 2 s at 20 Hz, joints in another order
        t = 5 * S + i * S // 20
        if with_camera:
            img = np.full((48, 64, 3), 5 * i, np.uint8)
            rec.write("/camera/image_raw", "sensor_msgs/msg/Image", t,
                      serialize_message(Image(height=48, width=64, encoding="rgb8", step=192, data=img.tobytes())))
        rec.write("/joint_states", "sensor_msgs/msg/JointState", t,
                  serialize_message(JointState(name=["b", "a"], position=[-0.01 * i, 0.01 * i])))
    if complete:
        rec.end_episode(success=True)
    return str(root / name)


def test_bags_become_a_dataset(tmp_path):
    ep = record(tmp_path / "bags")
    n, left = bags_to_dataset([ep], str(tmp_path / "ds"), ["a", "b"], rate_hz=10, image_size=32)
    assert n == 1 and left == []
    e = LeRobotDataset(str(tmp_path / "ds"), mapping=JointMapping(["a", "b"])).episode(0)
    T = len(e.state)
    assert 19 <= T <= 20                                     # 2 s at 10 Hz
    np.testing.assert_allclose(np.diff(e.state[:, 0]), 0.02, atol=1e-5)     # every other 20 Hz sample
    np.testing.assert_allclose(e.state[:, 1], -e.state[:, 0], atol=1e-6)
    np.testing.assert_allclose(e.action[:-1], e.state[1:], atol=1e-6)       # action = next joint state
    assert e.frames["observation.images.cam"].shape == (T, 32, 32, 3) and e.task == "press the button"


def test_incomplete_and_topicless_bags_are_reported(tmp_path):
    good = record(tmp_path / "b1")
    crashed = record(tmp_path / "b2", complete=False)
    n, left = bags_to_dataset([good, crashed], str(tmp_path / "ds"), ["a", "b"])
    assert n == 1 and "incomplete" in left[0]
    no_cam = record(tmp_path / "b3", with_camera=False)
    with pytest.raises(DatasetError, match="holds"):
        bags_to_dataset([no_cam], str(tmp_path / "ds2"), ["a", "b"])
    with pytest.raises(DatasetError, match=r"missing \['c'\]"):
        bags_to_dataset([good], str(tmp_path / "ds3"), ["a", "c"])

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


def test_jittered_arrivals_keep_every_frame_with_its_own_joint_state(tmp_path):
    """Messages at the control rate that arrive a few ms after the ticks (and the joint state 1 ms after
    its frame), as the recorder writes the main job: every frame is used once, with the joint state
    taken at the same moment, so action = next state is one real step everywhere (taking the newest
    message at or before each tick repeated the first frame and lagged the states by one)."""
    from training.data.bags import episode_from_bag
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(tmp_path), min_free_mb=0))
    name = rec.start_episode(task="press the button")
    jitter_ms = [0, 6, 4, 7, 5, 6, 3, 8, 6, 5, 7, 4]
    for i, j in enumerate(jitter_ms):
        t = 5 * S + i * S // 10 + j * 1_000_000
        img = np.full((8, 8, 3), 10 * i, np.uint8)
        rec.write("/camera/image_raw", "sensor_msgs/msg/Image", t,
                  serialize_message(Image(height=8, width=8, encoding="rgb8", step=24, data=img.tobytes())))
        rec.write("/joint_states", "sensor_msgs/msg/JointState", t + 1_000_000,
                  serialize_message(JointState(name=["a", "b"], position=[0.1 * i, -0.1 * i])))
    rec.end_episode(success=True)
    ep = episode_from_bag(str(tmp_path / name), ["a", "b"], rate_hz=10, image_size=8)
    frame_index = ep.frames["observation.images.cam"][:, 0, 0, 0] / 10
    np.testing.assert_array_equal(frame_index, np.arange(len(frame_index)))          # none repeated or skipped
    np.testing.assert_allclose(ep.state[:, 0], 0.1 * frame_index, atol=1e-6)          # each with its own state
    np.testing.assert_allclose(np.diff(ep.state[:, 0]), 0.1, atol=1e-6)               # one real step per tick
    assert len(frame_index) >= len(jitter_ms) - 1


def test_a_late_camera_frame_pairs_with_the_joints_read_when_it_was_taken(tmp_path):
    """Camera frames stamped when taken but received 35 ms later, joint states at 100 Hz: each tick's
    state is the one read at the frame's header stamp, not at its arrival (3-4 joint samples later)."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header
    from training.data.bags import episode_from_bag
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(tmp_path), min_free_mb=0))
    name = rec.start_episode(task="press the button")
    ms = 1_000_000
    events = []
    for k in range(130):                                    # joints: read and received every 10 ms
        t = 5 * S + k * 10 * ms
        events.append((t, "/joint_states", "sensor_msgs/msg/JointState", JointState(
            header=Header(stamp=Time(sec=t // S, nanosec=t % S)), name=["a", "b"], position=[0.01 * k, 0.0])))
    for i in range(12):                                     # camera: taken every 100 ms, received 35 ms later
        t = 5 * S + i * 100 * ms
        img = np.full((8, 8, 3), 10 * i, np.uint8)
        events.append((t + 35 * ms, "/camera/image_raw", "sensor_msgs/msg/Image", Image(
            header=Header(stamp=Time(sec=t // S, nanosec=t % S)), height=8, width=8, encoding="rgb8", step=24,
            data=img.tobytes())))
    for t, topic, typ, msg in sorted(events, key=lambda e: e[0]):
        rec.write(topic, typ, t, serialize_message(msg))
    rec.end_episode(success=True)
    ep = episode_from_bag(str(tmp_path / name), ["a", "b"], rate_hz=10, image_size=8)
    frame_index = ep.frames["observation.images.cam"][:, 0, 0, 0] / 10
    np.testing.assert_array_equal(frame_index, np.arange(len(frame_index)))
    np.testing.assert_allclose(ep.state[:, 0], 0.1 * frame_index, atol=1e-6)


def test_a_commanded_gripper_is_labelled_by_its_command(tmp_path):
    """--command-joints: those joints' labels are the commanded trajectory's first point (the last
    command before the next frame), the others the next joint state; before any command, the next
    state; a name outside the model's joints is an error."""
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from training.data.bags import episode_from_bag
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(tmp_path), min_free_mb=0))
    name = rec.start_episode(task="pick")
    grip = [0.0, 0.015, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04]             # the finger lags its command
    for i, g in enumerate(grip):
        t = 5 * S + i * S // 10
        rec.write("/camera/image_raw", "sensor_msgs/msg/Image", t, serialize_message(
            Image(height=8, width=8, encoding="rgb8", step=24, data=np.full((8, 8, 3), i, np.uint8).tobytes())))
        rec.write("/joint_states", "sensor_msgs/msg/JointState", t,
                  serialize_message(JointState(name=["arm", "grip"], position=[0.1 * i, g])))
        if i >= 1:                                                      # commands answer frames 1, 2, ...
            rec.write("/joint_trajectory_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory",
                      t + 5_000_000, serialize_message(JointTrajectory(joint_names=["grip", "arm"], points=[
                          JointTrajectoryPoint(positions=[0.04, 0.1 * i + 0.5])])))
    rec.end_episode(success=True)
    ep = episode_from_bag(str(tmp_path / name), ["arm", "grip"], rate_hz=10, image_size=8, command_joints=["grip"])
    np.testing.assert_allclose(ep.action[:-1, 0], ep.state[1:, 0], atol=1e-6)        # the arm: next state
    np.testing.assert_allclose(ep.action[0, 1], 0.015, atol=1e-6)                     # no command yet
    np.testing.assert_allclose(ep.action[1:, 1], 0.04, atol=1e-6)                     # the gripper: its command
    plain = episode_from_bag(str(tmp_path / name), ["arm", "grip"], rate_hz=10, image_size=8)
    np.testing.assert_allclose(plain.action[:-1], plain.state[1:], atol=1e-6)
    every = episode_from_bag(str(tmp_path / name), ["arm", "grip"], rate_hz=10, image_size=8, action_source="command")
    np.testing.assert_allclose(every.action[1:-1, 0], 0.1 * np.arange(1, len(grip) - 1) + 0.5, atol=1e-6)
    with pytest.raises(DatasetError, match=r"command joints \['r_close'\]"):
        episode_from_bag(str(tmp_path / name), ["arm", "grip"], rate_hz=10, image_size=8, command_joints=["r_close"])


def test_command_joints_belong_to_a_rosbag_source():
    from training.recipe import load_recipe, recipe_from_dict
    d = {"name": "x", "stages": [{"name": "III", "objective": "video+action", "steps": 1, "sources": [
        {"kind": "rosbag", "path": "data/bags", "actions": True, "command_joints": ["r_close"]}]}]}
    assert recipe_from_dict(d).stages[0].sources[0].command_joints == ["r_close"]
    d["stages"][0]["sources"][0]["kind"] = "lerobot"
    with pytest.raises(ValueError, match="command_joints labels recorded bags"):
        recipe_from_dict(d)
    assert load_recipe("training/recipes/finetune.yaml").stages[0].sources[0].command_joints == []

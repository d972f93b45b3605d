"""LeRobot dataset round trip, and readers that refuse what they cannot read (never skip silently)."""
import json

import numpy as np
import pytest

from training.data.lerobot import DatasetError, Episode, JointMapping, LeRobotDataset, LeRobotWriter

NAMES = ["a", "b", "c"]


def make(root, episodes=2, T=9):
    rng = np.random.default_rng(0)
    eps = []
    with LeRobotWriter(str(root), fps=10, state_names=NAMES, action_names=NAMES) as w:
        for i in range(episodes):
            frames = np.zeros((T, 64, 64, 3), np.uint8)
            frames[:] = (np.arange(T) * 25)[:, None, None, None]          # brightness encodes the frame index
            frames[:, :, :32, 0] = 200
            ep = Episode({"observation.images.cam": frames}, rng.normal(size=(T, 3)).astype(np.float32),
                         rng.normal(size=(T, 3)).astype(np.float32), f"task {i % 2}", success=True)
            w.add(ep)
            eps.append(ep)
    return eps


def test_round_trip_with_reordering_mapping(tmp_path):
    eps = make(tmp_path / "ds")
    ds = LeRobotDataset(str(tmp_path / "ds"), mapping=JointMapping(["c", "a", "b"]))
    assert len(ds) == 2 and ds.fps == 10
    got = ds.episode(1)
    np.testing.assert_array_equal(got.state, eps[1].state[:, [2, 0, 1]])
    np.testing.assert_array_equal(got.action, eps[1].action[:, [2, 0, 1]])
    assert got.task == "task 1"
    err = np.abs(got.frames["observation.images.cam"].astype(int) - eps[1].frames["observation.images.cam"]).mean()
    assert err < 2.0                                           # near-lossless video
    info = json.load(open(tmp_path / "ds" / "meta" / "info.json"))
    assert info["codebase_version"] == "v2.1" and info["total_frames"] == 18
    assert info["features"]["observation.state"]["names"] == NAMES


def test_mismatched_joint_names_are_an_error(tmp_path):
    make(tmp_path / "ds")
    with pytest.raises(DatasetError, match=r"missing \['d'\]"):
        LeRobotDataset(str(tmp_path / "ds"), mapping=JointMapping(["a", "b", "d"]))
    with pytest.raises(DatasetError, match=r"unexpected \['c'\]"):
        LeRobotDataset(str(tmp_path / "ds"), mapping=JointMapping(["a", "b"]))
    ds = LeRobotDataset(str(tmp_path / "ds"), mapping=JointMapping(["a", "b"], ignore=["c"]))
    assert ds.episode(0).state.shape == (9, 2)


def test_truncated_video_is_an_error(tmp_path):
    make(tmp_path / "ds")
    v = tmp_path / "ds" / "videos" / "chunk-000" / "observation.images.cam" / "episode_000001.mp4"
    data = v.read_bytes()
    v.write_bytes(data[: len(data) // 3])
    ds = LeRobotDataset(str(tmp_path / "ds"))
    ds.episode(0)
    with pytest.raises(DatasetError, match="truncated|decoded"):
        ds.episode(1)


def test_missing_columns_are_an_error(tmp_path):
    import pyarrow.parquet as pq
    make(tmp_path / "ds")
    p = tmp_path / "ds" / "data" / "chunk-000" / "episode_000000.parquet"
    pq.write_table(pq.read_table(p).drop(["action"]), p)
    with pytest.raises(DatasetError, match=r"lacks columns \['action'\]"):
        LeRobotDataset(str(tmp_path / "ds")).episode(0)


def test_unfinished_dataset_is_recognised(tmp_path):
    w = LeRobotWriter(str(tmp_path / "ds"), fps=10, state_names=NAMES, action_names=NAMES)
    T = 5
    w.add(Episode({"observation.images.cam": np.zeros((T, 64, 64, 3), np.uint8)}, np.zeros((T, 3), np.float32),
                  np.zeros((T, 3), np.float32), "t"))
    with pytest.raises(DatasetError, match="info.json is missing"):
        LeRobotDataset(str(tmp_path / "ds"))
    with pytest.raises(FileExistsError):
        w.close()
        LeRobotWriter(str(tmp_path / "ds"), fps=10, state_names=NAMES, action_names=NAMES)


def test_video_folder_source_reads_captions_and_refuses_a_truncated_file(tmp_path):
    from training.data.lerobot import write_video
    from training.data.sources import VideoFolderSource
    frames = np.zeros((12, 48, 48, 3), np.uint8)
    frames[:, :, :, 1] = np.arange(12)[:, None, None] * 20
    write_video(str(tmp_path / "v" / "a.mp4"), frames, fps=10)
    (tmp_path / "v" / "a.txt").write_text("a green fade")
    src = VideoFolderSource(str(tmp_path / "v"), size=64, proprio_dim=8)
    b = src.sample(np.random.default_rng(0), batch=2, frames=5)
    assert b.frames.shape == (2, 5, 3, 64, 64) and b.texts == ["a green fade"] * 2 and b.actions is None
    data = (tmp_path / "v" / "a.mp4").read_bytes()
    (tmp_path / "v" / "b.mp4").write_bytes(data[: len(data) // 4])
    with pytest.raises(DatasetError):
        VideoFolderSource(str(tmp_path / "v"), size=64, proprio_dim=8)


def test_environment_state_round_trip_and_its_checks(tmp_path):
    """observation.environment_state (privileged simulator state) is written and read back where a
    source has it; a dataset that promises it refuses an episode without it, and one that lacks it
    reads as env_state None."""
    T, names = 5, ["obj_x", "goal_x"]
    env = np.arange(T * 2, dtype=np.float32).reshape(T, 2)
    ep = Episode({"observation.images.cam": np.zeros((T, 64, 64, 3), np.uint8)}, np.zeros((T, 3), np.float32),
                 np.zeros((T, 3), np.float32), "t", env_state=env)
    with LeRobotWriter(str(tmp_path / "ds"), fps=10, state_names=NAMES, action_names=NAMES,
                       env_state_names=names) as w:
        w.add(ep)
        with pytest.raises(ValueError, match="env_state must be"):
            w.add(Episode(ep.frames, ep.state, ep.action, "t"))
    ds = LeRobotDataset(str(tmp_path / "ds"))
    assert ds.env_state_names == names
    np.testing.assert_array_equal(ds.episode(0).env_state, env)
    make(tmp_path / "plain")
    assert LeRobotDataset(str(tmp_path / "plain")).episode(0).env_state is None

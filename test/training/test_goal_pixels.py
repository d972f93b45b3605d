"""The keypoint net's frame loader (training/experiments/goal_pixels.py): which frames of each episode
it keeps, since that decides what the net is trained on."""
import numpy as np

from training.data.lerobot import Episode, LeRobotWriter
from training.experiments.goal_pixels import load_frames

JOINTS = ["right_j0", "right_j1", "right_j2", "right_j3", "right_j4", "right_j5", "right_j6", "r_close"]
ENV = ["obj_x", "obj_y", "obj_z", "goal_x", "goal_y", "goal_z"]


def write_counting_episodes(root, n, T=10):
    """n reach-v3 episodes whose env_state row t is all t, so a kept frame tells which step it was."""
    with LeRobotWriter(str(root), fps=10, state_names=JOINTS, action_names=JOINTS, image_shape=(16, 16, 3),
                       env_state_names=ENV) as w:
        for _ in range(n):
            env = np.repeat(np.arange(T, dtype=np.float32)[:, None], len(ENV), 1)
            z = np.zeros((T, 8), np.float32)
            w.add(Episode({"observation.images.cam": np.zeros((T, 16, 16, 3), np.uint8)}, z, z, "reach-v3",
                          env_state=env))


def test_frames_are_thinned_evenly_after_the_first_is_left_out(tmp_path):
    write_counting_episodes(tmp_path / "d", 2)
    frames, tasks, env = load_frames([str(tmp_path / "d")], max_per_episode=3, skip_first=True)
    assert frames.shape == (6, 16, 16, 3) and tasks == ["reach-v3"] * 6
    assert env[:, 0].tolist() == [1, 5, 9, 1, 5, 9]          # never step 0, which skip_first leaves out
    _, _, env = load_frames([str(tmp_path / "d")])
    assert env[:, 0].tolist() == list(range(10)) * 2
    _, _, env = load_frames([str(tmp_path / "d")], skip_first=True)
    assert env[:, 0].tolist() == list(range(1, 10)) * 2


def test_the_fingerprint_tells_other_data_from_other_arithmetic(tmp_path):
    from kairos_model.checkpoint import sha256_file
    from training.experiments.goal_pixels import fingerprint
    write_counting_episodes(tmp_path / "d", 2)
    frames, tasks, env = load_frames([str(tmp_path / "d")])
    (tmp_path / "w").write_bytes(b"weights")
    a = fingerprint(frames, tasks, env, str(tmp_path / "w"))
    assert a == fingerprint(frames.copy(), list(tasks), env.copy(), str(tmp_path / "w"))
    env2 = env.copy()
    env2[3, 4] += 1e-6                                      # one label moved a micrometre
    assert fingerprint(frames, tasks, env2, str(tmp_path / "w"))["data_sha256"] != a["data_sha256"]
    assert a["weights_sha256"] == sha256_file(str(tmp_path / "w")) and a["torch_threads"] >= 1

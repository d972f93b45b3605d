"""The behaviour-cloning baseline: conditioned on the instruction when the data has several tasks,
per-task demonstration budgets, and a clear error for an instruction it never saw."""
import json

import numpy as np
import pytest

from kairos_model.engine import Observation
from training.baselines.bc import BCEngine, train_bc
from training.data.lerobot import Episode, LeRobotWriter

NAMES = ["a", "b"]


def _dataset(root, per_task=4, T=10):
    """Two tasks with the same images and joint states; only the instruction tells the actions apart
    (task 'up': actions near +1, task 'down': near -1)."""
    rng = np.random.default_rng(0)
    with LeRobotWriter(str(root), fps=10, state_names=NAMES, action_names=NAMES) as w:
        for i in range(per_task):
            for task, sign in (("up", 1.0), ("down", -1.0)):
                frames = rng.integers(0, 255, (T, 64, 64, 3), dtype=np.uint8)
                state = rng.normal(0, 0.1, (T, 2)).astype(np.float32)
                action = (sign + rng.normal(0, 0.05, (T, 2))).astype(np.float32)
                w.add(Episode({"observation.images.cam": frames}, state, action, task, success=True))


def test_bc_is_conditioned_on_the_instruction(tmp_path):
    _dataset(tmp_path / "ds")
    doc = train_bc(str(tmp_path / "ds"), str(tmp_path / "bc"), minutes=0.25, joint_names=NAMES, batch=32,
                   max_episodes=3)
    assert doc["episodes"] == 6                                   # 3 per task, not the first 3 overall
    assert doc["config"]["instructions"] == ["down", "up"]
    eng = BCEngine(str(tmp_path / "bc"))
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    up = eng.step(Observation(img, np.zeros(2), "up")).actions
    down = eng.step(Observation(img, np.zeros(2), "down")).actions
    assert up.shape == (8, 2)
    assert up.mean() > 0.5 and down.mean() < -0.5                 # the same frame, opposite actions by task
    with pytest.raises(ValueError, match="not trained on the instruction"):
        eng.step(Observation(img, np.zeros(2), "sideways"))


def test_single_task_bc_has_no_task_input(tmp_path):
    root = tmp_path / "ds"
    with LeRobotWriter(str(root), fps=10, state_names=NAMES, action_names=NAMES) as w:
        for _ in range(2):
            w.add(Episode({"observation.images.cam": np.zeros((6, 64, 64, 3), np.uint8)},
                          np.zeros((6, 2), np.float32), np.ones((6, 2), np.float32), "only", success=True))
    train_bc(str(root), str(tmp_path / "bc"), minutes=0.02, joint_names=NAMES, shift=0)   # augmentation off
    cfg = json.load(open(tmp_path / "bc" / "config.json"))["config"]
    eng = BCEngine(str(tmp_path / "bc"))
    assert cfg["instructions"] == ["only"] and eng.policy.cfg.n_tasks == 0
    # any instruction runs an unconditioned policy (a single-task baseline does not read the text)
    assert eng.step(Observation(np.zeros((64, 64, 3), np.uint8), np.zeros(2), "anything")).actions.shape == (8, 2)


def test_spatial_softmax_head_returns_where_each_channel_peaks():
    """The keypoint head: per channel, the expected position under a softmax over the map; a sharp peak
    gives that peak's coordinates (x right, y down, in [-1, 1])."""
    import torch
    from training.baselines.bc import BCConfig, BCPolicy, SpatialSoftmax
    f = torch.zeros(1, 2, 8, 8)
    f[0, 0, 2, 5] = 60.0
    f[0, 1, 7, 0] = 60.0
    kp = SpatialSoftmax()(f)[0]                                    # [x0, x1, y0, y1]
    grid = torch.linspace(-1, 1, 8)
    assert torch.allclose(kp, torch.stack([grid[5], grid[0], grid[2], grid[7]]), atol=1e-4)
    pol = BCPolicy(BCConfig(head="spatial_softmax", channels=[8, 16, 16], proprio_dim=2, action_dim=2))
    out = pol(torch.rand(3, 3, 64, 64), torch.zeros(3, 2))
    assert out.shape == (3, 8, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="avgpool"):
        BCPolicy(BCConfig(head="flatten"))


def test_bc_acts_at_its_demonstrations_rate(tmp_path):
    """The dataset's fps (kairos collect --control-hz) is the policy's control rate, and evaluate() runs the
    simulator at it: an episode that never succeeds lasts 4 s, 160 steps of 25 ms at 40 Hz."""
    from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig
    from training.evaluate import evaluate
    with MetaWorldSim(SimConfig(task="reach-v3")) as sim:      # demonstrations of holding still
        q = np.tile(sim.reset(10_000).joints.astype(np.float32), (6, 1))
    root = tmp_path / "ds"
    with LeRobotWriter(str(root), fps=40, state_names=JOINT_NAMES, action_names=JOINT_NAMES) as w:
        w.add(Episode({"observation.images.cam": np.zeros((6, 64, 64, 3), np.uint8)}, q, q, "hold", success=True))
    train_bc(str(root), str(tmp_path / "bc"), minutes=0.02, joint_names=JOINT_NAMES)
    assert BCEngine(str(tmp_path / "bc")).cfg.control_hz == 40
    per_task, lat, frames, _ = evaluate(str(tmp_path / "bc"), ["reach-v3"], 1, progress=False)
    assert per_task["reach-v3"][0]["steps"] == 160 and not per_task["reach-v3"][0]["success"]
    assert len(frames["reach-v3"]) == 161


def test_relative_bc_predicts_offsets_from_the_current_joints(tmp_path):
    """--relative: the chunk is learned as offsets from the joint state, so a policy whose demonstrations
    always move +0.3 rad from wherever the arm is keeps doing so from a joint state it never saw."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    with LeRobotWriter(str(root), fps=10, state_names=NAMES, action_names=NAMES) as w:
        for _ in range(6):
            state = rng.uniform(-1, 1, (10, 2)).astype(np.float32)
            w.add(Episode({"observation.images.cam": np.zeros((10, 64, 64, 3), np.uint8)}, state, state + 0.3,
                          "move", success=True))
    doc = train_bc(str(root), str(tmp_path / "bc"), minutes=0.1, joint_names=NAMES, relative=True)
    assert doc["config"]["relative"] and doc["normalization"]["actions"]["relative_to"] == "joint state"
    eng = BCEngine(str(tmp_path / "bc"))
    q = np.array([1.5, -1.5])                                      # outside the demonstrated states
    a = eng.step(Observation(np.zeros((64, 64, 3), np.uint8), q, "move")).actions
    assert a.shape == (8, 2)
    np.testing.assert_allclose(a[0], q + 0.3, atol=0.15)


def test_bc_at_a_larger_input_side_is_evaluated_on_frames_rendered_at_that_side(tmp_path):
    """--image-size: the policy sees frames of that side, and evaluate() renders the simulator at the
    policy's side (not at 64 px resized up, which would add no detail)."""
    from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig
    from training.evaluate import evaluate
    with MetaWorldSim(SimConfig(task="reach-v3", image_size=96)) as sim:
        obs = sim.reset(0)
        q = np.tile(obs.joints.astype(np.float32), (6, 1))
        frames = np.stack([obs.image] * 6)
    assert frames.shape[1:] == (96, 96, 3)
    root = tmp_path / "ds"
    with LeRobotWriter(str(root), fps=10, state_names=JOINT_NAMES, action_names=JOINT_NAMES) as w:
        w.add(Episode({"observation.images.cam": frames}, q, q, "hold", success=True))
    doc = train_bc(str(root), str(tmp_path / "bc"), minutes=0.02, joint_names=JOINT_NAMES, image_size=96)
    assert doc["config"]["image_size"] == 96 and BCEngine(str(tmp_path / "bc")).image_size == (96, 96)
    _, _, seen, _ = evaluate(str(tmp_path / "bc"), ["reach-v3"], 1, max_steps=3, progress=False)
    assert all(f.shape == (96, 96, 3) for f in seen["reach-v3"]) and len(seen["reach-v3"]) == 4


def test_bc_artifact_names_the_camera_its_demonstrations_were_collected_with(tmp_path):
    """`kairos evaluate` renders the camera the artifact records (as for world models): a BC policy
    trained on `workspace` demonstrations is not evaluated from the default camera by mistake; data
    that names no camera leaves it to the default."""
    from training.evaluate import resolve_camera
    for cam in ("workspace", None):
        root = tmp_path / f"ds_{cam}"
        with LeRobotWriter(str(root), fps=10, state_names=NAMES, action_names=NAMES,
                           kairos_info={"camera": cam} if cam else None) as w:
            w.add(Episode({"observation.images.cam": np.zeros((4, 64, 64, 3), np.uint8)},
                          np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32), "hold", success=True))
        doc = train_bc(str(root), str(tmp_path / f"bc_{cam}"), minutes=0.005, joint_names=NAMES)
        assert doc["meta"] == ({"camera": cam} if cam else {})
        assert resolve_camera(str(tmp_path / f"bc_{cam}")) == (cam or "corner2")


def _dot_dataset(root, episodes=8, T=8, env=True):
    """One task; a bright 10x10 square at a random place per episode, its (x, y) recorded as the
    privileged environment state."""
    rng = np.random.default_rng(0)
    with LeRobotWriter(str(root), fps=10, state_names=NAMES, action_names=NAMES,
                       env_state_names=["x", "y"] if env else None) as w:
        for _ in range(episodes):
            x, y = rng.integers(0, 54, 2)
            frames = np.zeros((T, 64, 64, 3), np.uint8)
            frames[:, y:y + 10, x:x + 10] = 255
            pos = np.tile(np.array([x, y], np.float32) / 64, (T, 1))
            w.add(Episode({"observation.images.cam": frames}, np.zeros((T, 2), np.float32),
                          np.tile(pos, (1, 1)), "find the square", success=True,
                          env_state=pos if env else None))


def test_bc_auxiliary_head_learns_the_privileged_state_and_is_not_an_input(tmp_path):
    _dot_dataset(tmp_path / "ds")
    doc = train_bc(str(tmp_path / "ds"), str(tmp_path / "bc"), minutes=0.25, joint_names=NAMES, shift=0,
                   aux_weight=1.0)
    assert doc["config"]["aux_dim"] == 2 and doc["aux_weight"] == 1.0
    assert doc["aux_normalization"]["names"] == ["x", "y"] and len(doc["aux_normalization"]["std"]) == 2
    assert doc["final_aux_loss"] < 0.5          # normalised targets: 1.0 is predicting their mean
    eng = BCEngine(str(tmp_path / "bc"))        # acts from the frame and joints only, as without the head
    img = np.zeros((64, 64, 3), np.uint8)
    assert eng.step(Observation(img, np.zeros(2), "find the square")).actions.shape == (8, 2)


def test_bc_auxiliary_head_without_the_state_in_the_data_is_a_clear_error(tmp_path):
    _dot_dataset(tmp_path / "ds", env=False)
    with pytest.raises(ValueError, match="observation.environment_state"):
        train_bc(str(tmp_path / "ds"), str(tmp_path / "bc"), minutes=0.05, joint_names=NAMES, aux_weight=1.0)


def test_bc_auxiliary_data_feeds_only_the_auxiliary_loss(tmp_path):
    _dot_dataset(tmp_path / "ds")
    _dot_dataset(tmp_path / "scenes", episodes=12, T=2)
    with pytest.raises(ValueError, match="--aux-weight > 0"):
        train_bc(str(tmp_path / "ds"), str(tmp_path / "bc0"), minutes=0.01, joint_names=NAMES,
                 aux_data=str(tmp_path / "scenes"))
    doc = train_bc(str(tmp_path / "ds"), str(tmp_path / "bc"), minutes=0.15, joint_names=NAMES, shift=0,
                   aux_weight=1.0, aux_data=str(tmp_path / "scenes"))
    assert doc["episodes"] == 8 and doc["aux_data"] == [str(tmp_path / "scenes")]   # actions: the demonstrations only
    assert np.isfinite(doc["final_aux_loss"])

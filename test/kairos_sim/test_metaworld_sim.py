"""The simulated robot: joint-space replay of the scripted expert reproduces its success, scenes vary
with the variation seed, and bad commands are refused."""
import os
import subprocess
import sys

import numpy as np
import pytest

from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig, rollout_expert


@pytest.fixture(scope="module")
def sim():
    s = MetaWorldSim(SimConfig(task="button-press-topdown-v3"))
    yield s
    s.close()


def test_expert_in_joint_space_succeeds_and_replays(sim):
    frames, joints, actions, ok = rollout_expert(sim, variation=3)
    assert ok
    T = len(actions)
    assert frames.shape == (T, 64, 64, 3) and frames.dtype == np.uint8
    assert joints.shape == actions.shape == (T, len(JOINT_NAMES))
    np.testing.assert_allclose(actions[:-1, :7], joints[1:, :7], atol=1e-9)   # action = next joint positions
    sim.reset(3)
    for a in actions:
        sim.step(a, render=False)
    assert sim.success, "replaying the recorded joint targets must reproduce the expert's success"


def test_expert_through_the_joint_interface_leaves_no_trace_and_replays_exactly():
    """control='joint': the expert looks one control step ahead (and puts the scene back exactly), then
    the arm follows that target as it follows a model's, so replaying the actions gives the same joints."""
    with MetaWorldSim(SimConfig(task="push-v3", image_size=32)) as s:
        s.reset(10001)
        pol = s.expert_policy()
        for _ in range(3):
            s.expert_joint_step(pol)
        before = s.save_state()
        s.expert_target(pol)
        after = s.save_state()
        np.testing.assert_array_equal(before[0], after[0])          # physics, solver warm start included
        assert before[1] == after[1] and before[-2:] == after[-2:]      # env step count; success, steps
        np.testing.assert_array_equal(before[2], after[2])                # the env's frame-stacked obs
        np.testing.assert_array_equal(before[5], after[5])                # the observation the expert reads
        frames, joints, actions, ok = rollout_expert(s, 10001, control="joint")
        s.reset(10001)
        replayed = []
        for a in actions:
            replayed.append(s.joints())
            s.step(a, render=False)
        np.testing.assert_array_equal(np.stack(replayed), joints)
        assert s.success == ok
        with pytest.raises(ValueError, match="expert control"):
            rollout_expert(s, 0, control="mocap")


def test_scenes_vary_with_the_variation_and_repeat_with_it(sim):
    a = sim.reset(1).image
    b = sim.reset(2).image
    c = sim.reset(1).image
    assert np.array_equal(a, c)
    assert not np.array_equal(a, b)


def test_holding_still_does_not_succeed(sim):
    obs = sim.reset(5)
    for _ in range(10):
        obs = sim.step(obs.joints)
    assert not obs.success
    assert np.linalg.norm(obs.hand - sim.forward_hand(obs.joints)) < 1e-6


def test_bad_targets_are_refused(sim):
    sim.reset(0)
    with pytest.raises(ValueError, match="finite"):
        sim.step(np.full(8, np.nan))
    with pytest.raises(ValueError):
        sim.step(np.zeros(7))


def test_a_process_that_rendered_can_still_load_triton():
    """Mesa's llvmpipe and Triton both carry LLVM: importing triton after a MuJoCo render segfaulted
    (an xdist worker crashed building AdamW after a sim test). kairos_sim loads Triton first."""
    code = ("from kairos_sim.metaworld_sim import MetaWorldSim, SimConfig\n"
            "sim = MetaWorldSim(SimConfig()); assert sim.reset(0).image.shape == (64, 64, 3)\n"
            "import torch; torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())\n"
            "import triton; print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), (r.returncode, r.stderr[-2000:])


def test_control_rate_is_a_whole_number_of_physics_steps():
    from kairos_sim.metaworld_sim import substeps_for
    assert (SimConfig.at_rate(10).substeps, SimConfig.at_rate(10).max_steps) == (8, 40)   # the default sim
    assert SimConfig() == SimConfig.at_rate(10)
    assert (SimConfig.at_rate(40).substeps, SimConfig.at_rate(40).max_steps) == (2, 160)  # still 4 s
    assert SimConfig.at_rate(40).control_dt == pytest.approx(0.025)
    for bad in (30, 0, -10):
        with pytest.raises(ValueError, match="whole number"):
            substeps_for(bad)


def test_expert_at_40_hz_takes_four_times_the_steps_and_replays():
    """The same scene at 40 Hz: the expert's joint targets every 25 ms, about 4x as many steps as at 10 Hz
    (episodes end 0.2 s after success at either rate), and replaying them still succeeds."""
    with MetaWorldSim(SimConfig.at_rate(10, task="button-press-topdown-v3")) as s10, \
            MetaWorldSim(SimConfig.at_rate(40, task="button-press-topdown-v3")) as s40:
        _, _, a10, ok10 = rollout_expert(s10, variation=3)
        _, _, a40, ok40 = rollout_expert(s40, variation=3)
        assert ok10 and ok40
        assert 3 * len(a10) <= len(a40) <= 5 * len(a10)
        s40.reset(3)
        for a in a40:
            s40.step(a, render=False)
        assert s40.success


def test_collect_records_the_privileged_object_and_goal_positions(tmp_path):
    """kairos collect writes observation.environment_state [T, 6]: the object's and the goal's
    positions. push-v3: the goal stays put for the episode, the puck is moved by the expert."""
    from training.collect import collect
    from training.data.lerobot import LeRobotDataset
    from kairos_sim.metaworld_sim import ENV_STATE_NAMES
    collect(["push-v3"], 1, str(tmp_path / "ds"), first_variation=5, progress=False)
    ds = LeRobotDataset(str(tmp_path / "ds"))
    ep = ds.episode(0)
    assert ds.env_state_names == ENV_STATE_NAMES and ep.env_state.shape == (len(ep.state), 6)
    with MetaWorldSim(SimConfig(task="push-v3")) as s:
        s.reset(5)
        np.testing.assert_allclose(ep.env_state[0], s.env_state(), atol=1e-5)
        np.testing.assert_allclose(ep.env_state[:, 3:], np.tile(s.env._target_pos, (len(ep.state), 1)), atol=1e-5)
    assert np.abs(ep.env_state[-1, :3] - ep.env_state[0, :3]).max() > 0.02     # the puck was pushed


def test_workspace_camera_shows_the_goal_larger_and_unknown_cameras_are_refused():
    """The project's `workspace` camera frames the table's working area: a task's goal marker covers
    several times the pixels it covers from Meta-World's default `corner2` (about one at 64 px)."""
    from training.experiments.camera_footprint import goal_pixels
    far, near = goal_pixels("reach-v3", "corner2", scenes=3), goal_pixels("reach-v3", "workspace", scenes=3)
    assert near >= 3 * max(far, 1.0), (far, near)
    with pytest.raises(ValueError, match="unknown camera 'nope'"):
        MetaWorldSim(SimConfig(task="reach-v3", camera="nope"))


def test_the_first_frame_shows_the_goal_where_the_task_puts_it():
    """Meta-World moves the goal marker after its reset's last forward pass; the wrapper's reset runs
    one more, so the marker drawn in the first frame is at the task's target (it was drawn at a stale
    place until the first physics step), and the frame is the one rendered after a step that holds
    still would show for the marker."""
    with MetaWorldSim(SimConfig(task="push-v3", camera="workspace")) as s:
        g = [i for i in range(s.model.nsite) if s.model.site(i).name == "goal"][0]
        for v in (10000, 10001, 10002):
            first = s.reset(v).image
            np.testing.assert_allclose(s.data.site_xpos[g], s.env._target_pos, atol=1e-6)
            np.testing.assert_allclose(s.env_state()[3:], s.env._target_pos, atol=1e-6)
            # the goal's pixels in the first frame are where they are after one step holding still
            after = s.step(s.joints()).image
            green = lambda im: (im[..., 1].astype(int) - im[..., 0] > 80) & (im[..., 1] > 120)
            assert green(first).sum() > 0 and (green(first) == green(after)).mean() > 0.99
    with MetaWorldSim(SimConfig(task="window-close-v3")) as s:      # an object moved by reset_model
        s.reset(10001)
        curr = s.env._get_curr_obs_combined_no_goal()
        np.testing.assert_allclose(s._obs_vec[:len(curr)], curr)            # the recorded state is current
        np.testing.assert_allclose(s.env_state()[:3], curr[4:7])


@pytest.mark.parametrize("camera", ["workspace", "corner3"])
def test_the_camera_model_projects_the_goal_onto_the_pixels_that_draw_it(camera):
    """CameraModel (kairos_sim.camera) is the camera the frame was drawn with: the goal's projected
    pixel is the centroid of the pixels its marker changes (rendered shown and hidden), for this
    project's free camera and for one of Meta-World's (mounted upside down, flipped back); a pixel's
    ray cut at the point's height gives the point back; the model survives to_dict/from_dict."""
    from kairos_sim.camera import CameraModel
    with MetaWorldSim(SimConfig(task="reach-v3", camera=camera)) as s:
        g = [i for i in range(s.model.nsite) if s.model.site(i).name == "goal"][0]
        for v in (10000, 10001, 10002):
            s.reset(v)
            goal = s.env_state()[3:]
            shown = s.render().astype(int)
            rgba = s.model.site_rgba[g].copy()
            s.model.site_rgba[g, 3] = 0
            hidden = s.render().astype(int)
            s.model.site_rgba[g] = rgba
            rows, cols = np.nonzero(np.abs(shown - hidden).sum(-1) > 20)
            assert len(rows) >= 2
            px = s.project(goal[None])[0]
            assert np.hypot(cols.mean() + 0.5 - px[0], rows.mean() + 0.5 - px[1]) < 0.6, (px, cols, rows)
            cam = CameraModel.from_dict(s.camera_model().to_dict())
            np.testing.assert_allclose(cam.lift(px[None], [goal[2]])[0], goal, atol=1e-9)


def test_expert_interface_forms_agree_with_the_collector():
    """training.experiments.expert_interface: its 'joint' form is the collector's joint-control expert,
    and the expert's own per-physics-step joints as waypoints reproduce the native expert's success."""
    from training.experiments.expert_interface import run_episode
    with MetaWorldSim(SimConfig(task="push-v3", image_size=32)) as s:
        v = 10000
        *_, ok_joint = rollout_expert(s, v, control="joint")
        assert run_episode(s, v, "joint") == ok_joint
        assert run_episode(s, v, "native") and run_episode(s, v, "waypoints")
        with pytest.raises(ValueError, match="form"):
            run_episode(s, v, "teleport")


def test_commanded_targets_keep_the_push_that_reached_joints_lose():
    """SimConfig.targets='commanded': inverse kinematics puts the hand where asked, the set-point stops at
    the target's hand position, and the native expert's set-points replayed open loop solve a push scene
    (10002) whose reached joints, replayed the same way, do not."""
    from training.experiments.expert_interface import replay
    with MetaWorldSim(SimConfig(task="push-v3", image_size=32, targets="commanded")) as s:
        s.reset(10002)
        goal = s.hand() + np.array([0.03, -0.02, 0.04])
        q = s.inverse_hand(goal)
        np.testing.assert_allclose(s.forward_hand(q), goal, atol=1e-4)
        s.step(q, render=False)                                     # nothing in the way: the set-point gets there
        np.testing.assert_allclose(s.setpoint(), goal, atol=1e-3)
        assert replay(s, 10002, "commanded") and not replay(s, 10002, "reached")
        assert s.cfg.targets == "commanded"                          # replay() put the sim's setting back
    with pytest.raises(ValueError, match="targets"):
        MetaWorldSim(SimConfig(task="push-v3", targets="torque"))

"""kairos evaluate: closed-loop episodes in the simulator with the committed artifact, and its report
(per-task table, GIF, real vs imagined strip); the expert through the same control loop."""
import json

import numpy as np
import pytest
from PIL import Image

from training.evaluate import main


def test_evaluate_writes_report_with_imagined_frames(tmp_path):
    out = tmp_path / "rep"
    assert main(["--artifact", "artifacts/tiny_button_press", "--episodes", "1", "--max-steps", "6",
                 "--sampler-steps", "1", "--report", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert [r["task"] for r in rep["tasks"]] == ["button-press-topdown-v3"]
    assert rep["tasks"][0]["episodes"] == 1 and 1 <= rep["tasks"][0]["mean_steps"] <= 6
    assert rep["latency_first_tick_ms"] > 0 and 0 < rep["latency_p50_ms"] <= rep["latency_p99_ms"]  # start-up apart
    html = (out / "report.html").read_text()
    assert "button-press-topdown-v3.gif" in html and "imagined.png" in html
    gif = Image.open(out / "button-press-topdown-v3.gif")
    assert gif.n_frames >= 2
    strip = Image.open(out / "imagined.png")
    assert strip.size[0] > 100 and strip.size[1] > 100


def test_evaluate_takes_guidance_and_refuses_a_keypoint_hold_without_a_keypoint_net(tmp_path):
    out = tmp_path / "rep"
    assert main(["--artifact", "artifacts/tiny_button_press", "--episodes", "1", "--max-steps", "3",
                 "--sampler-steps", "1", "--cfg-scale", "2", "--report", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["args"]["cfg_scale"] == 2.0
    with pytest.raises(ValueError, match="keypoint_hold needs a keypoint net"):
        main(["--artifact", "artifacts/tiny_button_press", "--episodes", "1", "--max-steps", "3",
              "--keypoint-hold", "on", "--report", str(out)])


def test_evaluate_runs_each_chunk_strategy_and_refuses_an_unknown_one(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["--artifact", "artifacts/tiny_button_press", "--episodes", "1", "--max-steps", "3",
                 "--sampler-steps", "1", "--strategy", "temporal_ensemble", "--report", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["args"]["strategy"] == "temporal_ensemble"
    assert "overlapping chunks averaged" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--artifact", "artifacts/tiny_button_press", "--strategy", "replan_sometimes", "--report", str(out)])


def test_expert_targets_through_the_act_core_solve_what_direct_replay_solves():
    """The control loop loses nothing of the expert: its recorded joint targets, served as chunks through
    the ActCore path evaluate() uses, solve the same scenes as replaying them straight into the sim."""
    from training.experiments.expert_chunks import ExpertChunks, run
    res = run("button-press-topdown-v3", episodes=2)
    assert res["expert"] == 2
    assert [r["through_act_core"] for r in res["episodes"]] == [r["direct_replay"] for r in res["episodes"]]
    assert res["through_act_core"] >= 1
    eng = ExpertChunks(["a", "b"], horizon=4)
    eng.actions = np.arange(6.0).reshape(3, 2)
    eng.reset()
    eng.step(None, sample=False)                                   # a memory-only tick advances time
    assert eng.step(None).actions.tolist() == [[2, 3], [4, 5], [4, 5], [4, 5]]   # padded with the last target


def test_evaluate_renders_the_camera_it_is_given():
    """A policy trained on frames from another camera (kairos collect --camera) is evaluated on that one."""
    from kairos_sim.metaworld_sim import MetaWorldSim, SimConfig
    from training.evaluate import evaluate
    first = {}
    for cam in ("corner2", "corner3"):
        _, _, frames, _ = evaluate("artifacts/tiny_button_press", ["button-press-topdown-v3"], 1, max_steps=1,
                                   sampler_steps=1, progress=False, camera=cam)
        first[cam] = frames["button-press-topdown-v3"][0]
        with MetaWorldSim(SimConfig(task="button-press-topdown-v3", camera=cam)) as sim:
            assert np.array_equal(first[cam], sim.reset(10_000).image)
    assert not np.array_equal(first["corner2"], first["corner3"])


def test_imagined_compare_shows_the_pairs_evaluate_produces(tmp_path):
    """The side-by-side figure draws evaluate()'s own (real, imagined) pairs of the first episode."""
    from training.experiments.imagined_compare import main as compare_main
    out = tmp_path / "cmp.png"
    pairs = compare_main(["--artifacts", "artifacts/tiny_button_press", "--tasks", "button-press-topdown-v3",
                          "--ticks", "2", "--out", str(out)])
    assert out.stat().st_size > 5_000
    got = pairs["artifacts/tiny_button_press"]["button-press-topdown-v3"]
    assert len(got) >= 1 and got[0][0].shape == (64, 64, 3) and got[0][1].shape == (64, 64, 3)
    assert got[0][1].std() > 0                                     # a decoded frame, not a blank


def test_privileged_state_policy_solves_held_out_scenes_through_the_act_core():
    """The perfect-perception ceiling experiment: an MLP on the simulator's object and goal positions,
    trained on a few demonstrations, run closed loop through ActCore on held-out scenes; the input groups
    decide its input size, and an unknown group is an error."""
    import pytest
    from kairos_sim.metaworld_sim import MetaWorldSim, SimConfig
    from training.experiments.privileged_bc import PrivilegedBCConfig, features, run
    res = run("button-press-topdown-v3", control_hz=10, demos=8, episodes=4,
              cfg=PrivilegedBCConfig(iters=1500))
    assert res["demos_ok"] == 8 and res["samples"] > 8 * 5
    assert res["successes"] >= 3, res["episodes"]
    assert all(1 <= r["steps"] <= 40 for r in res["episodes"])
    with MetaWorldSim(SimConfig(task="button-press-topdown-v3")) as sim:
        sim.reset(0)
        assert features(sim, ["joints", "hand", "objects", "goal"]).shape == (29,)
        assert features(sim, ["joints", "hand"]).shape == (12,)
        with pytest.raises(ValueError, match="unknown input groups"):
            features(sim, ["joints", "puck"])


def test_ema_mix_interpolates_between_the_trained_and_the_starting_weights(tmp_path):
    """training.experiments.ema_mix: share 0 is the trained artifact's own held-out error, share 1 the
    starting weights' (here a copy of the committed artifact with its action head zeroed, so the two
    differ), and the error is measured on the simulator's held-out episodes."""
    import shutil
    from safetensors.torch import load_file, save_file
    from training.experiments.ema_mix import mixed_action_errors
    start = tmp_path / "start"
    shutil.copytree("artifacts/tiny_button_press", start)
    wm = load_file(str(start / "world_model.safetensors"))
    wm = {k: (v * 0 if k.startswith("act_out.") else v) for k, v in wm.items()}
    save_file(wm, str(start / "world_model.safetensors"))
    (start / "manifest.json").unlink()                    # hand-edited weights: no longer the shipped ones
    res = mixed_action_errors("artifacts/tiny_button_press", str(start), [0.0, 1.0], str(tmp_path),
                              ["button-press-topdown-v3"], episodes=1)
    assert res[0.0]["heldout_episodes"] == 1
    assert res[0.0]["action_mae_rad"] < 0.5 * res[0.0]["mean_action_mae_rad"]   # the trained model
    assert res[1.0]["action_mae_rad"] > 2 * res[0.0]["action_mae_rad"]          # its action head gone


def test_privileged_policy_runs_on_positions_estimated_from_the_camera(tmp_path):
    """`--estimator`: the MLP trains on the true `positions` (with noise) and runs on those a BC
    policy's position head reads from each rendered frame; the estimate's error is measured against
    the simulator's, and without `positions` among the inputs an estimator is refused."""
    import pytest
    from kairos_sim.metaworld_sim import ENV_STATE_NAMES, JOINT_NAMES, MetaWorldSim, SimConfig
    from training.baselines.bc import BCEngine, train_bc
    from training.collect import collect
    from training.experiments.privileged_bc import PrivilegedBCConfig, features, run
    task = "reach-v3"
    collect([task], 3, str(tmp_path / "demos"), camera="workspace", progress=False)
    train_bc(str(tmp_path / "demos"), str(tmp_path / "bc"), minutes=0.1, joint_names=JOINT_NAMES, shift=0,
             aux_weight=1.0)
    est = BCEngine(str(tmp_path / "bc"))
    assert est.aux_norm["names"] == ENV_STATE_NAMES
    with MetaWorldSim(SimConfig(task=task, camera="workspace")) as sim:    # the head reads positions in metres
        frame = sim.reset(10000).image
        got = est.positions(np.stack([frame, frame]), sim.instruction)
        assert got.shape == (2, 6) and np.allclose(got[0], got[1]) and np.abs(got).max() < 2.0
    cfg = PrivilegedBCConfig(inputs=["joints", "hand", "positions"], iters=200, train_noise=0.02, relative=True)
    assert cfg.columns("positions") == list(range(12, 18)) and cfg.columns("goal") == []
    res = run(task, demos=3, episodes=2, cfg=cfg, estimator=est, camera="workspace")
    assert len(res["episodes"]) == 2 and res["camera"] == "workspace"
    obj, goal = res["estimate_error_cm"]
    assert 0 < obj < 100 and 0 < goal < 100                 # a real estimate: neither exact nor absurd
    with MetaWorldSim(SimConfig(task=task)) as sim:
        sim.reset(0)
        truth = features(sim, cfg.inputs)
        assert truth.shape == (18,)
        np.testing.assert_array_equal(features(sim, cfg.inputs, np.zeros(6))[12:], np.zeros(6))
    with pytest.raises(ValueError, match="positions"):
        run(task, demos=1, episodes=1, cfg=PrivilegedBCConfig(inputs=["joints"], iters=1), estimator=est,
            camera="workspace")


def test_privileged_policy_can_train_on_what_the_estimator_reads(tmp_path):
    """`--train-on-estimates`: the demonstrations' `positions` inputs are the estimator's readings of
    each rendered demonstration frame (here an estimator that reads a fixed, wrong place), not the
    simulator's; `--first-demo` moves the demonstrations past the scenes an estimator was trained on."""
    import pytest
    from kairos_sim.metaworld_sim import MetaWorldSim, SimConfig
    from training.experiments.privileged_bc import PrivilegedBCConfig, _demos, run

    class Fixed:                                           # reads the same place from any frame
        cfg = type("C", (), {"image_size": 64})()

        def __init__(self):
            self.seen = []

        def positions(self, frames, instruction):
            assert frames.shape == (1, 64, 64, 3) and frames.dtype == np.uint8
            self.seen.append(instruction)
            return np.full((len(frames), 6), 0.123)

    cfg = PrivilegedBCConfig(inputs=["joints", "hand", "positions"], relative=True)
    with MetaWorldSim(SimConfig(task="reach-v3", camera="workspace")) as sim:
        est = Fixed()
        X, Y, ok = _demos(sim, range(5, 7), cfg, est)
        assert ok == 2 and len(X) == len(Y) == len(est.seen) and set(est.seen) == {sim.instruction}
        np.testing.assert_array_equal(X[:, 12:18], np.full((len(X), 6), 0.123))
        Xt, _, _ = _demos(sim, range(5, 7), cfg)            # the same scenes on the true positions
        assert len(Xt) == len(X) and np.abs(Xt[:, 12:18] - 0.123).min() > 1e-3
        np.testing.assert_allclose(Xt[:, :12], X[:, :12])   # the same expert episodes otherwise
    res = run("reach-v3", demos=2, episodes=1, cfg=PrivilegedBCConfig(inputs=cfg.inputs, iters=20),
              estimator=Fixed(), camera="workspace", train_on_estimates=True, first_demo=5)
    assert res["trained_on_estimates"] and res["demos_ok"] == 2 and res["samples"] == len(X)
    with pytest.raises(ValueError, match="needs an estimator"):
        run("reach-v3", demos=1, episodes=1, cfg=cfg, train_on_estimates=True)


def test_privileged_closed_loop_frames_are_recorded_with_their_labels(tmp_path):
    """`--record-frames`: each closed-loop episode's frames (what the estimator read), joints, targets
    and the simulator's positions go to a LeRobot dataset the keypoint trainer reads as labels."""
    import pytest
    from kairos_sim.metaworld_sim import ENV_STATE_NAMES, JOINT_NAMES
    from training.data.lerobot import LeRobotDataset, LeRobotWriter
    from training.experiments.goal_pixels import load_frames
    from training.experiments.privileged_bc import PrivilegedBCConfig, run

    class Fixed:
        cfg = type("C", (), {"image_size": 64})()

        def positions(self, frames, instruction):
            return np.full((len(frames), 6), 0.123)

    cfg = PrivilegedBCConfig(inputs=["joints", "hand", "positions"], relative=True, iters=20)
    with LeRobotWriter(str(tmp_path / "loop"), fps=10.0, state_names=JOINT_NAMES, action_names=JOINT_NAMES,
                       image_shape=(64, 64, 3), env_state_names=ENV_STATE_NAMES,
                       kairos_info={"camera": "workspace", "snapshots": False}) as w:
        res = run("reach-v3", demos=2, episodes=2, first_variation=20_000, cfg=cfg, estimator=Fixed(),
                  camera="workspace", writer=w)
    ds = LeRobotDataset(str(tmp_path / "loop"))
    eps = list(ds)
    assert [len(e.env_state) for e in eps] == [r["steps"] for r in res["episodes"]]
    assert eps[0].frames[ds.camera_key].shape[1:] == (64, 64, 3) and eps[0].frames[ds.camera_key].std() > 0
    env = eps[0].env_state
    assert np.abs(env - 0.123).min() > 1e-3 and np.ptp(env[:, 3:], 0).max() < 1e-6   # true labels: a fixed goal
    frames, tasks, labels = load_frames([str(tmp_path / "loop")])
    assert len(frames) == sum(r["steps"] for r in res["episodes"]) and set(tasks) == {"reach-v3"}
    with pytest.raises(ValueError, match="needs an estimator"):
        run("reach-v3", demos=1, episodes=1, cfg=cfg, writer=w)


def test_hand_paths_are_recorded_and_scene_seeds_draw_other_noise_reproducibly():
    """record_hand returns the hand's path of every episode; seed_per_scene seeds the sampling noise
    with the scene number (independent draws per scene, the same on a rerun), unlike the fixed seed."""
    from training.evaluate import evaluate

    def paths(seed_per_scene):
        per_task, _, _, _ = evaluate("artifacts/tiny_button_press", ["button-press-topdown-v3"], 1,
                                     first_variation=10_003, max_steps=6, sampler_steps=2, progress=False,
                                     record_hand=True, seed_per_scene=seed_per_scene)
        (r,) = per_task["button-press-topdown-v3"]
        p = np.asarray(r["hand_path"])
        assert p.shape == (r["steps"] + 1, 3)
        return p

    fixed, scene, again = paths(False), paths(True), paths(True)
    np.testing.assert_allclose(scene, again)
    assert np.abs(scene - fixed).max() > 1e-4, "the scene's seed should draw other noise than seed 0"


def test_evaluate_samples_a_student_at_its_own_step_count_by_default(tmp_path):
    """`kairos evaluate` without --sampler-steps runs a distilled student at the count it was distilled
    for (meta.sampler_steps) and anything else at 4."""
    from kairos_model.engine import artifact_sampler_steps
    assert artifact_sampler_steps("artifacts/tiny_button_press_student") == 1
    assert artifact_sampler_steps("artifacts/tiny_button_press") == 4
    assert artifact_sampler_steps(str(tmp_path)) == 4                     # a folder with no config.json

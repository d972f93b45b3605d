"""Keypoint perception (training.perception): targets, the peak reader, and a net that learns to find
a small marker at the pixel level and lifts it to 3D through a camera model."""
import numpy as np
import pytest
import torch

from kairos_sim.camera import CameraModel
from training.perception import (KeypointConfig, KeypointEstimator, heatmap_targets, read_peaks, save_keypoints,
                                 train_keypoints)

# a camera 1 m above the table looking straight down: pixel (col, row) <-> table (x, y) by a scale
DOWN = CameraModel(pos=(0.0, 0.0, 1.0), forward=(0.0, 0.0, -1.0), up=(0.0, 1.0, 0.0), right=(1.0, 0.0, 0.0),
                   near=0.1, left=-0.05, width=0.1, bottom=-0.05, top=0.05, image_size=32)


def test_targets_are_distributions_centred_on_the_pixel_and_the_peak_reader_finds_it_between_cells():
    px = torch.tensor([[10.3, 20.8], [2.4, 29.6], [-3.0, 5.0]])   # the second near a corner
    t = heatmap_targets(px, grid=16, image_size=32, sigma_px=1.5)
    assert t.shape == (3, 16, 16)
    np.testing.assert_allclose(t.sum((1, 2)).numpy(), [1, 1, 0], atol=1e-6)   # outside the frame: no target
    assert divmod(int(t[0].argmax()), 16) == (10, 5)                          # row 20.8 -> cell 10, col 10.3 -> 5
    got, h = read_peaks(torch.log(t[:2] + 1e-12), torch.full((2, 16, 16), 0.25), 32)
    np.testing.assert_allclose(got.numpy(), px[:2].numpy(), atol=0.3)
    np.testing.assert_allclose(h.numpy(), [0.25, 0.25], atol=1e-6)
    # a weaker second blob elsewhere does not pull the estimate
    two = torch.log(t[0] + 0.5 * torch.roll(t[0], 8, 1) + 1e-12)
    np.testing.assert_allclose(read_peaks(two[None], torch.zeros(1, 16, 16), 32)[0][0].numpy(), px[0].numpy(), atol=0.5)


def test_camera_model_projects_and_lifts_back():
    pts = np.array([[0.01, -0.02, 0.0], [-0.03, 0.04, 0.1]])
    px = DOWN.project(pts)
    np.testing.assert_allclose(px[0], [(0.01 * 0.1 + 0.05) / 0.1 * 32, (0.05 - (-0.02) * 0.1) / 0.1 * 32])
    np.testing.assert_allclose(DOWN.lift(px, pts[:, 2]), pts, atol=1e-12)
    assert np.isnan(DOWN.project([[0, 0, 2.0]])).all()                          # behind the camera


def _dot_frames(n: int, rng):
    """Grey noise frames [n, 32, 32, 3] with a 2x2 red dot at a random table point (z = 0 or 0.1)."""
    xy = rng.uniform(-0.3, 0.3, (n, 2))
    z = rng.choice([0.0, 0.1], n)
    pts = np.concatenate([xy, z[:, None]], 1)
    frames = rng.integers(90, 140, (n, 32, 32, 3)).astype(np.uint8)
    px = DOWN.project(pts)
    for f, (c, r), h in zip(frames, px, z):
        c0, r0 = int(round(c - 1)), int(round(r - 1))
        f[max(r0, 0):r0 + 2, max(c0, 0):c0 + 2] = (220, 30, 30) if h == 0 else (30, 30, 220)   # colour tells height
    env = np.concatenate([np.zeros((n, 3)), pts], 1)        # object unlabelled (at the camera's foot: off-frame)
    env[:, :3] = [0.0, 0.0, 2.0]
    return frames, env


def test_a_keypoint_net_learns_to_find_a_small_marker_and_lift_it_to_3d(tmp_path):
    rng = np.random.default_rng(0)
    frames, env = _dot_frames(600, rng)
    cfg = KeypointConfig(tasks=["reach-v3"], image_size=32, width=16, max_steps=300, batch=32, lr=3e-3)
    res = train_keypoints(frames, ["reach-v3"] * len(frames), env, DOWN, cfg, progress=False)
    save_keypoints(str(tmp_path / "kp"), res["net"], DOWN)
    est = KeypointEstimator(str(tmp_path / "kp"))
    test_frames, test_env = _dot_frames(50, np.random.default_rng(1))
    px, h = est.pixels(test_frames, "reach the red goal")      # the instruction names the task
    err_px = np.linalg.norm(px[:, 1] - DOWN.project(test_env[:, 3:]), axis=1)
    assert np.median(err_px) < 1.0, err_px
    pos = est.positions(test_frames, "reach-v3")
    err_cm = 100 * np.linalg.norm(pos[:, 3:] - test_env[:, 3:], axis=1)
    mean_cm = 100 * np.linalg.norm(env[:, 3:].mean(0) - test_env[:, 3:], axis=1)
    assert np.median(err_cm) < 0.2 * np.median(mean_cm), (np.median(err_cm), np.median(mean_cm))
    with pytest.raises(ValueError, match="knows"):
        est.positions(test_frames, "push-v3")
    with pytest.raises(ValueError, match="uint8"):
        est.positions(test_frames.astype(np.float32), "reach-v3")
    with pytest.raises(FileNotFoundError, match="not a keypoint artifact"):
        KeypointEstimator(str(tmp_path))
    from training.experiments.privileged_bc import load_estimator     # the closed-loop experiment's reader
    assert isinstance(load_estimator(str(tmp_path / "kp")), KeypointEstimator)

    # hold_goals: a frame where the dot is covered keeps the reading of the frame where it was seen
    seen = test_frames[:1]
    covered = seen.copy()
    c, r = DOWN.project(test_env[:1, 3:])[0]
    covered[0, max(int(r) - 3, 0):int(r) + 4, max(int(c) - 3, 0):int(c) + 4] = 115          # grey over the dot
    _, _, conf = est.read(np.concatenate([seen, covered]), "reach-v3")
    assert conf[0, 1] > conf[1, 1], conf                    # a covered point reads less surely
    held = load_estimator(str(tmp_path / "kp"), hold_goals=True)
    pos_held = held.positions(np.concatenate([seen, covered, covered]), "reach-v3")
    pos_now = est.positions(np.concatenate([seen, covered]), "reach-v3")
    np.testing.assert_allclose(pos_held[1:, 3:], pos_now[:1, 3:].repeat(2, 0), atol=1e-6)   # the goal stays where it was seen
    assert np.linalg.norm(pos_now[1, 3:] - pos_now[0, 3:]) > 0.01                # per frame it wanders
    held.reset()                                             # a new episode starts from its own first frame
    np.testing.assert_allclose(held.positions(covered, "reach-v3")[:, 3:], pos_now[1:, 3:], atol=1e-6)
    with pytest.raises(ValueError, match="needs a keypoint artifact"):
        _bc_hold(tmp_path)


def test_keypoint_training_is_bit_reproducible_for_a_seed():
    """Same frames, seed and thread count: the same weights bit for bit; another seed: other weights.
    (Another thread count or CPU changes the float reductions and, over thousands of steps, the net:
    docs/results/mt10.md, "A third seed of all three".)"""
    frames, env = _dot_frames(80, np.random.default_rng(0))

    def weights(seed):
        cfg = KeypointConfig(tasks=["reach-v3"], image_size=32, width=8, max_steps=15, batch=8, seed=seed)
        return train_keypoints(frames, ["reach-v3"] * len(frames), env, DOWN, cfg, progress=False)["net"].state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _bc_hold(tmp_path):
    import json
    (tmp_path / "bc").mkdir()
    (tmp_path / "bc" / "config.json").write_text(json.dumps({"kind": "bc"}))
    from training.experiments.privileged_bc import load_estimator
    return load_estimator(str(tmp_path / "bc"), hold_goals=True)


def test_hold_static_keeps_the_surest_reading_of_static_channels_only():
    """kairos_model.keypoints.hold_static: a static channel keeps the reading of its most confident
    frame so far; the other channels pass each frame's reading through."""
    from kairos_model.keypoints import hold_static, peak_confidence, static_channels
    static = static_channels(["reach-v3", "push-v3"])
    assert static.tolist() == [False, True, False, True]             # (object, goal) per task
    held, held_c = torch.zeros(1, 4, 3), torch.zeros(1, 4)
    seq = [(1.0, [0.9, 0.9, 0.9, 0.9]), (2.0, [0.2, 0.2, 0.95, 0.1]), (3.0, [0.5, 0.5, 0.5, 0.5])]
    outs = []
    for v, c in seq:
        out, held, held_c = hold_static(torch.full((1, 4, 3), v), torch.tensor([c]), held, held_c, static)
        outs.append(out[0, :, 0].tolist())
    assert outs == [[1, 1, 1, 1], [2, 1, 2, 1], [3, 1, 3, 1]]         # channel 2 reads 0.95 but is not held
    np.testing.assert_allclose(held_c[0].numpy(), [0, 0.9, 0, 0.9])
    sharp = torch.full((1, 16, 16), -20.0)
    sharp[0, 5, 7] = 10
    flat = torch.zeros(1, 16, 16)
    conf = peak_confidence(torch.cat([sharp, flat]))
    np.testing.assert_allclose(conf.numpy(), [1.0, 9 / 256], atol=1e-5)    # flat: peak at a corner, 3x3 of 256


def test_the_understanding_encoder_reads_the_same_keypoints_and_adds_one_token(tmp_path):
    """UnderstandingConfig.keypoint_tasks puts a keypoint net in the image encoder: with a trained
    artifact's weights its readings are the KeypointEstimator's (pixel in [-1, 1], height), and they
    reach the world model as one more image token."""
    from kairos_model.understanding import UnderstandingConfig, UnderstandingEncoder
    frames, env = _dot_frames(300, np.random.default_rng(0))
    cfg = KeypointConfig(tasks=["reach-v3"], image_size=32, width=16, max_steps=60, batch=16)
    res = train_keypoints(frames, ["reach-v3"] * len(frames), env, DOWN, cfg, progress=False)
    save_keypoints(str(tmp_path / "kp"), res["net"], DOWN)
    est = KeypointEstimator(str(tmp_path / "kp"))
    ucfg = UnderstandingConfig(dim=32, text_heads=4, image_channels=8, keypoint_tasks=["reach-v3"],
                               keypoint_image_size=32, keypoint_width=16)
    und = UnderstandingEncoder(ucfg).eval()
    und.image.keypoints.load_state_dict(est.net.state_dict())
    img = torch.from_numpy(frames[:5]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        read = und.image.keypoint_readings(img).numpy()                  # [5, 2, 3]
        tokens = und(["reach the red goal"] * 5, img)
    px, h = est.pixels(frames[:5], "reach-v3")
    np.testing.assert_allclose((read[..., :2] + 1) / 2 * 32, px, atol=1e-4)
    np.testing.assert_allclose(read[..., 2], h, atol=1e-5)
    assert ucfg.image_out_tokens == ucfg.image_tokens + 1 and tokens.shape == (5, ucfg.tokens, 32)
    with pytest.raises(ValueError, match="32x32"):
        und.image.keypoint_readings(torch.zeros(1, 3, 64, 64))


def test_the_image_encoder_holds_goal_readings_across_an_episodes_frames():
    """UnderstandingConfig.keypoint_hold at run time: ImageEncoder.forward_held keeps, per goal
    channel, the reading of the surest frame so far; objects follow each frame. On an episode's
    first frame the tokens are those without the hold."""
    from kairos_model.understanding import UnderstandingConfig, UnderstandingEncoder
    torch.manual_seed(0)
    cfg = UnderstandingConfig(dim=32, text_heads=4, image_channels=8, keypoint_tasks=["reach-v3", "push-v3"],
                              keypoint_image_size=32, keypoint_width=8, keypoint_select=True, keypoint_hold=True)
    und = UnderstandingEncoder(cfg).eval()
    frames = torch.rand(4, 1, 3, 32, 32)
    with torch.no_grad():
        state = und.image.init_hold(1)
        first, *state = und.encode_image_held(frames[0], *state)
        torch.testing.assert_close(first, und.encode_image(frames[0]))
        reads, confs = [], []
        for f in frames:
            r, c = und.image.keypoint_readings(f, confidence=True)
            reads.append(r[0])
            confs.append(c[0])
        for f in frames[1:]:
            _, *state = und.encode_image_held(f, *state)
    reads, confs = torch.stack(reads), torch.stack(confs)                 # [T, C, 3], [T, C]
    best = confs.argmax(0)                                                # [C]
    for ch, goal in enumerate([False, True, False, True]):
        if goal:
            torch.testing.assert_close(state[0][0, ch], reads[best[ch], ch])
            torch.testing.assert_close(state[1][0, ch], confs[best[ch], ch])
    with pytest.raises(ValueError, match="keypoint net"):
        UnderstandingEncoder(UnderstandingConfig(dim=32, text_heads=4, image_channels=8)).image.forward_held(
            frames[0], torch.zeros(1, 0, 3), torch.zeros(1, 0))


def test_the_keypoint_hold_experiment_measures_whole_episodes(tmp_path):
    """training.experiments.keypoint_hold over labelled demonstration episodes: per task the errors
    of each frame's reading and of the held one; objects are never held, so theirs agree."""
    from test_keypoint_world_model import keypoint_artifact          # pytest prepends test/training to sys.path
    from training.collect import collect
    from training.experiments.keypoint_hold import main, measure
    collect(["reach-v3"], 2, str(tmp_path / "eps"), camera="workspace", progress=False)
    keypoint_artifact(tmp_path / "kp", tasks=("reach-v3",))
    res = measure(str(tmp_path / "kp"), str(tmp_path / "eps"), late_from=3)
    r = res["reach-v3"]
    assert r["episodes"] == 2 and r["object_held_cm"] == r["object_per_frame_cm"] > 0
    assert r["goal_held_cm"] > 0 and 0 < r["goal_conf_first"] <= 1
    assert main(["--estimator", str(tmp_path / "kp"), "--episodes", str(tmp_path / "eps"), "--late-from", "1000",
                 "--report", str(tmp_path / "rep.json")]) == 0
    import json
    assert json.loads((tmp_path / "rep.json").read_text())["tasks"]["reach-v3"]["goal_held_late_cm"] is None

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

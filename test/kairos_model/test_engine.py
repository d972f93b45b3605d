"""The robot-facing engine: one memory update per step, action chunks in the robot's units, a
fixed-size state, reset, and clear errors for bad observations."""
import numpy as np
import pytest
import torch

from kairos_model.checkpoint import build_parts
from kairos_model.engine import Normalizer, Observation, TorchEngine
from kairos_model.world_model import WorldModelConfig


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    cfg = WorldModelConfig.preset("tiny")
    p = build_parts(cfg)
    return TorchEngine(p["world_model"], p["vae"], p["understanding"], sampler_steps=2,
                       actions=Normalizer([1.0] * 7, [0.5] * 7))


def obs(seed=0):
    rng = np.random.default_rng(seed)
    return Observation(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), rng.normal(size=7), "press the button")


def test_steps_give_chunks_and_keep_the_state_size(engine):
    engine.reset()
    sizes = set()
    for i in range(5):
        pred = engine.step(obs(i), decode_future=(i == 4))
        sizes.add(engine.state_bytes())
        assert pred.actions.shape == (8, 7) and np.isfinite(pred.actions).all() and pred.step == i + 1
    assert len(sizes) == 1
    assert pred.future_latents.shape == (2, 3, 64, 64)          # decoded on request
    assert {"vae_encode", "memory_update", "sampler", "future_decode"} <= set(pred.timings_ms)


def test_reset_makes_the_episode_repeatable(engine):
    engine.reset()
    a = [engine.step(obs(i)).actions for i in range(3)]
    engine.reset()
    b = [engine.step(obs(i)).actions for i in range(3)]
    assert all(np.allclose(x, y) for x, y in zip(a, b))


def test_bad_observations_are_refused(engine):
    good = obs()
    with pytest.raises(ValueError, match=r"uint8 \[64, 64, 3\]"):
        engine.step(Observation(good.image_hwc[:32], good.joints, "x"))
    with pytest.raises(ValueError, match=r"joints must be \[7\]"):
        engine.step(Observation(good.image_hwc, good.joints[:3], "x"))
    with pytest.raises(ValueError, match="non-finite"):
        engine.step(Observation(good.image_hwc, np.full(7, np.nan), "x"))


def test_a_tick_without_a_new_frame_samples_without_touching_the_memory(engine):
    """update_memory=False: the chunk comes from the last frame's context; the memory and the step
    count stay as they were, so the stream sees each camera frame exactly once."""
    engine.reset()
    with pytest.raises(ValueError, match="no frame yet"):
        engine.step(obs(0), update_memory=False)
    engine.step(obs(0), sample=False)
    before = [t.clone() if isinstance(t, torch.Tensor) else t for t in engine.state.layers]
    pred = engine.step(obs(0), update_memory=False)
    assert pred.actions.shape == (8, 7) and engine.steps == 1
    for a, b in zip(before, engine.state.layers):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
        else:
            assert torch.equal(a.k, b.k) and torch.equal(a.slot_frames, b.slot_frames)
    # the same as if the frame had been sampled from when it arrived, on a fresh noise stream
    engine.reset()
    ref = engine.step(obs(0))
    engine.reset()
    engine.step(obs(0), sample=False)
    assert np.allclose(engine.step(obs(0), update_memory=False).actions, ref.actions, atol=1e-6)


def test_relative_actions_are_offsets_from_the_joints_of_the_frame(engine):
    """An artifact trained with relative actions (meta actions.relative_to = "joint state"): the chunk is
    the model's offsets added to the joints of the frame the memory took, also on a tick that samples
    without a new frame; an RTC prefix is made relative the same way."""
    from kairos_model.engine import normalizer_from_meta
    rel = normalizer_from_meta({"actions": {"mean": [1.0] * 7, "std": [0.5] * 7, "relative_to": "joint state"}},
                               "actions", 7)
    assert rel.relative and not normalizer_from_meta({"actions": {"mean": [0.0] * 7, "std": [1.0] * 7}},
                                                     "actions", 7).relative
    with pytest.raises(ValueError, match="pass the joints"):
        rel.denormalize(np.zeros((8, 7)))
    x = np.random.default_rng(3).normal(size=(8, 7))
    j = np.arange(7.0)
    np.testing.assert_allclose(rel.normalize(rel.denormalize(x, j), j), x)
    absolute = engine.actions
    o = obs(7)
    try:
        runs = {}
        for name, norm in (("absolute", absolute), ("relative", rel)):
            engine.actions = norm
            engine.reset()
            torch.manual_seed(0)
            first = engine.step(o).actions
            held = engine.step(obs(8), update_memory=False).actions      # no new frame: joints of obs(7)
            runs[name] = (first, held)
        for k in range(2):
            np.testing.assert_allclose(runs["relative"][k] - runs["absolute"][k], np.tile(o.joints, (8, 1)), atol=1e-9)
    finally:
        engine.actions = absolute
